"""What a job is, from the catalog alone: each denoiser's blocks as its published config.json has them, and the tokens
one forward of a job at a given size runs through it. The job plan (`job_plan.py`) plans from these.

Layouts (`LAYOUTS`): block counts, widths and the relative size of each kind of block, from the published config.json of
each model; block bytes are the catalog's transformer bytes shared out by those sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.catalog import Family, ModelSpec, family_spec
from pipelines.catalog.schema import CallDefaults, EditDefaults, MusicDefaults, VideoDefaults
from pipelines.memory.planner import SKYREELS_HELD_WIDTHS, DenoiserShape, Workload, skyreels_lean_held


@dataclass(frozen=True)
class Layout:
    """A denoiser's blocks as its config.json has them: (count, relative size) per kind of block, the width of its
    tokens and of its widest layer, the trunk's share of its bytes, and the width VACE holds per token."""

    blocks: tuple[tuple[int, float], ...]
    hidden_size: int
    widest_layer: int
    trunk_share: float = 0.02
    held_width: int = 0
    # Whether the blocks have a lean forward (memory/chunked_blocks.py), what the model's own forward holds per token,
    # and what it holds when lean (planner.DenoiserShape).
    lean: bool = False
    model_held_width: int = 0
    lean_model_held: int = 0


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
    Family.WAN: ((2_840_000_000, Layout(((30, 1.0),), 1536, 8960, lean=True)),
                 (28_600_000_000, Layout(((40, 1.0),), 5120, 13824, lean=True)),
                 (32_800_000_000, Layout(((40, 1.0),), 5120, 13824, 0.04, lean=True))),
    # Diffusion forcing expands the modulation to every token: 7 hidden widths held through the blocks; lean, the model
    # keeps them per latent frame (planner.py).
    Family.SKYREELS_V2: ((2_840_000_000, Layout(((30, 1.0),), 1536, 8960, lean=True, model_held_width=SKYREELS_HELD_WIDTHS * 1536,
                                                lean_model_held=skyreels_lean_held(1536))),
                         (28_600_000_000, Layout(((40, 1.0),), 5120, 13824, lean=True, model_held_width=SKYREELS_HELD_WIDTHS * 5120,
                                                 lean_model_held=skyreels_lean_held(5120)))),
    Family.WAN_VACE: ((4_310_000_000, Layout(((30, 1.0), (15, 1.0)), 1536, 8960, 0.02, 15 * 1536, lean=True)),
                      (34_680_000_000, Layout(((40, 1.0), (8, 1.0)), 5120, 13824, 0.02, 8 * 5120, lean=True))),
    Family.LTX: ((3_850_000_000, Layout(((28, 1.0),), 2048, 8192)), (26_000_000_000, Layout(((48, 1.0),), 4096, 16384))),
    Family.FRAMEPACK: ((25_700_000_000, Layout(((20, 2.0), (40, 1.0)), 3072, 12288, lean=True)),),
    Family.HUNYUANVIDEO: ((25_700_000_000, Layout(((20, 2.0), (40, 1.0)), 3072, 12288, lean=True)),),
    Family.ACE_STEP: ((9_000_000_000, Layout(((32, 1.0),), 2560, 9728)),),
}


def denoiser_layout(spec: ModelSpec) -> Layout | None:
    variants = LAYOUTS.get(spec.family)
    size = spec.component_bytes.get("transformer", 0)
    if not variants or not size:
        return None
    return min(variants, key=lambda variant: abs(variant[0] - size))[1]


def denoiser_shape_from_catalog(spec: ModelSpec, stored_share: float = 1.0, dtype_bytes: int = 2) -> DenoiserShape | None:
    """The planner's view of the denoiser, from the catalog's bytes and the published layout. `stored_share` is the part
    of its bytes a block keeps in its storage (int8 or fp8: about half); the trunk stays as shipped, and a quantized
    denoiser needs one block in the compute dtype on the device to expand each block into before it runs."""
    layout = denoiser_layout(spec)
    if layout is None:
        return None
    total = spec.component_bytes["transformer"]
    in_blocks = total * (1 - layout.trunk_share)
    units = sum(count * size for count, size in layout.blocks)
    shipped = tuple(int(in_blocks * size / units) for count, size in layout.blocks for _ in range(count))
    blocks = tuple(int(size * stored_share) for size in shipped)
    scratch = max(shipped) if stored_share < 1 else 0
    return DenoiserShape(blocks, total - sum(shipped), layout.hidden_size, layout.widest_layer, dtype_bytes, layout.held_width,
                         scratch_bytes=scratch, lean=layout.lean, model_held_width=layout.model_held_width,
                         lean_model_held=layout.lean_model_held)


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
