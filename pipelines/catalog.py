"""The model catalog: one frozen entry per model, families and their rules, as data.

Adding a model of a known family is adding one `ModelSpec` to `MODELS`. A new family adds a
`FamilySpec`, a tiny builder in `pipelines/tiny/` and a runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

GB = 1_000_000_000


class Family(str, Enum):
    SD3 = "sd3"
    FLUX = "flux"
    HIDREAM = "hidream"
    COGVIEW4 = "cogview4"
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
    # The config key that takes the model's timestep shift (flow-matching schedulers call it `shift`, the
    # flow-sigma variants of the classic solvers `flow_shift`), so a swapped-in sampler keeps the model's shift.
    shift_parameter: str = "flow_shift"


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
    # The image-to-image pipeline built on the loaded one (same components); empty when the family has none.
    img2img_pipeline_class: str = ""
    # Pixels the family accepts in one image at most (0: width and height bounds alone).
    max_pixels: int = 0
    # Pixels the pipeline always renders (0: the requested size). HiDream rescales any requested size to this
    # area, keeping the aspect ratio; sides are rounded down to `size_multiple`.
    fixed_pixel_area: int = 0

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
class CompanionRepo:
    """A text encoder that a pipeline's own repo leaves out and loads from a repo of its own (HiDream's
    Llama 3.1): the encoder and its tokenizer at that repo's root, stored once in `<models_dir>/<id>/` and
    shared by every model that names it."""

    id: str
    name: str
    # None for a demo companion, which our own code builds.
    repo: str | None
    # Pipeline component names it fills, and the transformers class of the encoder.
    encoder: str
    tokenizer: str
    encoder_class: str
    licence: str
    allow_patterns: tuple[str, ...] = ("*.json", "*.safetensors")
    folder_marker: str = "config.json"


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
    # Components published in another repo (their bytes are counted in `component_bytes`).
    companion: CompanionRepo | None = None

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
        component_roles=_frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
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
})

# Component sizes in bytes as published (bf16/fp16 safetensors), used to plan placement before loading.
_SD3_ENCODERS = {"text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000, "text_encoder_3": 9_520_000_000, "vae": 168_000_000}
_FLUX_ENCODERS = {"text_encoder": 246_000_000, "text_encoder_2": 9_520_000_000, "vae": 168_000_000}
_STABILITY_LICENCE = "Stability AI Community License: free below USD 1M annual revenue; gated on the Hub (accept the licence first)."

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

_FISH_SPEECH_FILES = ("*.json", "*.pth", "*.tiktoken")

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


def model_spec(model_id: str) -> ModelSpec:
    """The catalog entry for `model_id`; KeyError when there is none."""
    return MODELS_BY_ID[model_id]


def family_spec(family: Family) -> FamilySpec:
    return FAMILIES[family]
