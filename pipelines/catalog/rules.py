"""What a model family is: the rules its pipeline sets (sizes, frame counts, samplers, step caches, instruction
inputs, single-file layouts) and what each of its entries has unless the entry says otherwise, as `FamilySpec`.

The families themselves are data in `families.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from pipelines.catalog.schema import Family, LongVideo, Role, Task


@dataclass(frozen=True)
class SchedulerChoice:
    """A sampler as users know it, and the diffusers scheduler class that implements it."""

    name: str
    class_name: str
    config_overrides: Mapping[str, object] = field(default_factory=dict)
    # The config key that takes the model's timestep shift (flow-matching schedulers call it `shift`, the
    # flow-sigma variants of the classic solvers `flow_shift`), so a swapped-in sampler keeps the model's shift.
    shift_parameter: str = "flow_shift"


@dataclass(frozen=True)
class SpeedSetting:
    """One level of the Speed control: which step cache runs (pipelines/speed/step_cache.py) and how eagerly it skips."""

    method: str
    threshold: float


SPEED_LEVELS = ("off", "balanced", "fast")
SPEED_OFF = SpeedSetting("none", 0.0)


@dataclass(frozen=True)
class SectionRules:
    """A family that makes every video in sections (FramePack): each section is `window` latent frames, denoised while
    the transformer sees the input image and a compressed history of the sections made so far, so memory does not grow
    with the video's length. The user sets the window (the pipeline's `latent_window_size`)."""

    default_window: int
    min_window: int
    max_window: int


@dataclass(frozen=True)
class VideoRules:
    """How a video family's VAE and transformer constrain length, and how its pipeline is called."""

    # The VAE compresses time by this factor and keeps the first frame alone: frames = k·frame_multiple + 1.
    frame_multiple: int
    min_frames: int
    max_frames: int
    default_fps: int
    # Pixels along one side of one denoiser token: the VAE's spatial factor times the transformer's patch.
    pixels_per_token: int
    # The keyword the pipeline takes the frame rate under (LTX scales its positions in time by it), if any.
    fps_argument: str = ""
    # The image-to-video pipeline built on a loaded text-to-video one (same components), if the family has one.
    image_to_video_pipeline_class: str = ""
    # How the family makes a video longer than it denoises at once (the Video tab's Long video settings), if at all.
    long_video: LongVideo | None = None
    # The pipeline can denoise causal blocks of latent frames one after the other (`ar_step`, `causal_block_size`:
    # SkyReels V2's asynchronous diffusion forcing; pipelines/video/diffusion_forcing.py).
    asynchronous_forcing: bool = False
    # Whether the pipeline takes VACE's inputs: reference images, an input video and a mask (`WanVACEPipeline`).
    vace_inputs: bool = False
    # Set for a family that makes every video in sections; its length then grows by whole sections.
    sections: SectionRules | None = None
    # Guidance is an input of the transformer (distilled into it), not a second pass without the prompt (FramePack).
    guidance_distilled: bool = False

    @property
    def max_long_frames(self) -> int:
        """The longest video the long mode may make: four times the longest at once (beyond it motion drifts apart)."""
        return (self.max_frames - 1) * 4 + 1

    def frame_step(self, window: int | None = None) -> int:
        """Frames the length grows by: one latent frame's worth, or one section's of `window` latent frames (the
        family's default window when None) for a family made in sections."""
        if self.sections is None:
            return self.frame_multiple
        return (window or self.sections.default_window) * self.frame_multiple

    def frame_rule(self, window: int | None = None) -> str:
        """The frame counts this family makes, as users read them ("4k+1")."""
        return f"{self.frame_step(window)}k+1"

    def nearest_frames(self, frames: int, most: int | None = None, window: int | None = None) -> int:
        """The frame count this family accepts that is nearest to `frames` (halfway rounds up), within its range
        (up to `most` in place of `max_frames` when given); whole sections of `window` for a family made in sections."""
        step = self.frame_step(window)
        steps = int((frames - 1) / step + 0.5)
        if self.sections is not None:
            # At least one section, and no more than fit in the longest video.
            return min(max(steps, 1), ((most or self.max_frames) - 1) // step) * step + 1
        return min(max(steps * step + 1, self.min_frames), most or self.max_frames)

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.frame_multiple + 1

    def denoiser_tokens(self, width: int, height: int, frames: int) -> int:
        return self.latent_frames(frames) * (width // self.pixels_per_token) * (height // self.pixels_per_token)


@dataclass(frozen=True)
class InstructionRules:
    """How a family edits by instruction: the input images it takes and how big they may be on each preset."""

    max_input_images: int
    # Longest side input images are scaled down to, by the preset's VRAM budget: (at least this many GB, side).
    # Every input image adds (side / 16)² tokens to each forward, in all three guidance passes.
    input_side_by_vram_gb: tuple[tuple[float, int], ...]
    # The side on a CPU preset, where RAM, not VRAM, is the limit.
    cpu_input_side: int

    def max_input_side(self, device: str, vram_budget_gb: float) -> int:
        if device == "cpu":
            return self.cpu_input_side
        fitting = [side for budget, side in self.input_side_by_vram_gb if vram_budget_gb >= budget]
        return fitting[-1] if fitting else self.input_side_by_vram_gb[0][1]


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    # Component name in the diffusers folder -> role, for placement.
    component_roles: Mapping[str, Role]
    # Image families: sizes must be multiples of the VAE scale factor times the transformer's patch size.
    size_multiple: int = 0
    min_size: int = 0
    max_size: int = 0
    supports_negative_prompt: bool = False
    schedulers: tuple[SchedulerChoice, ...] = ()
    # Text tokens the denoiser attends over beside the image tokens (CLIP 77 + T5 256 for SD3; T5 512 for FLUX).
    text_tokens: int = 0
    # Whether classifier-free guidance runs as a batch of two in one forward (SD3) or not at all (FLUX).
    guidance_doubles_batch: bool = False
    # Keyword arguments every call of this family's pipeline gets.
    call_kwargs: Mapping[str, object] = field(default_factory=dict)
    # The image-to-image pipeline built on the loaded one (same components); empty when the family has none.
    img2img_pipeline_class: str = ""
    # Pixels the family accepts in one image at most (0: width and height bounds alone).
    max_pixels: int = 0
    # Pixels the pipeline always renders (0: the requested size). HiDream rescales any requested size to this
    # area, keeping the aspect ratio; sides are rounded down to `size_multiple`.
    fixed_pixel_area: int = 0
    # The inpainting pipeline built on the loaded one (same components); empty when the family has none.
    inpaint_pipeline_class: str = ""
    # Video families only.
    video: VideoRules | None = None
    # Instruction-editing families only.
    instruction: InstructionRules | None = None
    # Python packages the family's pipeline needs beyond the base requirements (checked before loading).
    needs_packages: tuple[str, ...] = ()
    # The component that denoises: a transformer (SD3, FLUX) or a UNet (SD1.5, SDXL).
    denoiser: str = "transformer"
    # Components worth storing in fp8/int8/NF4 when the user or preset asks: the denoiser and the big text encoders.
    quantizable: tuple[str, ...] = ("transformer",)
    # Key fragments that say a single checkpoint file holds this family (original or diffusers layout).
    file_markers: tuple[str, ...] = ()
    # Whether a community single file holds the whole pipeline (SD1.5/SDXL) or only the denoiser (FLUX/SD3),
    # the rest coming from the base model's folder.
    file_holds_pipeline: bool = False
    # Base model id by diffusers' name for the checkpoint type (`infer_diffusers_model_type`); the first is the default.
    file_bases: Mapping[str, str] = field(default_factory=dict)
    # Keyword arguments for loading this family's pipeline (from a folder or a single file).
    load_kwargs: Mapping[str, object] = field(default_factory=dict)
    # Speed level -> step cache. TeaCache's thresholds are its authors' published ones (≈1.5× and ≈2× on their
    # GPUs, unchecked here). A family without entries runs uncached at every level.
    speed: Mapping[str, SpeedSetting] = field(default_factory=lambda: {level: SPEED_OFF for level in SPEED_LEVELS})

    # What the family's entries have unless they say otherwise: `families.entry` fills them into each `ModelSpec`,
    # and readers take them from the entry, never from here.
    # The pipeline class an entry loads, by the entry's task.
    pipeline_classes: Mapping[Task, str] = field(default_factory=dict)
    # The licence of the family's real entries.
    licence: str = ""
    # Where the family's repos are not plain diffusers folders: the files worth downloading, the weight files to load
    # (SD1.5/SDXL: their fp16 copies) and the file that says a folder is complete. Empty: `ModelSpec`'s defaults.
    allow_patterns: tuple[str, ...] = ()
    variant: str | None = None
    folder_marker: str = ""
    # The denoiser's class for a family whose repos hold the transformer alone (see `ModelSpec.denoiser_class`).
    denoiser_class: str = ""

    def nearest_size(self, side: float) -> int:
        """The side nearest to `side` that this family accepts (a multiple of its size step, within its bounds)."""
        multiple = self.size_multiple
        return min(max(round(side / multiple) * multiple, self.min_size), self.max_size)

    def size_problem(self, side: int) -> str:
        """Why this family cannot make `side` pixels ("" when it can), with the nearest side it can make."""
        multiple, low, high = self.size_multiple, self.min_size, self.max_size
        if low <= side <= high and side % multiple == 0:
            return ""
        return f"use a multiple of {multiple} from {low} to {high} (nearest: {self.nearest_size(side)})"

    def fitted_size(self, size: tuple[int, int], pixel_area: int = 0, enlarge: bool = True) -> tuple[int, int]:
        """The sides this family accepts nearest to a picture's `size`: as they are, or scaled to about `pixel_area`
        pixels keeping the aspect ratio (never scaled up unless `enlarge`)."""
        width, height = size
        scale = math.sqrt(pixel_area / (width * height)) if pixel_area else 1.0
        if not enlarge:
            scale = min(scale, 1.0)
        return self.nearest_size(width * scale), self.nearest_size(height * scale)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the pipeline renders for a requested size (the same formula as HiDreamImagePipeline's)."""
        if not self.fixed_pixel_area:
            return width, height
        scale = math.sqrt(self.fixed_pixel_area / (width * height))
        multiple = self.size_multiple
        return int(width * scale // multiple * multiple), int(height * scale // multiple * multiple)

    def denoiser_tokens(self, width: int, height: int) -> int:
        """Tokens one sample puts through the denoiser: one per 16×16 pixel patch, plus the text."""
        width, height = self.output_size(width, height)
        return (width // 16) * (height // 16) + self.text_tokens

    def denoiser_batch(self, guidance: float) -> int:
        return 2 if self.guidance_doubles_batch and guidance > 1.0 else 1

    def scheduler(self, name: str) -> SchedulerChoice:
        for choice in self.schedulers:
            if choice.name == name:
                return choice
        raise KeyError(name)

