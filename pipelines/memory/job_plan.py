"""Will it run here? The plan of one job — every component's tier and storage, the predicted peak VRAM and RAM, the
bytes streamed per step and read from disk per job — from the catalog's sizes alone, so it answers for models that are
not on disk. The manager loads by the same plan (`read_choices` gives the readers its storages and disk tier).

Tiers, from fastest to leanest:
- GPU-resident: on the GPU for the whole job (what the preset's placement keeps there);
- pinned arena, streamed: a transformer's blocks in the host arena (pinned RAM), as many resident on the GPU as the
  planner keeps (`planner.plan_blocks`), the others streamed every forward;
- pageable RAM: the arena unpinned (copies at about a third of the speed), or a component waiting in RAM that visits the
  GPU when used (whole, or block by block);
- disk: a text encoder read from its memory-mapped files as it runs, block by block through the GPU. It holds no RAM of
  the app's (its pages are the system's file cache, given back first) and costs its bytes read from disk per job.
Storages: "as shipped" (the file's dtype), "int8" or "fp8" (about half the bytes; the denoiser's blocks are expanded
on the GPU before they run), or the file's own (a GGUF denoiser file). A format the user chose is honoured; otherwise
the plan tries, from best quality and speed to leanest, and takes the first that fits (`_LADDER`): big text encoders on
disk, the denoiser as shipped in pinned then pageable RAM, then the denoiser in int8, then every text encoder on disk.
A plan whose RAM fits is kept even when this job's size does not fit the GPU (the size is the job's, the weights are the
model's): the reason names the GPU memory. Nothing fits: the leanest plan, refused, naming its numbers.
The CPU preset keeps everything in RAM in float32; our own models (Fish Speech) stay on the GPU whole.

Figures and where they come from:
- Denoiser layouts: `job_shape.py`. `ALLOCATOR_MARGIN_BYTES` (planner.py): measured peak reserved memory above the plan.
- `PROCESS_RAM_BYTES`: the app's own RAM besides the weights (Python, torch, CUDA's host side); bench/bench_memory.py
  measured peak RSS ≤ 1.15 × weights + 2 GB, the 0.15 being the arena's power-of-two rounding, computed here exactly.
- `GROUP_OFFLOAD_RAM_FACTOR`: diffusers' group offload with a CUDA stream pins a second copy of the weights it
  streams (NOTES: FLUX's 23.8 GB held 61.8 GB of RSS).
- `STORED_SHARE`: int8 and fp8 keep one byte per bf16 weight (two bytes) plus a float32 scale per row (4 bytes per row
  of ≥ 1536 weights: under 0.3%); norms and biases stay as shipped. 0.505 covers both.
- Seconds per step: streamed bytes / the preset's host link bandwidth (`host_link_gb_s`), a lower bound — compute,
  text encoders and the VAE come on top; pageable RAM copies at a third of pinned speed (NOTES: 18.2 vs 53.7 GB/s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Mapping

from pipelines.catalog import FAMILIES, ModelSpec, Role, family_spec
from pipelines.memory.host_arena import align, pinned_chunk_sizes
from pipelines.memory.job_shape import LAYOUTS, denoiser_shape_from_catalog, forwards_per_step, job_size, job_workload
from pipelines.memory.planner import ALLOCATOR_MARGIN_BYTES, GIB, MIN_RING_SLOTS, plan_blocks
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
SHIPPED, INT8, FP8 = "as shipped", "int8", "fp8"
STORED_SHARE = {SHIPPED: 1.0, INT8: 0.505, FP8: 0.505}
# Text encoders from this size go to disk first: below it, a read per job costs more time than the RAM is worth.
BIG_ENCODER_BYTES = 10**9
# The disk tier is the text encoders' (`text_encoder`, `text_encoder_2`…): they run once per job.
TEXT_ENCODER = "text_encoder"
# The attached ControlNet (`catalog.controls.attached_bytes`).
CONTROLNET = "controlnet"
TIER_GPU = "GPU-resident"
TIER_DISK = "disk, memory-mapped, read as used (visits the GPU block by block)"
TIER_CPU = "RAM (CPU)"
# A text encoder too big to visit whole: the memory engine holds it (one copy in pageable RAM, nothing pinned) and
# copies it to the GPU block by block as it runs (`memory/encoder_streaming.py`).
TIER_ENCODER_STREAMED = "pageable RAM, visits the GPU block by block (memory engine)"
QUALITY = {
    INT8: "int8 weights (one scale per row) make slightly different pictures than as shipped (docs/memory.md, Storage)",
    FP8: "fp8 weights (e4m3, one scale per row) make slightly different pictures than as shipped (docs/memory.md, Storage)",
}


@dataclass(frozen=True)
class ComponentPlan:
    name: str
    # TIER_GPU, "pinned arena, …", "pageable RAM, …", TIER_DISK, TIER_CPU.
    tier: str
    # The dtype its weights have in memory: the preset's dtype as shipped, "int8", "fp8", "float32" on the CPU.
    storage: str
    ram_gb: float
    gpu_gb: float
    # How the loader stores it ("as shipped", "int8", "fp8", "GGUF file") and what it reads from disk per job.
    stored: str = SHIPPED
    disk_gb_per_job: float = 0.0


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
    disk_gb_per_job: float = 0.0
    # What the plan gave up to fit, and what it costs (quality, speed, disk reads).
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Choice:
    """One rung of the ladder: how the engine stores the denoiser, whether its arena is pinned, which text encoders
    wait on disk ("big" or "all")."""

    denoiser: str
    pinned: bool
    encoders_on_disk: str


_LADDER = (
    _Choice(SHIPPED, True, "big"), _Choice(SHIPPED, False, "big"),
    _Choice(INT8, True, "big"), _Choice(INT8, False, "big"), _Choice(INT8, False, "all"),
)


def _engine_streams(spec: ModelSpec, preset: Preset, weights: str) -> bool:
    """As the manager decides (`ModelManager._streams_denoiser`): a transformer read from its folder or from a denoiser
    file, stored as shipped, int8 or fp8 (NF4 and fp8 compute are placed whole)."""
    return (
        preset.device == "cuda" and weights in (SHIPPED, INT8, FP8)
        and family_spec(spec.family).denoiser == "transformer" and spec.family in LAYOUTS
    )


def _ram_budget(ram_bytes: int) -> int:
    return int(ram_bytes * (1 - RAM_KEPT_FOR_OTHERS))


def plan_job(spec: ModelSpec, preset: Preset, ram_bytes: int, width: int = 0, height: int = 0, frames: int = 0,
             weights: str | None = None, bytes_on_disk: int | None = None, attached_bytes: Mapping[str, int] | None = None) -> JobPlan:
    """The plan for one job of `spec` at this size on `preset` with `ram_bytes` of RAM in the machine. Sizes come from
    the catalog; `bytes_on_disk`, when the weights are there, is what the loader will really read (a fine-tune, a
    smaller variant, a demo model in a real repo's layout), shared out over the components as the catalog weighs them.
    `weights` is a format the user chose (None: the preset's). `attached_bytes`: the models the job attaches
    (`catalog.controls.attached_bytes`: "controlnet", "image_encoder"), placed by their roles like the model's own
    components (a ControlNet as the denoiser's neighbour, an image encoder as a text encoder), stored as shipped."""
    weights = weights or preset.weights
    size = job_size(spec, width, height, frames)
    budget = _ram_budget(ram_bytes)
    parts = {name: bytes_ for name, bytes_ in spec.component_bytes.items() if name != "lora"}
    if bytes_on_disk is not None and sum(parts.values()):
        scale = bytes_on_disk / sum(parts.values())
        parts = {name: int(bytes_ * scale) for name, bytes_ in parts.items()}
    for name, bytes_ in (attached_bytes or {}).items():
        parts[name] = parts.get(name, 0) + bytes_
    if spec.family not in FAMILIES and preset.device == "cuda":
        # Our own models (Fish Speech) stay resident whole on every GPU preset, as shipped.
        components = tuple(ComponentPlan(name, TIER_GPU, SHIPPED, 0.0, round(b / GB, 2)) for name, b in parts.items())
        vram = sum(parts.values()) + ALLOCATOR_MARGIN_BYTES
        return _finish(spec, preset, components, vram, 0, None, "placed whole: nothing streams", budget, True, size, "")
    if preset.device == "cpu":
        # float32 on the CPU: the 16-bit weights the catalog counts take twice their bytes; what the user's format
        # stores quantized (int8/fp8) keeps its stored bytes.
        stored = _stored_parts(spec, parts, weights)
        components = tuple(
            ComponentPlan(name, TIER_CPU, "float32" if stored[name] == SHIPPED else stored[name],
                          round((2 if stored[name] == SHIPPED else STORED_SHARE.get(stored[name], 1.0)) * b / GB, 2), 0.0, stored[name])
            for name, b in parts.items()
        )
        return _finish(spec, preset, components, 0, 0, None, "no GPU: nothing streams", budget, True, size, "")
    if not _engine_streams(spec, preset, weights):
        ladder = tuple(choice for choice in _LADDER if choice.denoiser == SHIPPED and choice.pinned)
    elif weights in (INT8, FP8):
        # The format the user chose is kept: only the arena and the text encoders step down.
        ladder = tuple(dict.fromkeys(replace(choice, denoiser=weights) for choice in _LADDER))
    else:
        ladder = _LADDER
    plans = [_plan_gpu(spec, preset, parts, size, budget, weights, choice) for choice in ladder]
    chosen = next((plan for plan in plans if plan.fits), None) or next((plan for plan in plans if plan.ram_fits), plans[-1])
    return replace(chosen, notes=chosen.notes + _fallback_notes(plans[0], chosen))


def _fallback_notes(best: JobPlan, chosen: JobPlan) -> tuple[str, ...]:
    """What falling from the best plan to the chosen one costs, in words."""
    if chosen is best:
        return ()
    notes = [f"the best plan (as shipped, pinned, big text encoders on disk) does not fit: {best.reason}"]
    if chosen.streamed_gb_per_step != best.streamed_gb_per_step:
        notes.append(f"the denoiser now streams {chosen.streamed_gb_per_step:.1f} GB per step (as shipped: {best.streamed_gb_per_step:.1f})")
    return tuple(notes)


def _stored_parts(spec: ModelSpec, parts: Mapping[str, int], weights: str) -> dict[str, str]:
    """What the user's format stores quantized: the family's quantizable components (the denoiser, big text encoders)."""
    if weights not in (INT8, FP8):
        stored = {name: SHIPPED for name in parts}
    else:
        stored = {name: weights if name in family_spec(spec.family).quantizable else SHIPPED for name in parts}
    if spec.checkpoint is not None and spec.checkpoint.format == "gguf":
        stored[family_spec(spec.family).denoiser] = "GGUF file"
    return stored


def _plan_gpu(spec: ModelSpec, preset: Preset, parts: Mapping[str, int], size: tuple[int, int, int], budget: int,
              weights: str, choice: _Choice) -> JobPlan:
    family = family_spec(spec.family)
    streams = _engine_streams(spec, preset, weights)
    stored = _stored_parts(spec, parts, weights)
    if streams and stored.get("transformer") in (SHIPPED, INT8, FP8):
        stored["transformer"] = choice.denoiser
    held = {name: int(b * STORED_SHARE.get(stored[name], 1.0)) for name, b in parts.items()}
    roles = {name: family.component_roles.get(name, Role.TEXT_ENCODER) for name in parts}
    whole = {name: b for name, b in held.items() if not (streams and name == "transformer")}
    sizes = {name: ComponentSize(b, b // ENCODER_LAYERS, b // (8 * ENCODER_LAYERS)) for name, b in whole.items()}
    placement = plan_placement(replace(family, component_roles={**family.component_roles, **roles}), sizes, preset, "cuda", preset.dtype)
    on_disk = {
        name for name, where in placement.components.items()
        if name.startswith(TEXT_ENCODER) and where is not Placement.RESIDENT and stored[name] == SHIPPED
        and (choice.encoders_on_disk == "all" or whole[name] >= BIG_ENCODER_BYTES)
    }
    # A component on disk visits the GPU block by block, as a streamed one does.
    visits = {name: Placement.STREAM if name in on_disk else where for name, where in placement.components.items()}
    whole_peak = predicted_peak(visits, sizes, placement.stream_blocks_per_group)
    components = [_whole_component(name, visits[name], sizes[name], stored[name], preset, name in on_disk) for name in visits]
    reason = "" if whole_peak <= preset.usable_vram_bytes else (
        f"the components placed whole need {whole_peak / GIB:.1f} GiB of GPU memory at once; the preset allows "
        f"{preset.usable_vram_bytes / GIB:.1f} GiB"
    )
    streamed, vram, seconds, pinned, note, notes = 0, whole_peak, None, True, "the denoiser is placed whole: no streaming figure", []
    if streams:
        # An attached ControlNet runs at every step just before the denoiser: when it visits the GPU, it is there beside
        # the streamed blocks, so their budget leaves room for it.
        beside = 0
        if CONTROLNET in visits and visits[CONTROLNET] is not Placement.RESIDENT:
            beside = predicted_peak({CONTROLNET: visits[CONTROLNET]}, {CONTROLNET: sizes[CONTROLNET]}, placement.stream_blocks_per_group)
        denoiser, blocks, pinned, reason = _denoiser(spec, preset, choice, placement.resident_bytes + beside, size, reason)
        if beside and not blocks.fits and reason.startswith("the denoiser"):
            reason += f", of which the ControlNet visiting beside it takes {beside / GIB:.2f} GiB"
        components.insert(0, denoiser)
        vram = max(vram, placement.resident_bytes + beside + blocks.device_bytes)
        streamed = blocks.streamed_bytes * forwards_per_step(spec)
        if streamed and preset.host_link_gb_s:
            seconds = round(streamed / (preset.host_link_gb_s * GB * (1 if pinned else PAGEABLE_COPY_SHARE)), 2)
            note = (f"lower bound: {streamed / GB:.1f} GB streamed per step over a {preset.host_link_gb_s:g} GB/s host link; "
                    "compute, text encoders and the VAE come on top")
        elif not streamed:
            note = "nothing streams: the step is bound by compute, for which no figure exists here"
        if not pinned:
            notes.append("the denoiser's blocks wait in pageable RAM (pinning them would not fit): copies run at about a third of the speed")
        if blocks.fits:
            notes.extend(blocks.notes)
    for name in sorted(n for n, kind in stored.items() if kind in QUALITY):
        notes.append(f"{name} is stored in {stored[name]}: {QUALITY[stored[name]]}")
    for name in sorted(on_disk):
        notes.append(f"{name} is read from disk as it runs: {whole[name] / GB:.1f} GB per job (the system's file cache may spare "
                     "a read when RAM is free)")
    return _finish(spec, preset, tuple(components), vram + ALLOCATOR_MARGIN_BYTES, streamed, seconds, note, budget, pinned,
                   size, reason, tuple(notes))


def _whole_component(name: str, where: Placement, size: ComponentSize, stored: str, preset: Preset, on_disk: bool) -> ComponentPlan:
    dtype = preset.dtype if stored == SHIPPED else stored
    gb = round(size.total_bytes / GB, 2)
    streaming_gpu = round(2 * preset.stream_blocks_per_group * size.largest_block_bytes / GB, 2)
    if on_disk:
        return ComponentPlan(name, TIER_DISK, dtype, 0.0, streaming_gpu, stored, gb)
    if where is Placement.RESIDENT:
        return ComponentPlan(name, TIER_GPU, dtype, 0.0, gb, stored)
    if where is Placement.OFFLOAD:
        return ComponentPlan(name, "pageable RAM, visits the GPU whole", dtype, gb, gb, stored)
    if name.startswith(TEXT_ENCODER):
        return ComponentPlan(name, TIER_ENCODER_STREAMED, dtype, gb, streaming_gpu, stored)
    ram = round(GROUP_OFFLOAD_RAM_FACTOR * size.total_bytes / GB, 2)
    return ComponentPlan(name, f"pageable + pinned RAM, visits the GPU {where.value}ing", dtype, ram, streaming_gpu, stored)


def _denoiser(spec, preset, choice, resident_bytes, size, reason):
    """The engine's denoiser for this rung: its tier, its block plan, whether the arena is pinned, and the reason a job of
    this size does not fit the GPU (when the whole components left none)."""
    width, height, frames = size
    shape = denoiser_shape_from_catalog(spec, STORED_SHARE[choice.denoiser])
    usable = preset.usable_vram_bytes - ALLOCATOR_MARGIN_BYTES
    blocks = plan_blocks(shape, job_workload(spec, width, height, frames), usable - resident_bytes, ring_slots=MIN_RING_SLOTS)
    if not blocks.fits:
        reason = reason or (
            f"the denoiser at {width}×{height}" + (f"×{frames}" if frames else "") + f" needs {blocks.device_bytes / GIB:.2f} GiB "
            f"of GPU memory even with every block streamed{' and run in token chunks' if shape.lean else ''} "
            f"({blocks.activation_bytes / GIB:.2f} GiB of activations), "
            f"{(blocks.device_bytes + ALLOCATOR_MARGIN_BYTES) / GIB:.2f} GiB with the allocator's margin; the preset allows "
            f"{preset.usable_vram_bytes / GIB:.2f} GiB"
        )
    arena_pinned = sum(pinned_chunk_sizes(list(shape.block_bytes))) + shape.trunk_bytes
    arena_pageable = sum(align(b) for b in shape.block_bytes) + shape.trunk_bytes
    pinned = choice.pinned
    arena = arena_pinned if pinned else arena_pageable
    tier = "pinned arena" if pinned else "pageable RAM (pinning would not fit)"
    if blocks.resident:
        tier += f", {len(blocks.resident)} of {len(shape.block_bytes)} blocks GPU-resident, the rest streamed"
    else:
        tier += ", every block streamed"
    if blocks.chunk_tokens:
        tier += f", blocks run in chunks of {blocks.chunk_tokens} tokens"
    dtype = preset.dtype if choice.denoiser == SHIPPED else choice.denoiser
    # VACE's hints wait in host RAM beside the arena when the blocks run lean.
    ram = round((arena + blocks.host_bytes) / GB, 2)
    return ComponentPlan("transformer", tier, dtype, ram, round(blocks.device_bytes / GB, 2), choice.denoiser), blocks, pinned, reason


def _finish(spec, preset, components, vram, streamed, seconds, note, budget, pinned, size, reason, notes=()) -> JobPlan:
    ram = sum(component.ram_gb for component in components) * GB + PROCESS_RAM_BYTES
    ram_reason = (
        f"needs {ram / GB:.1f} GB of RAM ({', '.join(f'{c.name} {c.ram_gb:.1f}' for c in components if c.ram_gb)}, the app "
        f"{PROCESS_RAM_BYTES / GB:.0f}); this machine's {budget / (1 - RAM_KEPT_FOR_OTHERS) / GB:.0f} GB leaves "
        f"{budget / GB:.1f} GB after a tenth for the system"
    )
    if not reason and ram > budget:
        reason = ram_reason
    fits = not reason
    disk = sum(component.disk_gb_per_job for component in components)
    if fits:
        reason = f"fits: {ram / GB:.1f} GB of RAM of {budget / GB:.1f} GB, {vram / GIB:.1f} GiB of GPU memory at the peak"
        if disk:
            reason += f", {disk:.1f} GB read from disk per job"
    width, height, frames = size
    return JobPlan(
        model=spec.id, preset=preset.id, fits=fits, reason=reason, peak_ram_gb=round(ram / GB, 2), peak_vram_gb=round(vram / GIB, 2),
        streamed_gb_per_step=round(streamed / GB, 2), seconds_per_step_estimate=seconds, seconds_note=note,
        ram_budget_gb=round(budget / GB, 1), ram_fits=ram <= budget, ram_reason=ram_reason, pinned=pinned, width=width,
        height=height, frames=frames, components=components, disk_gb_per_job=round(disk, 2), notes=tuple(notes),
    )


def read_choices(plan: JobPlan) -> tuple[dict[str, str], frozenset[str]]:
    """What the readers take from a plan (`ReadSettings.stored`, `ReadSettings.on_disk`): each component's storage
    ("as shipped", "int8", "fp8") and the components read from disk as used."""
    stored = {
        c.name: c.stored for c in plan.components
        # What the engine stores: the denoiser it streams, the encoders quantized, and as shipped the encoders it streams
        # (diffusers' group offload would pin a second copy of them). The others are left to diffusers as they are.
        if c.stored in (INT8, FP8) or (c.stored == SHIPPED and (c.name == "transformer" or c.tier == TIER_ENCODER_STREAMED))
    }
    return stored, frozenset(c.name for c in plan.components if c.tier == TIER_DISK)
