"""The model catalog: one frozen entry per model, families and their rules, as data.

Adding a model of a known family is adding one `ModelSpec` to `MODELS`. A new family adds a
`FamilySpec`, a tiny builder in `pipelines/tiny/` and a runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Mapping

GB = 1_000_000_000


class Family(str, Enum):
    SD3 = "sd3"
    FLUX = "flux"
    SD15 = "sd15"
    SDXL = "sdxl"
    HIDREAM = "hidream"
    COGVIEW4 = "cogview4"
    FISH_SPEECH = "fish_speech"
    ACE_STEP = "ace_step"
    WAN = "wan"
    # Wan2.1 VACE: Wan with a control branch that reads reference images, an input video and a mask.
    WAN_VACE = "wan_vace"
    SKYREELS_V2 = "skyreels_v2"
    LTX = "ltx"
    OMNIGEN = "omnigen"
    FRAMEPACK = "framepack"
    HUNYUANVIDEO = "hunyuanvideo"


class Task(str, Enum):
    TEXT_TO_IMAGE = "text_to_image"
    TEXT_TO_SPEECH = "text_to_speech"
    TEXT_TO_MUSIC = "text_to_music"
    TEXT_TO_VIDEO = "text_to_video"
    # A video that starts from a given picture; the model cannot run without one.
    IMAGE_TO_VIDEO = "image_to_video"
    # An image made from an instruction that refers to up to three input images (OmniGen).
    INSTRUCTION_EDIT = "instruction_edit"
    # Repainting the masked part of an image (FLUX.1 Fill); text-to-image families with an inpaint pipeline do it too.
    INPAINT = "inpaint"
    # FLUX.1 tools: a new picture that follows the edges (Canny) or the depth of a given one, and variations of a
    # given picture (Redux). The model cannot run without the picture.
    CANNY_TO_IMAGE = "canny_to_image"
    DEPTH_TO_IMAGE = "depth_to_image"
    IMAGE_VARIATION = "image_variation"


class Role(str, Enum):
    """What a pipeline component does; presets place components by role."""

    DENOISER = "denoiser"
    TEXT_ENCODER = "text_encoder"
    VAE = "vae"


@dataclass(frozen=True)
class SchedulerChoice:
    """A sampler as users know it, and the diffusers scheduler class that implements it."""

    name: str
    class_name: str
    config_overrides: Mapping[str, object] = field(default_factory=dict)
    # The config key that takes the model's timestep shift (flow-matching schedulers call it `shift`, the
    # flow-sigma variants of the classic solvers `flow_shift`), so a swapped-in sampler keeps the model's shift.
    shift_parameter: str = "flow_shift"


class LongVideo(str, Enum):
    # Our transformer wrapper denoises overlapping windows of latent frames at every step and blends them (Wan:
    # hidden states are plain (batch, channels, frames, height, width) and positions are computed per call).
    CONTEXT_WINDOWS = "context_windows"
    # The pipeline itself makes the video chunk after chunk, each starting from the last chunk's final frames
    # (SkyReels V2 diffusion forcing: `base_num_frames`, `overlap_history`).
    HISTORY_CHUNKS = "history_chunks"


@dataclass(frozen=True)
class SpeedSetting:
    """One level of the Speed control: which step cache runs (pipelines/step_cache.py) and how eagerly it skips."""

    method: str
    threshold: float


SPEED_LEVELS = ("off", "balanced", "fast")
_SPEED_OFF = SpeedSetting("none", 0.0)


def _teacache_speeds(balanced: float, fast: float) -> Mapping[str, SpeedSetting]:
    return {"off": _SPEED_OFF, "balanced": SpeedSetting("teacache", balanced), "fast": SpeedSetting("teacache", fast)}


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
    # SkyReels V2's asynchronous diffusion forcing; pipelines/diffusion_forcing.py).
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
    speed: Mapping[str, SpeedSetting] = field(default_factory=lambda: {level: _SPEED_OFF for level in SPEED_LEVELS})

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


@dataclass(frozen=True)
class CallDefaults:
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str = "Euler"


@dataclass(frozen=True)
class EditDefaults:
    """Call settings of an edit model (instruction or fill); the size is used when no input image gives one."""

    steps: int
    guidance: float
    width: int
    height: int
    # OmniGen's image guidance: how closely the result keeps to the input images (0 for models without it).
    image_guidance: float = 0.0


@dataclass(frozen=True)
class VideoDefaults:
    steps: int
    guidance: float
    width: int
    height: int
    frames: int
    fps: int
    # The flow-matching shift of the noise schedule ("model sampling shift"); None when the model derives it
    # from the video's length (LTX's dynamic shifting).
    flow_shift: float | None
    # (keyword, value) pairs this model's pipeline call gets beside the user's values (the decode noise of LTX's
    # timestep-aware VAEs). Pairs, not a mapping: defaults are turned into plain data with `asdict`.
    call_kwargs: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class SpeechDefaults:
    temperature: float = 0.8
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    # Semantic frames per chunk of text; about 21.5 frames are one second of speech.
    max_new_tokens: int = 1024
    # Characters per chunk when a long text is split at sentence ends.
    chunk_length: int = 200


@dataclass(frozen=True)
class MusicDefaults:
    steps: int
    guidance: float
    # Seconds of music for text to music (and seconds added by extend).
    duration: float = 30.0
    # The timestep schedule's shift; ACE-Step 1.5 was trained with 3.0.
    shift: float = 3.0


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA fused into the base weights at load time (step-distillation LoRAs such as Hyper-SD)."""

    repo: str | None
    filename: str
    scale: float


@dataclass(frozen=True)
class CompanionRepo:
    """Components a pipeline's own repo leaves out, published in a repo of their own and stored once in
    `<models_dir>/<id>/`, shared by every model that names them. Either a text encoder and its tokenizer at that
    repo's root (HiDream's Llama 3.1), filling two components of the pipeline; or a prior: a whole diffusers
    pipeline that runs before the main one and hands it its conditioning (FLUX.1 Redux's SigLIP image encoder and
    image embedder, which turn a picture into the prompt embeddings of FLUX.1 [dev])."""

    id: str
    name: str
    # None for a demo companion, which our own code builds.
    repo: str | None
    licence: str
    # An encoder companion: the pipeline component names it fills, and the transformers class of the encoder.
    encoder: str = ""
    tokenizer: str = ""
    encoder_class: str = ""
    # A prior companion: its diffusers pipeline class. Its components join the loaded pipeline as `prior_<name>`.
    prior_pipeline_class: str = ""
    allow_patterns: tuple[str, ...] = ("*.json", "*.safetensors")
    folder_marker: str = "config.json"


@dataclass(frozen=True)
class ComponentRepo:
    """Pipeline components published in a repo of their own, each in the subfolder named after it (FramePack takes
    HunyuanVideo's text encoders and VAE from one repo and a SigLIP image encoder from another). Stored once in
    `<models_dir>/<id>/` and shared by every model that names it."""

    id: str
    name: str
    # None for a demo repo, which our own code builds.
    repo: str | None
    # Pipeline component name (= subfolder) -> its class in diffusers or transformers.
    components: Mapping[str, str]
    licence: str
    folder_marker: str

    @property
    def allow_patterns(self) -> tuple[str, ...]:
        return tuple(f"{name}/*" for name in self.components)


@dataclass(frozen=True)
class CheckpointFile:
    """A single checkpoint file (a community fine-tune or a quantized transformer) and what it holds."""

    path: str
    # "safetensors" or "gguf".
    format: str
    # The quantization as users name the file variants (Q8_0, Q5_K_M…), or the stored dtype (bf16, fp8).
    variant: str
    size_bytes: int

    @property
    def file_name(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    family: Family
    task: Task
    pipeline_class: str
    defaults: CallDefaults | SpeechDefaults | MusicDefaults | VideoDefaults | EditDefaults
    # Bytes of each component in the dtype it ships in; the sum is what a download costs.
    component_bytes: Mapping[str, int]
    licence: str
    repo: str | None = None
    # A model that reuses another entry's weights (a fast preset) names it here.
    base: str | None = None
    lora: LoraSpec | None = None
    demo: bool = False
    # Files worth downloading from the repo; the rest (single-file duplicates, fp32 copies) are skipped.
    allow_patterns: tuple[str, ...] = ("*.json", "*.txt", "*.model", "*/*.safetensors", "*/*.json", "*/*.txt", "*/*.model")
    # The file whose presence says the model's folder is complete.
    folder_marker: str = "model_index.json"
    # The weight files to load where a repo ships several precisions (SD1.5/SDXL: fp16 copies beside fp32).
    variant: str | None = None

    # Set for a model found as one file in the models folder (see `pipelines/checkpoint_files.py`).
    checkpoint: CheckpointFile | None = None
    # Components published in another repo (their bytes are counted in `component_bytes`).
    companion: CompanionRepo | None = None
    # Set when the model's own repo holds only its transformer, config and weights at the root: the pipeline is
    # assembled from it and these repos' components (their bytes are counted in `component_bytes`).
    component_repos: tuple[ComponentRepo, ...] = ()

    @property
    def weight_bytes(self) -> int:
        return sum(self.component_bytes.values())

    @property
    def label(self) -> str:
        if self.demo:
            return f"{self.name} [demo · random weights]"
        return self.name


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


_FLOW_SCHEDULERS = (
    SchedulerChoice("Euler", "FlowMatchEulerDiscreteScheduler", shift_parameter="shift"),
    SchedulerChoice("Heun", "FlowMatchHeunDiscreteScheduler", shift_parameter="shift"),
    SchedulerChoice(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        _frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction", "algorithm_type": "dpmsolver++", "solver_order": 2}),
    ),
    SchedulerChoice(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        _frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction", "algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    ),
    SchedulerChoice(
        "UniPC",
        "UniPCMultistepScheduler",
        _frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
    ),
)

# Samplers as SD1.5/SDXL users know them: the epsilon-prediction schedulers, not the flow-matching ones.
_EPSILON_SCHEDULERS = (
    SchedulerChoice("Euler", "EulerDiscreteScheduler"),
    SchedulerChoice("DPM++ 2M", "DPMSolverMultistepScheduler", _frozen({"algorithm_type": "dpmsolver++", "solver_order": 2})),
    SchedulerChoice("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _frozen({"algorithm_type": "sde-dpmsolver++", "solver_order": 2})),
    SchedulerChoice("UniPC", "UniPCMultistepScheduler"),
    SchedulerChoice("DDIM", "DDIMScheduler"),
)

FAMILIES: Mapping[Family, FamilySpec] = _frozen({
    Family.SD3: FamilySpec(
        family=Family.SD3,
        size_multiple=16,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=True,
        schedulers=_FLOW_SCHEDULERS,
        text_tokens=77 + 256,
        guidance_doubles_batch=True,
        img2img_pipeline_class="StableDiffusion3Img2ImgPipeline",
        # Works with the ordinary 16-channel transformer: the unmasked latents are blended back after every step.
        inpaint_pipeline_class="StableDiffusion3InpaintPipeline",
        quantizable=("transformer", "text_encoder_3"),
        file_markers=("joint_blocks.", "pos_embed.pos_embed"),
        file_bases=_frozen({"sd3": "sd3-medium", "sd35_medium": "sd35-medium", "sd35_large": "sd35-large"}),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "text_encoder_3": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.FLUX: FamilySpec(
        family=Family.FLUX,
        speed=_teacache_speeds(0.25, 0.4),
        size_multiple=16,
        min_size=256,
        max_size=2048,
        # FLUX is guidance-distilled: a negative prompt would need true CFG at twice the cost.
        supports_negative_prompt=False,
        # FluxPipeline passes its own sigmas and `mu`, which only the flow-matching Euler scheduler accepts.
        schedulers=_FLOW_SCHEDULERS[:1],
        text_tokens=512,
        img2img_pipeline_class="FluxImg2ImgPipeline",
        quantizable=("transformer", "text_encoder_2"),
        file_markers=("double_blocks.", "single_transformer_blocks."),
        file_bases=_frozen({"flux-dev": "flux1-dev", "flux-schnell": "flux1-schnell"}),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            # FLUX.1 Redux's prior (see `FLUX_REDUX_PRIOR`) runs once per job before the transformer, like an encoder.
            "prior_image_encoder": Role.TEXT_ENCODER,
            "prior_image_embedder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.OMNIGEN: FamilySpec(
        family=Family.OMNIGEN,
        # VAE 8× per side, patch 2×2; the processor crops input images to multiples of 16 (and scales up below 16).
        size_multiple=16,
        min_size=16,
        max_size=2048,
        # The instruction's tokens are embedded by the transformer itself (a Phi-3 decoder): no text encoder.
        text_tokens=256,
        guidance_doubles_batch=True,
        schedulers=_FLOW_SCHEDULERS[:1],
        component_roles=_frozen({"transformer": Role.DENOISER, "vae": Role.VAE}),
        # Its processor crops and normalises input images with torchvision (a build matching torch's).
        needs_packages=("torchvision",),
        instruction=InstructionRules(
            max_input_images=3,
            # The model card's 1024 where a 16 GB card has room; less on small cards, where three 1024² inputs
            # (12,288 tokens beside the output's 4,096) would leave few transformer blocks resident.
            input_side_by_vram_gb=((0, 512), (8, 768), (16, 1024)),
            cpu_input_side=1024,
        ),
    ),
    Family.ACE_STEP: FamilySpec(
        family=Family.ACE_STEP,
        # The condition encoder and the audio (de)tokenizer turn text, lyrics and reference audio into the
        # denoiser's context, like a text encoder: they run before the DiT and leave before it starts.
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "condition_encoder": Role.TEXT_ENCODER,
            "audio_tokenizer": Role.TEXT_ENCODER,
            "audio_token_detokenizer": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
        # Our TeaCache with the identity for a polynomial (pipelines/step_cache.py). Measured on the tiny model: at 30
        # steps 0.2 skips 11 and 0.3 skips 16 denoiser calls (≈1.5× and ≈2×); at 8 steps 2 and 4. Not checked on real
        # weights, whose timestep projection may change more or less per step.
        speed=_teacache_speeds(0.2, 0.3),
    ),
    Family.WAN: FamilySpec(
        family=Family.WAN,
        speed=_teacache_speeds(0.05, 0.08),
        # VAE 8× per side, patch 2×2.
        size_multiple=16,
        min_size=64,
        max_size=1280,
        supports_negative_prompt=True,
        # The model's own flow-matching UniPC scheduler (its shift is offered in the Video tab).
        schedulers=(SchedulerChoice("UniPC", "UniPCMultistepScheduler"),),
        text_tokens=512,
        # WanPipeline runs the conditional and unconditional passes one after the other, not as a batch.
        guidance_doubles_batch=False,
        # As an image generator (the Image tab's Wan entries): a video of one frame.
        call_kwargs=_frozen({"num_frames": 1, "output_type": "pil"}),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            # The image-to-video models' CLIP vision encoder is used once per job, like the text encoder.
            "image_encoder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
        # Trained at 81 frames; longer clips drift unless denoised in context windows.
        video=VideoRules(
            frame_multiple=4, min_frames=5, max_frames=129, default_fps=16, pixels_per_token=16,
            long_video=LongVideo.CONTEXT_WINDOWS,
        ),
        # Community Wan files (GGUF quantizations above all) hold the transformer alone: Alibaba's original layout
        # has `head.modulation`, diffusers' layout `condition_embedder.time_embedder.`. I2V 480p and 720p have the
        # same shapes, so the 480p model is the default base for both. A VACE file is a Wan transformer with control
        # blocks (`vace_blocks.`): its VACE base makes it a VACE model.
        file_markers=("head.modulation", "condition_embedder.time_embedder."),
        file_bases=_frozen({
            "wan-t2v-1.3B": "wan21-t2v-1.3b", "wan-t2v-14B": "wan21-t2v-14b", "wan-i2v-14B": "wan21-i2v-14b-480p",
            "wan-vace-1.3B": "wan21-vace-1.3b", "wan-vace-14B": "wan21-vace-14b",
        }),
    ),
    Family.WAN_VACE: FamilySpec(
        family=Family.WAN_VACE,
        # Wan's VAE and transformer with VACE's control blocks: 8× per side, patch 2×2, frames 4k+1. No step cache
        # (TeaCache's Wan fit was made without the control branch) and no context windows (the control latents would
        # have to be windowed with the video).
        size_multiple=16,
        min_size=64,
        max_size=1280,
        supports_negative_prompt=True,
        schedulers=(SchedulerChoice("UniPC", "UniPCMultistepScheduler"),),
        text_tokens=512,
        guidance_doubles_batch=False,
        component_roles=_frozen({"text_encoder": Role.TEXT_ENCODER, "transformer": Role.DENOISER, "vae": Role.VAE}),
        video=VideoRules(frame_multiple=4, min_frames=5, max_frames=129, default_fps=16, pixels_per_token=16, vace_inputs=True),
    ),
    Family.SKYREELS_V2: FamilySpec(
        family=Family.SKYREELS_V2,
        # Wan's VAE and a Wan-shaped transformer: 8× per side, patch 2×2, frames 4k+1.
        size_multiple=16,
        min_size=64,
        max_size=1280,
        supports_negative_prompt=True,
        schedulers=(SchedulerChoice("UniPC", "UniPCMultistepScheduler"),),
        text_tokens=512,
        # Like Wan: conditional and unconditional passes one after the other.
        guidance_doubles_batch=False,
        component_roles=_frozen({"text_encoder": Role.TEXT_ENCODER, "transformer": Role.DENOISER, "vae": Role.VAE}),
        # Trained at 97 frames (540P); longer videos come in chunks that continue from the previous chunk's end.
        video=VideoRules(
            frame_multiple=4, min_frames=5, max_frames=97, default_fps=24, pixels_per_token=16, fps_argument="fps",
            long_video=LongVideo.HISTORY_CHUNKS, asynchronous_forcing=True,
        ),
    ),
    Family.LTX: FamilySpec(
        family=Family.LTX,
        speed=_teacache_speeds(0.03, 0.05),
        # VAE 32× per side, patch 1.
        size_multiple=32,
        min_size=64,
        max_size=1280,
        supports_negative_prompt=True,
        # FlowMatch Euler with dynamic shifting; a shift given by the user replaces the dynamic one.
        schedulers=(),
        text_tokens=128,
        guidance_doubles_batch=True,
        component_roles=_frozen({"text_encoder": Role.TEXT_ENCODER, "transformer": Role.DENOISER, "vae": Role.VAE}),
        video=VideoRules(
            frame_multiple=8, min_frames=9, max_frames=257, default_fps=24, pixels_per_token=32,
            fps_argument="frame_rate", image_to_video_pipeline_class="LTXImageToVideoPipeline",
        ),
    ),
    Family.FRAMEPACK: FamilySpec(
        family=Family.FRAMEPACK,
        # TeaCache's authors' HunyuanVideo thresholds (0.1 ≈ 1.6×, 0.15 ≈ 2.1×); FramePack's own demo uses 0.15.
        speed=_teacache_speeds(0.1, 0.15),
        # HunyuanVideo's VAE 8× per side, patch 2×2.
        size_multiple=16,
        min_size=64,
        max_size=1280,
        # Guidance is distilled into the weights (a `guidance` embedding); the pipeline's true CFG is not offered.
        supports_negative_prompt=False,
        # FlowMatch Euler, with the shift FramePack's pipeline derives from the section's size.
        schedulers=(),
        # Llama tokens (256) and SigLIP image tokens (27×27) beside the section's own.
        text_tokens=256 + 729,
        guidance_doubles_batch=False,
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            # The SigLIP image encoder runs once per job, like the text encoders.
            "image_encoder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
        # Sections of 9 latent frames (36 video frames) as FramePack ships; up to 60 s at its 30 fps.
        video=VideoRules(
            frame_multiple=4, min_frames=5, max_frames=1801, default_fps=30, pixels_per_token=16,
            sections=SectionRules(default_window=9, min_window=1, max_window=33),
            guidance_distilled=True,
        ),
        quantizable=("transformer", "text_encoder"),
    ),
    Family.HUNYUANVIDEO: FamilySpec(
        family=Family.HUNYUANVIDEO,
        # TeaCache's authors' HunyuanVideo thresholds (0.1 ≈ 1.6×, 0.15 ≈ 2.1×), as for FramePack.
        speed=_teacache_speeds(0.1, 0.15),
        # VAE 8× per side, patch 2×2.
        size_multiple=16,
        min_size=64,
        max_size=1280,
        # Guidance is distilled into the weights (a `guidance` embedding): one pass per step, no negative prompt.
        supports_negative_prompt=False,
        # FlowMatch Euler with the model's shift (offered in the Video tab).
        schedulers=(),
        # Llama tokens.
        text_tokens=256,
        guidance_doubles_batch=False,
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
        # Trained at 129 frames (4k+1) and 24 fps.
        video=VideoRules(
            frame_multiple=4, min_frames=5, max_frames=129, default_fps=24, pixels_per_token=16, guidance_distilled=True,
        ),
        quantizable=("transformer", "text_encoder"),
    ),
    Family.HIDREAM: FamilySpec(
        family=Family.HIDREAM,
        # VAE scale 8 × patch 2; the pipeline floors its rescaled sides to this multiple.
        size_multiple=16,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=True,
        # HiDreamImagePipeline passes `mu` to every scheduler but UniPC: Heun refuses it, and the DPM++ solvers
        # accept it only with dynamic shifting, which replaces the model's shift by exp(mu) ≈ 3.2 (Dev's is 6.0).
        schedulers=(_FLOW_SCHEDULERS[0], _FLOW_SCHEDULERS[4]),
        # Joint attention over the T5 (128) and Llama (128) tokens.
        text_tokens=128 + 128,
        guidance_doubles_batch=True,
        fixed_pixel_area=1024 * 1024,
        # The 17B transformer, T5-XXL and the Llama 3.1 8B encoder are what fp8/int8 shrink.
        quantizable=("transformer", "text_encoder_3", "text_encoder_4"),
        # TeaCache4HiDream-I1's thresholds for ≈1.5× and ≈2× on HiDream-I1 Full (A100).
        speed=_teacache_speeds(0.17, 0.3),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "text_encoder_3": Role.TEXT_ENCODER,
            "text_encoder_4": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.COGVIEW4: FamilySpec(
        family=Family.COGVIEW4,
        # The model card's rule: 512 to 2048, multiples of 32, at most 2^21 pixels.
        size_multiple=32,
        min_size=512,
        max_size=2048,
        max_pixels=2**21,
        # The 6B transformer and the GLM-4-9B encoder.
        quantizable=("transformer", "text_encoder"),
        supports_negative_prompt=True,
        # CogView4Pipeline passes its own timesteps, sigmas and `mu`, which only the flow-matching Euler accepts.
        schedulers=_FLOW_SCHEDULERS[:1],
        # GLM prompt tokens (padded to a multiple of 16); 224 is the pipeline's documented typical length.
        text_tokens=224,
        # Guidance runs the conditional and the unconditional pass one after the other, each of batch 1.
        guidance_doubles_batch=False,
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.SDXL: FamilySpec(
        family=Family.SDXL,
        # The UNet takes any latent size (it upsamples to the skip connection's size); the VAE needs multiples of 8.
        size_multiple=8,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=True,
        schedulers=_EPSILON_SCHEDULERS,
        text_tokens=77,
        guidance_doubles_batch=True,
        img2img_pipeline_class="StableDiffusionXLImg2ImgPipeline",
        denoiser="unet",
        quantizable=("unet",),
        file_markers=("conditioner.embedders.1.",),
        file_holds_pipeline=True,
        file_bases=_frozen({"xl_base": "sdxl-base"}),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "unet": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.SD15: FamilySpec(
        family=Family.SD15,
        size_multiple=8,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=True,
        schedulers=_EPSILON_SCHEDULERS,
        text_tokens=77,
        guidance_doubles_batch=True,
        img2img_pipeline_class="StableDiffusionImg2ImgPipeline",
        denoiser="unet",
        quantizable=("unet",),
        file_markers=("cond_stage_model.",),
        file_holds_pipeline=True,
        file_bases=_frozen({"v1": "sd15"}),
        # Community SD1.5 checkpoints ship without the safety checker; so do we (the model is run locally, by its owner).
        load_kwargs=_frozen({"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}),
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "unet": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
})

# Fragments of LoRA key names that say which family a file was made for, in every layout diffusers converts
# (diffusers/peft `transformer.…`, kohya `lora_unet_…`, BFL/ComfyUI `diffusion_model.…`). First match wins:
# FLUX's come first because its double-stream blocks carry the same `transformer_blocks` names as SD3's.
LORA_KEY_MARKERS: tuple[tuple[str, Family], ...] = (
    ("single_transformer_blocks", Family.FLUX),
    ("double_blocks", Family.FLUX),
    ("single_blocks", Family.FLUX),
    ("joint_blocks", Family.SD3),
    ("transformer_blocks", Family.SD3),
    # ACE-Step's DiT names its attention `layers.N.self_attn` / `cross_attn`, in diffusers' and the original layout.
    (".cross_attn.", Family.ACE_STEP),
    (".self_attn.", Family.ACE_STEP),
)

# Component sizes in bytes as published (bf16/fp16 safetensors), used to plan placement before loading.
_SD3_ENCODERS = {"text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000, "text_encoder_3": 9_520_000_000, "vae": 168_000_000}
_FLUX_ENCODERS = {"text_encoder": 246_000_000, "text_encoder_2": 9_520_000_000, "vae": 168_000_000}
_STABILITY_LICENCE = "Stability AI Community License: free below USD 1M annual revenue; gated on the Hub (accept the licence first)."

# Wan2.1: UMT5-XXL text encoder and the Wan VAE (shipped in float32) are shared by every size.
_WAN_ENCODERS = {"text_encoder": 11_400_000_000, "vae": 508_000_000}
_WAN_I2V_ENCODERS = {**_WAN_ENCODERS, "image_encoder": 1_260_000_000}
_WAN_LICENCE = "Apache-2.0."
# LTX-Video: T5-XXL text encoder and the LTX VAE.
_LTX_ENCODERS = {"text_encoder": 9_520_000_000, "vae": 840_000_000}
_LTX_LICENCE = "LTX-Video Open Weights License (LTXV-OWL): free for use below USD 10M annual revenue; see the model card."
# Timestep-aware VAEs (LTX-Video 0.9.1 and later) decode from slightly noised latents, as Lightricks recommends.
_LTX_DECODE_NOISE = (("decode_timestep", 0.05), ("decode_noise_scale", 0.025))

# HiDream-I1 (17B MoE transformer) and CogView4-6B (GLM-4-9B encoder): parameter counts × 2 bytes (bf16).
_HIDREAM_BYTES = {
    "transformer": 34_200_000_000, "text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000,
    "text_encoder_3": 9_520_000_000, "text_encoder_4": 16_060_000_000, "vae": 168_000_000,
}
_HIDREAM_LICENCE = (
    "HiDream-I1: MIT. Its Llama 3.1 text encoder: Llama 3.1 Community License, gated on the Hub "
    "(accept it at https://huggingface.co/meta-llama/Meta-Llama-3.1-8B-Instruct first)."
)
LLAMA_31_ENCODER = CompanionRepo(
    id="llama-3.1-8b-instruct",
    name="Llama 3.1 8B Instruct (HiDream's fourth text encoder)",
    repo="meta-llama/Meta-Llama-3.1-8B-Instruct",
    encoder="text_encoder_4",
    tokenizer="tokenizer_4",
    encoder_class="LlamaForCausalLM",
    licence="Llama 3.1 Community License; gated on the Hub (accept the licence first).",
)

# FLUX.1 tools: Canny and Depth are FLUX.1 [dev] transformers that take the control image's latents beside the
# noise (128 input channels instead of 64); Redux is a prior in a repo of its own beside an unchanged FLUX.1 [dev].
_FLUX_DEV_LICENCE = "FLUX.1 [dev] Non-Commercial License; gated on the Hub (accept the licence first)."
# SigLIP so400m (patch 14 at 384 px) and the Redux embedder, in bf16.
_FLUX_REDUX_BYTES = {"prior_image_encoder": 856_000_000, "prior_image_embedder": 129_000_000}
FLUX_REDUX_PRIOR = CompanionRepo(
    id="flux1-redux-dev",
    name="FLUX.1 Redux [dev] (image encoder and embedder)",
    repo="black-forest-labs/FLUX.1-Redux-dev",
    licence=_FLUX_DEV_LICENCE,
    prior_pipeline_class="FluxPriorReduxPipeline",
    # The diffusers folders only; the repo also holds the embedder as one BFL-layout file.
    allow_patterns=("model_index.json", "*/*.json", "*/*.safetensors"),
    folder_marker="model_index.json",
)

_FISH_SPEECH_FILES = ("*.json", "*.pth", "*.tiktoken")

# ACE-Step 1.5 XL: a 4.7B DiT (9.5 GB in bf16 with its condition encoder), the Qwen3-Embedding-0.6B text encoder
# and the 48 kHz Oobleck VAE, as the published files weigh.
_ACE_STEP_XL_BYTES = {"transformer": 9_516_000_000, "text_encoder": 1_190_000_000, "vae": 337_000_000}
_ACE_STEP_LICENCE = "Apache-2.0 (ACE-Step 1.5 by ACE Studio and StepFun; see the model card)."

_SD15_LICENCE = "CreativeML Open RAIL-M (use restrictions in the licence; commercial use allowed)."
_SDXL_LICENCE = "CreativeML Open RAIL++-M (use restrictions in the licence; commercial use allowed)."
# Only the diffusers folders: the repos also hold single-file duplicates, fp32 and ONNX/OpenVINO copies.
_SD_FILES = ("*.json", "*.txt", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.fp16.safetensors", "*/model.fp16.safetensors")

_TINY_BYTES = {"transformer": 1_000_000, "text_encoder": 500_000, "text_encoder_2": 500_000, "vae": 1_000_000}
_TINY_VIDEO_BYTES = {"transformer": 200_000, "text_encoder": 200_000, "vae": 200_000}
# FramePack: the 13B HunyuanVideo-based transformer (bf16), HunyuanVideo's Llava-Llama-3-8B and CLIP-L text encoders and
# VAE, Redux's SigLIP-so400m image encoder; bytes from parameter counts, as published.
_FRAMEPACK_LICENCE = (
    "Tencent Hunyuan Community License (FramePack's weights and HunyuanVideo's; not licensed in the EU, UK and South "
    "Korea; see the model cards). The SigLIP image encoder comes from lllyasviel/flux_redux_bfl (see its model card)."
)
HUNYUANVIDEO_BASE = ComponentRepo(
    id="hunyuanvideo-base",
    name="HunyuanVideo text encoders and VAE",
    repo="hunyuanvideo-community/HunyuanVideo",
    components=_frozen({
        "text_encoder": "LlamaModel", "tokenizer": "AutoTokenizer", "text_encoder_2": "CLIPTextModel",
        "tokenizer_2": "AutoTokenizer", "vae": "AutoencoderKLHunyuanVideo", "scheduler": "FlowMatchEulerDiscreteScheduler",
    }),
    licence=_FRAMEPACK_LICENCE,
    folder_marker="vae/config.json",
)
REDUX_IMAGE_ENCODER = ComponentRepo(
    id="flux-redux-siglip",
    name="SigLIP image encoder (from FLUX Redux)",
    repo="lllyasviel/flux_redux_bfl",
    components=_frozen({"image_encoder": "SiglipVisionModel", "feature_extractor": "SiglipImageProcessor"}),
    licence=_FRAMEPACK_LICENCE,
    folder_marker="image_encoder/config.json",
)
_FRAMEPACK_BYTES = {
    "transformer": 25_700_000_000, "text_encoder": 15_000_000_000, "text_encoder_2": 246_000_000, "vae": 493_000_000,
    "image_encoder": 856_000_000,
}
# The demo's two component repos, built by our code in the same layout.
_DEMO_FRAMEPACK_REPOS = (
    replace(HUNYUANVIDEO_BASE, id="demo-hunyuanvideo-base", name="HunyuanVideo text encoders and VAE (tiny)", repo=None, licence=""),
    replace(REDUX_IMAGE_ENCODER, id="demo-flux-redux-siglip", name="SigLIP image encoder (tiny)", repo=None, licence=""),
)
# HunyuanVideo text to video: its 13B transformer (bf16) with the same encoders and VAE as FramePack.
_HUNYUANVIDEO_BYTES = {key: value for key, value in _FRAMEPACK_BYTES.items() if key != "image_encoder"}
_HUNYUANVIDEO_LICENCE = (
    "Tencent Hunyuan Community License (not licensed in the EU, UK and South Korea; see the model card)."
)
_SKYREELS_LICENCE = "SkyReels V2 Community License (Skywork; see the model card)"
_DEMO_LICENCE = "Demo model built by Atelier from a config with random weights: its outputs are noise, not a real model's."

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="sd3-medium",
        name="Stable Diffusion 3 Medium",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        repo="stabilityai/stable-diffusion-3-medium-diffusers",
        defaults=CallDefaults(steps=28, guidance=7.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 4_170_000_000, **_SD3_ENCODERS}),
        licence=_STABILITY_LICENCE,
    ),
    ModelSpec(
        id="sd3-medium-hyper8",
        name="SD3 Medium + Hyper-SD 8 steps (fast)",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        base="sd3-medium",
        lora=LoraSpec(repo="ByteDance/Hyper-SD", filename="Hyper-SD3-8steps-CFG-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=5.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 4_170_000_000, **_SD3_ENCODERS, "lora": 472_000_000}),
        licence=_STABILITY_LICENCE + " Hyper-SD LoRA: see the ByteDance/Hyper-SD model card.",
    ),
    ModelSpec(
        id="sd35-medium",
        name="Stable Diffusion 3.5 Medium",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        repo="stabilityai/stable-diffusion-3.5-medium",
        defaults=CallDefaults(steps=40, guidance=4.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 4_940_000_000, **_SD3_ENCODERS}),
        licence=_STABILITY_LICENCE,
    ),
    ModelSpec(
        id="sd35-large",
        name="Stable Diffusion 3.5 Large",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        repo="stabilityai/stable-diffusion-3.5-large",
        defaults=CallDefaults(steps=28, guidance=3.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 16_300_000_000, **_SD3_ENCODERS}),
        licence=_STABILITY_LICENCE,
    ),
    ModelSpec(
        id="flux1-dev",
        name="FLUX.1 [dev]",
        family=Family.FLUX,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="FluxPipeline",
        repo="black-forest-labs/FLUX.1-dev",
        defaults=CallDefaults(steps=28, guidance=3.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS}),
        licence=_FLUX_DEV_LICENCE,
    ),
    ModelSpec(
        id="flux1-dev-hyper8",
        name="FLUX.1 [dev] + Hyper-FLUX 8 steps (fast)",
        family=Family.FLUX,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="FluxPipeline",
        base="flux1-dev",
        lora=LoraSpec(repo="ByteDance/Hyper-SD", filename="Hyper-FLUX.1-dev-8steps-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=3.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS, "lora": 1_390_000_000}),
        licence="FLUX.1 [dev] Non-Commercial License; gated on the Hub (accept the licence first). Hyper-SD LoRA: see the ByteDance/Hyper-SD model card.",
    ),
    ModelSpec(
        id="flux1-canny-dev",
        name="FLUX.1 Canny [dev]",
        family=Family.FLUX,
        task=Task.CANNY_TO_IMAGE,
        pipeline_class="FluxControlPipeline",
        repo="black-forest-labs/FLUX.1-Canny-dev",
        # The model card's settings: 50 steps at guidance 30.
        defaults=CallDefaults(steps=50, guidance=30.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS}),
        licence=_FLUX_DEV_LICENCE,
    ),
    ModelSpec(
        id="flux1-depth-dev",
        name="FLUX.1 Depth [dev]",
        family=Family.FLUX,
        task=Task.DEPTH_TO_IMAGE,
        pipeline_class="FluxControlPipeline",
        repo="black-forest-labs/FLUX.1-Depth-dev",
        # diffusers' documented settings for the Depth model: 30 steps at guidance 10.
        defaults=CallDefaults(steps=30, guidance=10.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS}),
        licence=_FLUX_DEV_LICENCE,
    ),
    ModelSpec(
        id="flux1-redux-dev",
        name="FLUX.1 Redux [dev] (variations)",
        family=Family.FLUX,
        task=Task.IMAGE_VARIATION,
        pipeline_class="FluxPipeline",
        # The denoiser is FLUX.1 [dev] itself, its files shared with that entry; the prior comes from Redux's repo.
        base="flux1-dev",
        companion=FLUX_REDUX_PRIOR,
        # diffusers' Redux example: 50 steps at guidance 2.5.
        defaults=CallDefaults(steps=50, guidance=2.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS, **_FLUX_REDUX_BYTES}),
        licence=_FLUX_DEV_LICENCE,
    ),
    ModelSpec(
        id="sd15",
        name="Stable Diffusion 1.5",
        family=Family.SD15,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusionPipeline",
        repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
        defaults=CallDefaults(steps=25, guidance=7.0, width=512, height=512, scheduler="DPM++ 2M"),
        component_bytes=_frozen({"unet": 1_720_000_000, "text_encoder": 246_000_000, "vae": 167_000_000}),
        licence=_SD15_LICENCE,
        allow_patterns=_SD_FILES,
        variant="fp16",
    ),
    ModelSpec(
        id="sdxl-base",
        name="Stable Diffusion XL 1.0",
        family=Family.SDXL,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusionXLPipeline",
        repo="stabilityai/stable-diffusion-xl-base-1.0",
        defaults=CallDefaults(steps=30, guidance=6.0, width=1024, height=1024, scheduler="DPM++ 2M"),
        component_bytes=_frozen({"unet": 5_140_000_000, "text_encoder": 246_000_000, "text_encoder_2": 1_390_000_000, "vae": 167_000_000}),
        licence=_SDXL_LICENCE,
        allow_patterns=_SD_FILES,
        variant="fp16",
    ),
    ModelSpec(
        id="flux1-schnell",
        name="FLUX.1 [schnell]",
        family=Family.FLUX,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="FluxPipeline",
        repo="black-forest-labs/FLUX.1-schnell",
        defaults=CallDefaults(steps=4, guidance=0.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS}),
        licence="Apache-2.0.",
    ),
    ModelSpec(
        id="hidream-i1-full",
        name="HiDream-I1 Full",
        family=Family.HIDREAM,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="HiDreamImagePipeline",
        repo="HiDream-ai/HiDream-I1-Full",
        defaults=CallDefaults(steps=50, guidance=5.0, width=1024, height=1024, scheduler="UniPC"),
        component_bytes=_frozen(_HIDREAM_BYTES),
        licence=_HIDREAM_LICENCE,
        companion=LLAMA_31_ENCODER,
    ),
    ModelSpec(
        id="hidream-i1-dev",
        name="HiDream-I1 Dev",
        family=Family.HIDREAM,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="HiDreamImagePipeline",
        repo="HiDream-ai/HiDream-I1-Dev",
        defaults=CallDefaults(steps=28, guidance=0.0, width=1024, height=1024),
        component_bytes=_frozen(_HIDREAM_BYTES),
        licence=_HIDREAM_LICENCE,
        companion=LLAMA_31_ENCODER,
    ),
    ModelSpec(
        id="hidream-i1-fast",
        name="HiDream-I1 Fast",
        family=Family.HIDREAM,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="HiDreamImagePipeline",
        repo="HiDream-ai/HiDream-I1-Fast",
        defaults=CallDefaults(steps=16, guidance=0.0, width=1024, height=1024),
        component_bytes=_frozen(_HIDREAM_BYTES),
        licence=_HIDREAM_LICENCE,
        companion=LLAMA_31_ENCODER,
    ),
    ModelSpec(
        id="cogview4-6b",
        name="CogView4-6B",
        family=Family.COGVIEW4,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="CogView4Pipeline",
        repo="THUDM/CogView4-6B",
        defaults=CallDefaults(steps=50, guidance=3.5, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 12_800_000_000, "text_encoder": 17_600_000_000, "vae": 168_000_000}),
        licence="Apache-2.0 (CogView4-6B, including its GLM-4 text encoder).",
    ),
    ModelSpec(
        id="openaudio-s1-mini",
        name="OpenAudio S1-mini (Fish Speech)",
        family=Family.FISH_SPEECH,
        task=Task.TEXT_TO_SPEECH,
        pipeline_class="FishSpeech",
        repo="fishaudio/openaudio-s1-mini",
        defaults=SpeechDefaults(),
        component_bytes=_frozen({"dual_ar": 1_740_000_000, "codec": 1_870_000_000}),
        licence="CC-BY-NC-SA-4.0 (non-commercial use only); gated on the Hub (accept the terms first).",
        allow_patterns=_FISH_SPEECH_FILES,
        folder_marker="codec.pth",
    ),
    ModelSpec(
        id="ace-step-15-xl-turbo",
        name="ACE-Step 1.5 XL Turbo",
        family=Family.ACE_STEP,
        task=Task.TEXT_TO_MUSIC,
        pipeline_class="AceStepPipeline",
        repo="ACE-Step/acestep-v15-xl-turbo-diffusers",
        # Guidance is distilled into the weights: the pipeline ignores guidance for turbo checkpoints.
        defaults=MusicDefaults(steps=8, guidance=1.0),
        component_bytes=_frozen(_ACE_STEP_XL_BYTES),
        licence=_ACE_STEP_LICENCE,
    ),
    ModelSpec(
        id="ace-step-15-xl-base",
        name="ACE-Step 1.5 XL Base",
        family=Family.ACE_STEP,
        task=Task.TEXT_TO_MUSIC,
        pipeline_class="AceStepPipeline",
        repo="ACE-Step/acestep-v15-xl-base-diffusers",
        # Not distilled: guidance on, and more steps than turbo's 8.
        defaults=MusicDefaults(steps=32, guidance=7.0),
        component_bytes=_frozen(_ACE_STEP_XL_BYTES),
        licence=_ACE_STEP_LICENCE,
    ),
    ModelSpec(
        id="wan21-t2v-1.3b",
        name="Wan2.1 T2V 1.3B",
        family=Family.WAN,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanPipeline",
        repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        defaults=VideoDefaults(steps=50, guidance=5.0, width=832, height=480, frames=81, fps=16, flow_shift=3.0),
        component_bytes=_frozen({"transformer": 2_840_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-t2v-1.3b-image",
        name="Wan2.1 T2V 1.3B as an image model (one frame)",
        family=Family.WAN,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="WanPipeline",
        base="wan21-t2v-1.3b",
        defaults=CallDefaults(steps=30, guidance=5.0, width=832, height=480, scheduler="UniPC"),
        component_bytes=_frozen({"transformer": 2_840_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-t2v-14b-image",
        name="Wan2.1 T2V 14B as an image model (one frame)",
        family=Family.WAN,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="WanPipeline",
        base="wan21-t2v-14b",
        defaults=CallDefaults(steps=30, guidance=5.0, width=1280, height=720, scheduler="UniPC"),
        component_bytes=_frozen({"transformer": 28_600_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="skyreels-v2-df-1.3b-540p",
        name="SkyReels V2 DF 1.3B (540P, long video)",
        family=Family.SKYREELS_V2,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="SkyReelsV2DiffusionForcingPipeline",
        repo="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
        # The model card's text-to-video settings: shift 8, guidance 6, 97 frames at 24 fps.
        defaults=VideoDefaults(steps=30, guidance=6.0, width=960, height=544, frames=97, fps=24, flow_shift=8.0),
        component_bytes=_frozen({"transformer": 2_840_000_000, **_WAN_ENCODERS}),
        licence=_SKYREELS_LICENCE,
    ),
    ModelSpec(
        id="skyreels-v2-df-14b-540p",
        name="SkyReels V2 DF 14B (540P, long video)",
        family=Family.SKYREELS_V2,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="SkyReelsV2DiffusionForcingPipeline",
        repo="Skywork/SkyReels-V2-DF-14B-540P-Diffusers",
        defaults=VideoDefaults(steps=30, guidance=6.0, width=960, height=544, frames=97, fps=24, flow_shift=8.0),
        component_bytes=_frozen({"transformer": 28_600_000_000, **_WAN_ENCODERS}),
        licence=_SKYREELS_LICENCE,
    ),
    ModelSpec(
        id="skyreels-v2-df-14b-720p",
        name="SkyReels V2 DF 14B (720P, long video)",
        family=Family.SKYREELS_V2,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="SkyReelsV2DiffusionForcingPipeline",
        repo="Skywork/SkyReels-V2-DF-14B-720P-Diffusers",
        # Trained at 1280×720 (the model card makes 121 frames at once; the family's 97-frame limit applies here,
        # longer videos come in chunks).
        defaults=VideoDefaults(steps=30, guidance=6.0, width=1280, height=720, frames=97, fps=24, flow_shift=8.0),
        component_bytes=_frozen({"transformer": 28_600_000_000, **_WAN_ENCODERS}),
        licence=_SKYREELS_LICENCE,
    ),
    ModelSpec(
        id="wan21-t2v-14b",
        name="Wan2.1 T2V 14B",
        family=Family.WAN,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanPipeline",
        repo="Wan-AI/Wan2.1-T2V-14B-Diffusers",
        # Shift 5.0 for 720p, 3.0 for 480p (Wan's own recommendation).
        defaults=VideoDefaults(steps=50, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=5.0),
        component_bytes=_frozen({"transformer": 28_600_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-i2v-14b-480p",
        name="Wan2.1 I2V 14B 480p",
        family=Family.WAN,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="WanImageToVideoPipeline",
        repo="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        defaults=VideoDefaults(steps=50, guidance=5.0, width=832, height=480, frames=81, fps=16, flow_shift=3.0),
        component_bytes=_frozen({"transformer": 32_800_000_000, **_WAN_I2V_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-i2v-14b-720p",
        name="Wan2.1 I2V 14B 720p",
        family=Family.WAN,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="WanImageToVideoPipeline",
        repo="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
        defaults=VideoDefaults(steps=50, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=5.0),
        component_bytes=_frozen({"transformer": 32_800_000_000, **_WAN_I2V_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-vace-1.3b",
        name="Wan2.1 VACE 1.3B (references, video editing)",
        family=Family.WAN_VACE,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanVACEPipeline",
        repo="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        # diffusers' WanVACEPipeline example: 480p, 81 frames, 30 steps, guidance 5, shift 3.0 (5.0 for 720p).
        defaults=VideoDefaults(steps=30, guidance=5.0, width=832, height=480, frames=81, fps=16, flow_shift=3.0),
        # The 1.3B transformer (2.84 GB) plus 15 VACE blocks (1.47 GB), bf16.
        component_bytes=_frozen({"transformer": 4_310_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="wan21-vace-14b",
        name="Wan2.1 VACE 14B (references, video editing)",
        family=Family.WAN_VACE,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanVACEPipeline",
        repo="Wan-AI/Wan2.1-VACE-14B-diffusers",
        defaults=VideoDefaults(steps=50, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=5.0),
        # The 14B transformer (28.6 GB) plus 8 VACE blocks (6.1 GB), bf16.
        component_bytes=_frozen({"transformer": 34_680_000_000, **_WAN_ENCODERS}),
        licence=_WAN_LICENCE,
    ),
    ModelSpec(
        id="ltx-video-0.9.5",
        name="LTX-Video 0.9.5 (2B)",
        family=Family.LTX,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="LTXPipeline",
        repo="Lightricks/LTX-Video-0.9.5",
        defaults=VideoDefaults(
            steps=40, guidance=3.0, width=768, height=512, frames=161, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes=_frozen({"transformer": 3_850_000_000, **_LTX_ENCODERS}),
        licence=_LTX_LICENCE,
    ),
    ModelSpec(
        id="ltx-video-0.9.7-distilled",
        name="LTX-Video 0.9.7 13B distilled (fast)",
        family=Family.LTX,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="LTXPipeline",
        repo="Lightricks/LTX-Video-0.9.7-distilled",
        # Step- and guidance-distilled: 8 steps, no classifier-free guidance (guidance 1 runs one pass per step).
        defaults=VideoDefaults(
            steps=8, guidance=1.0, width=768, height=512, frames=121, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes=_frozen({"transformer": 26_000_000_000, **_LTX_ENCODERS}),
        licence=_LTX_LICENCE,
    ),
    ModelSpec(
        id="omnigen-v1",
        name="OmniGen v1 (instruction editing)",
        family=Family.OMNIGEN,
        task=Task.INSTRUCTION_EDIT,
        pipeline_class="OmniGenPipeline",
        repo="Shitao/OmniGen-v1-diffusers",
        # The model card's settings: 50 steps, guidance 2.5 (2 to 3 when editing), image guidance 1.6, 1024².
        defaults=EditDefaults(steps=50, guidance=2.5, width=1024, height=1024, image_guidance=1.6),
        # 3.8B parameters (Phi-3 decoder) × 2 bytes, and the SDXL VAE.
        component_bytes=_frozen({"transformer": 7_600_000_000, "vae": 168_000_000}),
        licence="MIT.",
    ),
    ModelSpec(
        id="flux1-fill-dev",
        name="FLUX.1 Fill [dev] (inpaint / outpaint)",
        family=Family.FLUX,
        task=Task.INPAINT,
        pipeline_class="FluxFillPipeline",
        repo="black-forest-labs/FLUX.1-Fill-dev",
        # The model card's settings: guidance 30, 50 steps (28 already gives clean fills).
        defaults=EditDefaults(steps=50, guidance=30.0, width=1024, height=1024),
        component_bytes=_frozen({"transformer": 23_800_000_000, **_FLUX_ENCODERS}),
        licence="FLUX.1 [dev] Non-Commercial License; gated on the Hub (accept the licence first).",
    ),
    ModelSpec(
        id="demo-omnigen",
        name="OmniGen (tiny)",
        family=Family.OMNIGEN,
        task=Task.INSTRUCTION_EDIT,
        pipeline_class="OmniGenPipeline",
        demo=True,
        defaults=EditDefaults(steps=4, guidance=2.5, width=64, height=64, image_guidance=1.6),
        component_bytes=_frozen({"transformer": 300_000, "vae": 1_000_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux-fill",
        name="FLUX.1 Fill (tiny)",
        family=Family.FLUX,
        task=Task.INPAINT,
        pipeline_class="FluxFillPipeline",
        demo=True,
        defaults=EditDefaults(steps=4, guidance=30.0, width=256, height=256),
        component_bytes=_frozen(_TINY_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="framepack-i2v-hy",
        name="FramePack I2V (HunyuanVideo, long video in sections)",
        family=Family.FRAMEPACK,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="HunyuanVideoFramepackPipeline",
        repo="lllyasviel/FramePackI2V_HY",
        # FramePack's own defaults: 25 steps, distilled guidance 10, 30 fps; 145 frames = 4 sections ≈ 5 s. Sections
        # are made from the end of the video back to the input image (anti-drifting).
        defaults=VideoDefaults(
            steps=25, guidance=10.0, width=640, height=640, frames=145, fps=30, flow_shift=None,
            call_kwargs=(("sampling_type", "inverted_anti_drifting"),),
        ),
        component_bytes=_frozen(_FRAMEPACK_BYTES),
        licence=_FRAMEPACK_LICENCE,
        allow_patterns=("*.json", "*.safetensors"),
        folder_marker="config.json",
        component_repos=(HUNYUANVIDEO_BASE, REDUX_IMAGE_ENCODER),
    ),
    ModelSpec(
        id="framepack-f1-i2v-hy",
        name="FramePack F1 I2V (HunyuanVideo, forward sections)",
        family=Family.FRAMEPACK,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="HunyuanVideoFramepackPipeline",
        repo="lllyasviel/FramePack_F1_I2V_HY_20250503",
        # F1 makes its sections forward from the input image (vanilla sampling): more motion, more drift.
        defaults=VideoDefaults(
            steps=25, guidance=10.0, width=640, height=640, frames=145, fps=30, flow_shift=None,
            call_kwargs=(("sampling_type", "vanilla"),),
        ),
        component_bytes=_frozen(_FRAMEPACK_BYTES),
        licence=_FRAMEPACK_LICENCE,
        allow_patterns=("*.json", "*.safetensors"),
        folder_marker="config.json",
        component_repos=(HUNYUANVIDEO_BASE, REDUX_IMAGE_ENCODER),
    ),
    ModelSpec(
        id="hunyuanvideo-t2v",
        name="HunyuanVideo T2V 13B",
        family=Family.HUNYUANVIDEO,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="HunyuanVideoPipeline",
        repo="hunyuanvideo-community/HunyuanVideo",
        # HunyuanVideoPipeline's defaults in diffusers 0.42.1: 50 steps, embedded guidance 6.0, 129 frames; shift 7 is
        # the repo's scheduler config. Size: the smaller of Tencent's two trained resolutions (720×1280, 544×960).
        defaults=VideoDefaults(steps=50, guidance=6.0, width=960, height=544, frames=129, fps=24, flow_shift=7.0),
        component_bytes=_frozen(_HUNYUANVIDEO_BYTES),
        licence=_HUNYUANVIDEO_LICENCE,
    ),
    ModelSpec(
        id="fast-hunyuanvideo",
        name="Fast HunyuanVideo T2V 13B (step-distilled, 6 steps)",
        family=Family.HUNYUANVIDEO,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="HunyuanVideoPipeline",
        repo="FastVideo/FastHunyuan-diffusers",
        # FastVideo's model card: 6 steps, flow shift 17, embedded guidance 6 (frames and size as HunyuanVideo's).
        defaults=VideoDefaults(steps=6, guidance=6.0, width=960, height=544, frames=129, fps=24, flow_shift=17.0),
        component_bytes=_frozen(_HUNYUANVIDEO_BYTES),
        licence=_HUNYUANVIDEO_LICENCE,
    ),
    ModelSpec(
        id="demo-sd3",
        name="SD3 (tiny)",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=5.0, width=256, height=256),
        component_bytes=_frozen({**_TINY_BYTES, "text_encoder_3": 500_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-sd3-hyper8",
        name="SD3 + step-distillation LoRA (tiny)",
        family=Family.SD3,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusion3Pipeline",
        demo=True,
        base="demo-sd3",
        lora=LoraSpec(repo=None, filename="demo-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=5.0, width=256, height=256),
        component_bytes=_frozen({**_TINY_BYTES, "text_encoder_3": 500_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux",
        name="FLUX.1 (tiny)",
        family=Family.FLUX,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="FluxPipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=3.5, width=256, height=256),
        component_bytes=_frozen(_TINY_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux-hyper8",
        name="FLUX.1 + step-distillation LoRA (tiny)",
        family=Family.FLUX,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="FluxPipeline",
        demo=True,
        base="demo-flux",
        lora=LoraSpec(repo=None, filename="demo-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=3.5, width=256, height=256),
        component_bytes=_frozen(_TINY_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux-canny",
        name="FLUX.1 Canny (tiny)",
        family=Family.FLUX,
        task=Task.CANNY_TO_IMAGE,
        pipeline_class="FluxControlPipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=30.0, width=256, height=256),
        component_bytes=_frozen(_TINY_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux-depth",
        name="FLUX.1 Depth (tiny)",
        family=Family.FLUX,
        task=Task.DEPTH_TO_IMAGE,
        pipeline_class="FluxControlPipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=10.0, width=256, height=256),
        component_bytes=_frozen(_TINY_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-flux-redux",
        name="FLUX.1 Redux (tiny)",
        family=Family.FLUX,
        task=Task.IMAGE_VARIATION,
        pipeline_class="FluxPipeline",
        demo=True,
        base="demo-flux",
        defaults=CallDefaults(steps=4, guidance=2.5, width=256, height=256),
        component_bytes=_frozen({**_TINY_BYTES, "prior_image_encoder": 100_000, "prior_image_embedder": 10_000}),
        licence=_DEMO_LICENCE,
        companion=CompanionRepo(
            id="demo-flux-redux-prior", name="FLUX.1 Redux prior (tiny)", repo=None, licence=_DEMO_LICENCE,
            prior_pipeline_class="FluxPriorReduxPipeline", folder_marker="model_index.json",
        ),
    ),
    ModelSpec(
        id="demo-hidream",
        name="HiDream-I1 (tiny)",
        family=Family.HIDREAM,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="HiDreamImagePipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=5.0, width=1024, height=1024),
        component_bytes=_frozen({**_TINY_BYTES, "text_encoder_3": 500_000, "text_encoder_4": 100_000}),
        licence=_DEMO_LICENCE,
        companion=CompanionRepo(
            id="demo-llama", name="Llama (tiny)", repo=None, encoder="text_encoder_4", tokenizer="tokenizer_4",
            encoder_class="LlamaForCausalLM", licence=_DEMO_LICENCE,
        ),
    ),
    ModelSpec(
        id="demo-cogview4",
        name="CogView4 (tiny)",
        family=Family.COGVIEW4,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="CogView4Pipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=3.5, width=512, height=512),
        component_bytes=_frozen({"transformer": 200_000, "text_encoder": 100_000, "vae": 1_000_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-sd15",
        name="SD1.5 (tiny)",
        family=Family.SD15,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusionPipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=7.0, width=256, height=256),
        component_bytes=_frozen({"unet": 1_000_000, "text_encoder": 500_000, "vae": 1_000_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-sdxl",
        name="SDXL (tiny)",
        family=Family.SDXL,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="StableDiffusionXLPipeline",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=6.0, width=256, height=256),
        component_bytes=_frozen({"unet": 1_000_000, "text_encoder": 500_000, "text_encoder_2": 500_000, "vae": 1_000_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-fish-speech",
        name="Fish Speech (tiny)",
        family=Family.FISH_SPEECH,
        task=Task.TEXT_TO_SPEECH,
        pipeline_class="FishSpeech",
        demo=True,
        defaults=SpeechDefaults(max_new_tokens=64, chunk_length=60),
        component_bytes=_frozen({"dual_ar": 3_000_000, "codec": 1_000_000}),
        licence=_DEMO_LICENCE,
        folder_marker="codec.pth",
    ),
    ModelSpec(
        id="demo-ace-step",
        name="ACE-Step 1.5 Turbo (tiny)",
        family=Family.ACE_STEP,
        task=Task.TEXT_TO_MUSIC,
        pipeline_class="AceStepPipeline",
        demo=True,
        defaults=MusicDefaults(steps=2, guidance=1.0, duration=4.0),
        component_bytes=_frozen({"transformer": 300_000, "text_encoder": 500_000, "vae": 200_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-wan",
        name="Wan2.1 T2V (tiny)",
        family=Family.WAN,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanPipeline",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes=_frozen(_TINY_VIDEO_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-skyreels-v2",
        name="SkyReels V2 DF (tiny)",
        family=Family.SKYREELS_V2,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="SkyReelsV2DiffusionForcingPipeline",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=6.0, width=64, height=64, frames=9, fps=24, flow_shift=8.0),
        component_bytes=_frozen(_TINY_VIDEO_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-wan-image",
        name="Wan2.1 T2V as an image model (tiny)",
        family=Family.WAN,
        task=Task.TEXT_TO_IMAGE,
        pipeline_class="WanPipeline",
        demo=True,
        base="demo-wan",
        defaults=CallDefaults(steps=4, guidance=5.0, width=64, height=64, scheduler="UniPC"),
        component_bytes=_frozen(_TINY_VIDEO_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-wan-i2v",
        name="Wan2.1 I2V (tiny)",
        family=Family.WAN,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="WanImageToVideoPipeline",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes=_frozen({**_TINY_VIDEO_BYTES, "image_encoder": 200_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-wan-vace",
        name="Wan2.1 VACE (tiny)",
        family=Family.WAN_VACE,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="WanVACEPipeline",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes=_frozen(_TINY_VIDEO_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-ltx",
        name="LTX-Video (tiny)",
        family=Family.LTX,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="LTXPipeline",
        demo=True,
        defaults=VideoDefaults(
            steps=4, guidance=3.0, width=64, height=64, frames=9, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes=_frozen(_TINY_VIDEO_BYTES),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-hunyuanvideo",
        name="HunyuanVideo T2V (tiny)",
        family=Family.HUNYUANVIDEO,
        task=Task.TEXT_TO_VIDEO,
        pipeline_class="HunyuanVideoPipeline",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=6.0, width=64, height=64, frames=9, fps=24, flow_shift=7.0),
        component_bytes=_frozen({**_TINY_VIDEO_BYTES, "text_encoder_2": 200_000}),
        licence=_DEMO_LICENCE,
    ),
    ModelSpec(
        id="demo-framepack",
        name="FramePack I2V (tiny)",
        family=Family.FRAMEPACK,
        task=Task.IMAGE_TO_VIDEO,
        pipeline_class="HunyuanVideoFramepackPipeline",
        demo=True,
        # Two sections of the default window.
        defaults=VideoDefaults(
            steps=4, guidance=10.0, width=64, height=64, frames=73, fps=30, flow_shift=None,
            call_kwargs=(("sampling_type", "inverted_anti_drifting"),),
        ),
        component_bytes=_frozen({**_TINY_VIDEO_BYTES, "text_encoder_2": 200_000, "image_encoder": 100_000}),
        licence=_DEMO_LICENCE,
        folder_marker="config.json",
        component_repos=_DEMO_FRAMEPACK_REPOS,
    ),
)

MODELS_BY_ID: Mapping[str, ModelSpec] = _frozen({spec.id: spec for spec in MODELS})


class Catalog:
    """The models the app knows: the fixed entries above, then the checkpoint files the last scan of the models
    folder found. The model store owns the one catalog and replaces its files at each scan (one assignment of a
    frozen mapping, so a reader never sees half a scan); tabs and runners read it through the store."""

    def __init__(self, files: tuple[ModelSpec, ...] = ()):
        self._files: Mapping[str, ModelSpec] = _frozen({spec.id: spec for spec in files})

    def replace_files(self, specs) -> None:
        self._files = _frozen({spec.id: spec for spec in specs})

    def all(self) -> tuple[ModelSpec, ...]:
        """The fixed catalog, then the checkpoint files found by the last scan."""
        return MODELS + tuple(self._files.values())

    def get(self, model_id: str) -> ModelSpec | None:
        return MODELS_BY_ID.get(model_id) or self._files.get(model_id)

    def spec(self, model_id: str) -> ModelSpec:
        """The entry for `model_id` (a fixed entry or a scanned file); KeyError when there is none."""
        found = self.get(model_id)
        if found is None:
            raise KeyError(model_id)
        return found

    def for_task(self, *tasks: Task) -> dict[str, ModelSpec]:
        """The models of these tasks, by id, checkpoint files included."""
        return {spec.id: spec for spec in self.all() if spec.task in tasks}

    def image_models(self) -> dict[str, ModelSpec]:
        return self.for_task(Task.TEXT_TO_IMAGE)

    def video_models(self) -> dict[str, ModelSpec]:
        """Text-to-video and image-to-video models, checkpoint files included."""
        return self.for_task(Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO)


# Entries for the checkpoint files found in the models folder, keyed by file name. The scan
# (`ModelStore.scan_files`) replaces them whole; they are the only catalog entries not fixed at import,
# because which files a person drops in their models folder is only known at run time.
_file_models: Mapping[str, ModelSpec] = _frozen({})


def set_file_models(specs: list[ModelSpec]) -> None:
    global _file_models
    _file_models = _frozen({spec.id: spec for spec in specs})


def all_models() -> tuple[ModelSpec, ...]:
    """The fixed catalog, then the checkpoint files found by the last scan of the models folder."""
    return MODELS + tuple(_file_models.values())


def image_models() -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in all_models() if spec.task is Task.TEXT_TO_IMAGE}


def models_for(task: Task) -> dict[str, ModelSpec]:
    """The catalog's models for one task, by id."""
    return {spec.id: spec for spec in all_models() if spec.task is task}


def video_models() -> dict[str, ModelSpec]:
    """Text-to-video and image-to-video models, checkpoint files included."""
    return {spec.id: spec for spec in all_models() if spec.task in (Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO)}


def model_spec(model_id: str) -> ModelSpec:
    """The catalog entry for `model_id` (a fixed entry or a scanned file); KeyError when there is none."""
    if model_id in MODELS_BY_ID:
        return MODELS_BY_ID[model_id]
    return _file_models[model_id]


def family_spec(family: Family) -> FamilySpec:
    return FAMILIES[family]
