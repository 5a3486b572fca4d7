"""The model catalog: one frozen entry per model, families and their rules, as data.

Adding a model of a known family is adding one `ModelSpec` to `MODELS`. A new family adds a
`FamilySpec`, a tiny builder in `pipelines/tiny/` and a runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

GB = 1_000_000_000


class Family(str, Enum):
    SD3 = "sd3"
    FLUX = "flux"
    SD15 = "sd15"
    SDXL = "sdxl"
    FISH_SPEECH = "fish_speech"


class Task(str, Enum):
    TEXT_TO_IMAGE = "text_to_image"
    TEXT_TO_SPEECH = "text_to_speech"


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


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    # Sizes must be multiples of the VAE scale factor times the transformer's patch size.
    size_multiple: int
    min_size: int
    max_size: int
    supports_negative_prompt: bool
    schedulers: tuple[SchedulerChoice, ...]
    # Component name in the diffusers folder -> role, for placement.
    component_roles: Mapping[str, Role]
    # Text tokens the denoiser attends over beside the image tokens (CLIP 77 + T5 256 for SD3; T5 512 for FLUX).
    text_tokens: int = 0
    # Whether classifier-free guidance runs as a batch of two in one forward (SD3) or not at all (FLUX).
    guidance_doubles_batch: bool = False
    # Keyword arguments every call of this family's pipeline gets.
    call_kwargs: Mapping[str, object] = field(default_factory=dict)
    # The image-to-image pipeline built on the loaded one (same components).
    img2img_pipeline_class: str = ""
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

    def denoiser_tokens(self, width: int, height: int) -> int:
        """Tokens one sample puts through the denoiser: one per 16×16 pixel patch, plus the text."""
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
class SpeechDefaults:
    temperature: float = 0.8
    top_p: float = 0.8
    repetition_penalty: float = 1.1
    # Semantic frames per chunk of text; about 21.5 frames are one second of speech.
    max_new_tokens: int = 1024
    # Characters per chunk when a long text is split at sentence ends.
    chunk_length: int = 200


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA fused into the base weights at load time (step-distillation LoRAs such as Hyper-SD)."""

    repo: str | None
    filename: str
    scale: float


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
    defaults: CallDefaults | SpeechDefaults
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
    SchedulerChoice("Euler", "FlowMatchEulerDiscreteScheduler"),
    SchedulerChoice("Heun", "FlowMatchHeunDiscreteScheduler"),
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

# Component sizes in bytes as published (bf16/fp16 safetensors), used to plan placement before loading.
_SD3_ENCODERS = {"text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000, "text_encoder_3": 9_520_000_000, "vae": 168_000_000}
_FLUX_ENCODERS = {"text_encoder": 246_000_000, "text_encoder_2": 9_520_000_000, "vae": 168_000_000}
_STABILITY_LICENCE = "Stability AI Community License: free below USD 1M annual revenue; gated on the Hub (accept the licence first)."

_FISH_SPEECH_FILES = ("*.json", "*.pth", "*.tiktoken")

_SD15_LICENCE = "CreativeML Open RAIL-M (use restrictions in the licence; commercial use allowed)."
_SDXL_LICENCE = "CreativeML Open RAIL++-M (use restrictions in the licence; commercial use allowed)."
# Only the diffusers folders: the repos also hold single-file duplicates, fp32 and ONNX/OpenVINO copies.
_SD_FILES = ("*.json", "*.txt", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.fp16.safetensors", "*/model.fp16.safetensors")

_TINY_BYTES = {"transformer": 1_000_000, "text_encoder": 500_000, "text_encoder_2": 500_000, "vae": 1_000_000}
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
        licence="FLUX.1 [dev] Non-Commercial License; gated on the Hub (accept the licence first).",
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
)

MODELS_BY_ID: Mapping[str, ModelSpec] = _frozen({spec.id: spec for spec in MODELS})

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


def model_spec(model_id: str) -> ModelSpec:
    """The catalog entry for `model_id` (a fixed entry or a scanned file); KeyError when there is none."""
    if model_id in MODELS_BY_ID:
        return MODELS_BY_ID[model_id]
    return _file_models[model_id]


def family_spec(family: Family) -> FamilySpec:
    return FAMILIES[family]
