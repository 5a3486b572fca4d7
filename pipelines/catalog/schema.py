"""What a catalog entry is: the enums that name families, tasks and component roles, and the frozen dataclasses of
one model's entry (`ModelSpec`) with its call defaults, LoRA, companion and component repos and checkpoint file.

Everything here is a plain value type with no knowledge of which models exist; the families are described in
`rules.py` and `families.py`, the models in the data files `image.py`, `video.py` and `audio.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping


def frozen(mapping: Mapping) -> Mapping:
    """A read-only copy of `mapping`: the catalog's values are shared by every job and must not change under it."""
    return MappingProxyType(dict(mapping))


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


class LongVideo(str, Enum):
    # Our transformer wrapper denoises overlapping windows of latent frames at every step and blends them (Wan:
    # hidden states are plain (batch, channels, frames, height, width) and positions are computed per call).
    CONTEXT_WINDOWS = "context_windows"
    # The pipeline itself makes the video chunk after chunk, each starting from the last chunk's final frames
    # (SkyReels V2 diffusion forcing: `base_num_frames`, `overlap_history`).
    HISTORY_CHUNKS = "history_chunks"


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
class UpsamplePass:
    """A model's second pass at twice the size, as its authors run it (LTX-Video 0.9.7): the base pass runs at
    `base_scale` of the asked size (rounded down to the family's size multiple) and hands over its latents; the latent
    upsampler (the model's companion) doubles them per side; a short denoise at that size sharpens them; the frames
    are then resized to the asked size."""

    base_scale: float
    # The second pass's schedule, entered at `denoise_strength` (diffusers skips the first steps of the list).
    timesteps: tuple[float, ...]
    denoise_strength: float
    # How closely the upsampled latents keep the base pass's per-channel statistics (AdaIN; 0 = not at all).
    adain_factor: float

    @property
    def steps(self) -> int:
        """The denoising steps the second pass runs: diffusers' `get_timesteps` keeps int(n × strength) of n."""
        return min(int(len(self.timesteps) * self.denoise_strength), len(self.timesteps))


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
    # The authors' own timestep schedule (LTX-Video 0.9.7 distilled), used when a job runs its length in steps with
    # no flow shift of its own; otherwise the pipeline makes its own schedule for the steps asked.
    timesteps: tuple[float, ...] = ()
    # A second pass at twice the size through the model's latent upsampler (its companion).
    upsample: UpsamplePass | None = None


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
    image embedder, which turn a picture into the prompt embeddings of FLUX.1 [dev]); or a latent upsampler: a
    diffusers pipeline that runs between a model's two passes (LTX-Video 0.9.7's spatial upscaler, see `UpsamplePass`)."""

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
    # A latent-upsampler companion: its diffusers pipeline class. Only its `latent_upsampler/` is read (the repo's
    # `vae/` is a copy of the model's own, which is passed in); it joins the loaded pipeline as `latent_upsampler`.
    upsampler_pipeline_class: str = ""
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

    # Set for a model found as one file in the models folder (see `pipelines/loading/checkpoint_files.py`).
    checkpoint: CheckpointFile | None = None
    # Components published in another repo (their bytes are counted in `component_bytes`).
    companion: CompanionRepo | None = None
    # Set when the model's own repo holds only its transformer, config and weights at the root: the pipeline is
    # assembled from it and these repos' components (their bytes are counted in `component_bytes`).
    component_repos: tuple[ComponentRepo, ...] = ()
    # The denoiser's diffusers class where the model's own repo holds it alone (FramePack). Taken from here, not from
    # the repo's `config.json`: lllyasviel's repos were saved by the authors' own class, whose name
    # (`HunyuanVideoTransformer3DModelPacked`) diffusers does not have.
    denoiser_class: str = ""

    @property
    def weight_bytes(self) -> int:
        return sum(self.component_bytes.values())

    @property
    def label(self) -> str:
        if self.demo:
            return f"{self.name} [demo · random weights]"
        return self.name
