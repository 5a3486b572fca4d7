"""Will it run here? The plan of one job — every component's tier and storage, the predicted peak VRAM and RAM, the
bytes streamed per step — from the catalog's sizes alone, so it answers for models that are not on disk.

It describes what the engine does today, no more:
- the denoiser of a transformer family stored as shipped: its blocks in the host arena (pinned RAM; ordinary
  "pageable" RAM when pinning the arena would not fit), as many resident on the GPU as the planner keeps
  (`planner.plan_blocks`), the others streamed every forward;
- every other component placed whole by the preset (`placement.plan_placement`): resident on the GPU, or waiting in
  pageable RAM and visiting the GPU when used (whole, or block by block through diffusers' group offload);
- a quantized or single-file denoiser is placed whole, like the other components; the CPU preset keeps everything in
  RAM.
There is no disk tier: every weight is in RAM (or on the GPU) for the whole job.

Figures and where they come from:
- Denoiser layouts (`LAYOUTS`): block counts, widths and the relative size of each kind of block, from the published
  config.json of each model; block bytes are the catalog's transformer bytes shared out by those sizes.
- `ALLOCATOR_MARGIN_BYTES` (planner.py): measured peak reserved memory above the plan.
- `PROCESS_RAM_BYTES`: the app's own RAM besides the weights (Python, torch, CUDA's host side); bench/bench_memory.py
  measured peak RSS ≤ 1.15 × weights + 2 GB, the 0.15 being the arena's power-of-two rounding, computed here exactly.
- `GROUP_OFFLOAD_RAM_FACTOR`: diffusers' group offload with a CUDA stream pins a second copy of the weights it
  streams (NOTES: FLUX's 23.8 GB held 61.8 GB of RSS).
- Seconds per step: streamed bytes / the preset's host link bandwidth (`host_link_gb_s`), a lower bound — compute,
  text encoders and the VAE come on top; pageable RAM copies at a third of pinned speed (NOTES: 18.2 vs 53.7 GB/s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pipelines.catalog import FAMILIES, Family, ModelSpec, Role, family_spec
from pipelines.catalog.schema import CallDefaults, EditDefaults, MusicDefaults, VideoDefaults
from pipelines.memory.host_arena import align, pinned_chunk_sizes
from pipelines.memory.planner import ALLOCATOR_MARGIN_BYTES, GIB, MIN_RING_SLOTS, DenoiserShape, Workload, plan_blocks
from pipelines.placement import ComponentSize, Placement, plan_placement, predicted_peak
from presets import Preset

GB = 1e9
PROCESS_RAM_BYTES = 2 * 10**9
GROUP_OFFLOAD_RAM_FACTOR = 2
PAGEABLE_COPY_SHARE = 18.2 / 53.7
# RAM the plan leaves to the OS and other programs: a tenth of the machine (a judgement, not a measurement).
RAM_KEPT_FOR_OTHERS = 0.10
# A text encoder or VAE streams in layers of roughly this share of its bytes (T5/UMT5-XXL: 24 layers).
ENCODER_LAYERS = 24


@dataclass(frozen=True)
class Layout:
    """A denoiser's blocks as its config.json has them: (count, relative size) per kind of block, the width of its
    tokens and of its widest layer, the trunk's share of its bytes, and the width VACE holds per token."""

    blocks: tuple[tuple[int, float], ...]
    hidden_size: int
    widest_layer: int
    trunk_share: float = 0.02
    held_width: int = 0


# Per family, by transformer bytes (the variant nearest the catalog's bytes is used).
LAYOUTS: dict[Family, tuple[tuple[int, Layout], ...]] = {
    # FLUX.1: 19 double-stream blocks of 340M parameters, 38 single-stream of 142M.
    Family.FLUX: ((23_800_000_000, Layout(((19, 339.7), (38, 141.6)), 3072, 12288, 0.01)),),
    Family.SD3: (
        (4_170_000_000, Layout(((24, 1.0),), 1536, 6144)),
        (4_940_000_000, Layout(((24, 1.0),), 1536, 6144)),
        (16_300_000_000, Layout(((38, 1.0),), 2432, 9728)),
    ),
    Family.HIDREAM: ((34_200_000_000, Layout(((16, 2.0), (32, 1.0)), 2560, 10240)),),
    Family.COGVIEW4: ((12_800_000_000, Layout(((28, 1.0),), 4096, 10240)),),
    Family.OMNIGEN: ((7_600_000_000, Layout(((32, 1.0),), 3072, 8192)),),
    Family.WAN: ((2_840_000_000, Layout(((30, 1.0),), 1536, 8960)), (28_600_000_000, Layout(((40, 1.0),), 5120, 13824)),
                 (32_800_000_000, Layout(((40, 1.0),), 5120, 13824, 0.04))),
    Family.SKYREELS_V2: ((2_840_000_000, Layout(((30, 1.0),), 1536, 8960)), (28_600_000_000, Layout(((40, 1.0),), 5120, 13824))),
    Family.WAN_VACE: ((4_310_000_000, Layout(((30, 1.0), (15, 1.0)), 1536, 8960, 0.02, 15 * 1536)),
                      (34_680_000_000, Layout(((40, 1.0), (8, 1.0)), 5120, 13824, 0.02, 8 * 5120))),
    Family.LTX: ((3_850_000_000, Layout(((28, 1.0),), 2048, 8192)), (26_000_000_000, Layout(((48, 1.0),), 4096, 16384))),
    Family.FRAMEPACK: ((25_700_000_000, Layout(((20, 2.0), (40, 1.0)), 3072, 12288)),),
    Family.HUNYUANVIDEO: ((25_700_000_000, Layout(((20, 2.0), (40, 1.0)), 3072, 12288)),),
    Family.ACE_STEP: ((9_000_000_000, Layout(((32, 1.0),), 2560, 9728)),),
}


@dataclass(frozen=True)
class ComponentPlan:
    name: str
    # "GPU-resident", "pinned arena, streamed" (some blocks resident), "pageable RAM, visits the GPU", "RAM (CPU)"...
    tier: str
    storage: str
    ram_gb: float
    gpu_gb: float


@dataclass(frozen=True)
class JobPlan:
    model: str
    preset: str
    fits: bool
    reason: str
    peak_ram_gb: float
    peak_vram_gb: float
    streamed_gb_per_step: float
    seconds_per_step_estimate: float | None
    seconds_note: str
    ram_budget_gb: float
    ram_fits: bool
    # The RAM figures in words: what needs how much, against what the machine leaves.
    ram_reason: str
    pinned: bool
    width: int
    height: int
    frames: int
    components: tuple[ComponentPlan, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def denoiser_layout(spec: ModelSpec) -> Layout | None:
    variants = LAYOUTS.get(spec.family)
    size = spec.component_bytes.get("transformer", 0)
    if not variants or not size:
        return None
    return min(variants, key=lambda variant: abs(variant[0] - size))[1]


def denoiser_shape_from_catalog(spec: ModelSpec, dtype_bytes: int = 2) -> DenoiserShape | None:
    """The planner's view of the denoiser, from the catalog's bytes and the published layout."""
    layout = denoiser_layout(spec)
    if layout is None:
        return None
    total = spec.component_bytes["transformer"]
    in_blocks = total * (1 - layout.trunk_share)
    units = sum(count * size for count, size in layout.blocks)
    blocks = tuple(int(in_blocks * size / units) for count, size in layout.blocks for _ in range(count))
    return DenoiserShape(blocks, total - sum(blocks), layout.hidden_size, layout.widest_layer, dtype_bytes, layout.held_width)


def job_size(spec: ModelSpec, width: int = 0, height: int = 0, frames: int = 0) -> tuple[int, int, int]:
    """The size the plan is for: the request's, or the model's defaults where 0."""
    defaults = spec.defaults
    width = width or getattr(defaults, "width", 0)
    height = height or getattr(defaults, "height", 0)
    frames = frames or getattr(defaults, "frames", 0)
    return width, height, frames


def job_workload(spec: ModelSpec, width: int, height: int, frames: int) -> Workload:
    """Tokens per forward as the runners count them (image_runner, video_runner._workload)."""
    family = family_spec(spec.family)
    guidance = getattr(spec.defaults, "guidance", 1.0)
    batch = family.denoiser_batch(guidance)
    if family.video is not None and isinstance(spec.defaults, VideoDefaults):
        rules = family.video
        if rules.sections is not None:
            frames = (rules.sections.default_window + 2) * rules.frame_multiple + 1
        return Workload(rules.denoiser_tokens(width, height, frames) + family.text_tokens, batch)
    if isinstance(spec.defaults, (CallDefaults, EditDefaults)) and width and height:
        return Workload(family.denoiser_tokens(width, height), batch)
    if isinstance(spec.defaults, MusicDefaults):
        # ACE-Step: 30 s is about 1,300 tokens (one per two latent frames), two with guidance.
        return Workload(math.ceil(spec.defaults.duration * 43), 2 if guidance > 1 else 1)
    return Workload(4096, batch)


def forwards_per_step(spec: ModelSpec) -> int:
    """Wan-like pipelines run the prompt and the negative prompt as two forwards; SD3 doubles its batch instead."""
    family = family_spec(spec.family)
    guidance = getattr(spec.defaults, "guidance", 1.0)
    return 2 if guidance > 1 and family.supports_negative_prompt and not family.guidance_doubles_batch else 1


def _engine_streams(spec: ModelSpec, preset: Preset, weights: str) -> bool:
    """As the manager decides (`ModelManager._streams_denoiser`): a transformer read from folders, stored as shipped."""
    return (
        preset.device == "cuda" and spec.checkpoint is None and weights == "as shipped"
        and family_spec(spec.family).denoiser == "transformer" and spec.family in LAYOUTS
    )


def _ram_budget(ram_bytes: int) -> int:
    return int(ram_bytes * (1 - RAM_KEPT_FOR_OTHERS))


def plan_job(spec: ModelSpec, preset: Preset, ram_bytes: int, width: int = 0, height: int = 0, frames: int = 0,
             weights: str | None = None, bytes_on_disk: int | None = None) -> JobPlan:
    """The plan for one job of `spec` at this size on `preset` with `ram_bytes` of RAM in the machine. Sizes come from
    the catalog; `bytes_on_disk`, when the weights are there, is what the loader will really read (a fine-tune, a
    smaller variant, a demo model in a real repo's layout), shared out over the components as the catalog weighs them."""
    weights = weights or preset.weights
    width, height, frames = job_size(spec, width, height, frames)
    budget = _ram_budget(ram_bytes)
    storage = preset.dtype if weights == "as shipped" else weights
    parts = {name: size for name, size in spec.component_bytes.items() if name != "lora"}
    if bytes_on_disk is not None and sum(parts.values()):
        scale = bytes_on_disk / sum(parts.values())
        parts = {name: int(size * scale) for name, size in parts.items()}
    if spec.family not in FAMILIES and preset.device == "cuda":
        # Our own models (Fish Speech) stay resident whole on every GPU preset, as shipped.
        components = tuple(ComponentPlan(name, "GPU-resident", "as shipped", 0.0, round(size / GB, 2)) for name, size in parts.items())
        vram = sum(parts.values()) + ALLOCATOR_MARGIN_BYTES
        return _finish(spec, preset, components, vram, 0, None, "placed whole: nothing streams", budget, True, (width, height, frames), "")
    if preset.device == "cpu":
        # float32 on the CPU: the 16-bit weights the catalog counts take twice their bytes.
        components = tuple(ComponentPlan(name, "RAM (CPU)", "float32", round(2 * size / GB, 2), 0.0) for name, size in parts.items())
        return _finish(spec, preset, components, 0, 0, None, "no GPU: nothing streams", budget, True, (width, height, frames), "")

    family = family_spec(spec.family)
    streams = _engine_streams(spec, preset, weights)
    roles = {name: family.component_roles.get(name, Role.TEXT_ENCODER) for name in parts}
    whole = {name: size for name, size in parts.items() if not (streams and name == "transformer")}
    sizes = {name: ComponentSize(size, size // ENCODER_LAYERS, size // (8 * ENCODER_LAYERS)) for name, size in whole.items()}
    placement = plan_placement(_with_roles(family, roles), sizes, preset, "cuda", preset.dtype)
    usable = preset.usable_vram_bytes - ALLOCATOR_MARGIN_BYTES
    components, whole_peak = [], predicted_peak(placement.components, sizes, placement.stream_blocks_per_group)
    for name, where in placement.components.items():
        size = whole[name]
        if where is Placement.RESIDENT:
            components.append(ComponentPlan(name, "GPU-resident", storage, 0.0, round(size / GB, 2)))
        elif where is Placement.OFFLOAD:
            components.append(ComponentPlan(name, "pageable RAM, visits the GPU whole", storage, round(size / GB, 2), round(size / GB, 2)))
        else:
            ram = GROUP_OFFLOAD_RAM_FACTOR * size
            components.append(ComponentPlan(name, f"pageable + pinned RAM, visits the GPU {where.value}ing", storage, round(ram / GB, 2),
                                            round(2 * preset.stream_blocks_per_group * sizes[name].largest_block_bytes / GB, 2)))
    reason = "" if whole_peak <= preset.usable_vram_bytes else (
        f"the components placed whole need {whole_peak / GIB:.1f} GiB of GPU memory at once; the preset allows "
        f"{preset.usable_vram_bytes / GIB:.1f} GiB"
    )
    streamed, vram, seconds, pinned, note = 0, whole_peak, None, True, ""
    if streams:
        shape = denoiser_shape_from_catalog(spec)
        workload = job_workload(spec, width, height, frames)
        blocks = plan_blocks(shape, workload, usable - placement.resident_bytes, ring_slots=MIN_RING_SLOTS)
        if not blocks.fits:
            reason = reason or (
                f"the denoiser at {width}×{height}" + (f"×{frames}" if frames else "") + f" needs {blocks.device_bytes / GIB:.2f} GiB "
                f"of GPU memory even with every block streamed ({blocks.activation_bytes / GIB:.2f} GiB of activations), "
                f"{(blocks.device_bytes + ALLOCATOR_MARGIN_BYTES) / GIB:.2f} GiB with the allocator's margin; the preset allows "
                f"{preset.usable_vram_bytes / GIB:.2f} GiB"
            )
        vram = max(vram, placement.resident_bytes + blocks.device_bytes)
        other_ram = sum(c.ram_gb for c in components) * GB + PROCESS_RAM_BYTES
        arena_pinned = sum(pinned_chunk_sizes(list(shape.block_bytes))) + shape.trunk_bytes
        arena_pageable = sum(align(size) for size in shape.block_bytes) + shape.trunk_bytes
        pinned = other_ram + arena_pinned <= budget or other_ram + arena_pageable > budget
        arena = arena_pinned if pinned else arena_pageable
        tier = "pinned arena" if pinned else "pageable RAM (pinning would not fit)"
        if blocks.resident:
            tier += f", {len(blocks.resident)} of {len(shape.block_bytes)} blocks GPU-resident, the rest streamed"
        else:
            tier += ", every block streamed"
        components.insert(0, ComponentPlan("transformer", tier, storage, round(arena / GB, 2), round(blocks.device_bytes / GB, 2)))
        streamed = blocks.streamed_bytes * forwards_per_step(spec)
        if streamed and preset.host_link_gb_s:
            seconds = round(streamed / (preset.host_link_gb_s * GB * (1 if pinned else PAGEABLE_COPY_SHARE)), 2)
            note = (f"lower bound: {streamed / GB:.1f} GB streamed per step over a {preset.host_link_gb_s:g} GB/s host link; "
                    "compute, text encoders and the VAE come on top")
        elif not streamed:
            note = "nothing streams: the step is bound by compute, for which no figure exists here"
    else:
        note = "the denoiser is placed whole: no streaming figure"
    return _finish(spec, preset, tuple(components), vram + ALLOCATOR_MARGIN_BYTES, streamed, seconds, note, budget, pinned,
                   (width, height, frames), reason)


def _with_roles(family, roles):
    from dataclasses import replace

    return replace(family, component_roles={**family.component_roles, **roles})


def _finish(spec, preset, components, vram, streamed, seconds, note, budget, pinned, size, reason) -> JobPlan:
    ram = sum(component.ram_gb for component in components) * GB + PROCESS_RAM_BYTES
    ram_reason = (
        f"needs {ram / GB:.1f} GB of RAM ({', '.join(f'{c.name} {c.ram_gb:.1f}' for c in components if c.ram_gb)}, the app "
        f"{PROCESS_RAM_BYTES / GB:.0f}); this machine's {budget / (1 - RAM_KEPT_FOR_OTHERS) / GB:.0f} GB leaves "
        f"{budget / GB:.1f} GB after a tenth for the system"
    )
    if not reason and ram > budget:
        reason = ram_reason
    fits = not reason
    if fits:
        reason = f"fits: {ram / GB:.1f} GB of RAM of {budget / GB:.1f} GB, {vram / GIB:.1f} GiB of GPU memory at the peak"
    width, height, frames = size
    return JobPlan(
        model=spec.id, preset=preset.id, fits=fits, reason=reason, peak_ram_gb=round(ram / GB, 2), peak_vram_gb=round(vram / GIB, 2),
        streamed_gb_per_step=round(streamed / GB, 2), seconds_per_step_estimate=seconds, seconds_note=note,
        ram_budget_gb=round(budget / GB, 1), ram_fits=ram <= budget, ram_reason=ram_reason, pinned=pinned, width=width, height=height, frames=frames, components=components,
    )
