"""The image models: text to image (SD3, FLUX.1, SD1.5, SDXL, HiDream-I1, CogView4), the FLUX.1 tools (Canny,
Depth, Redux), the edit models (OmniGen, FLUX.1 Fill) and the tiny demo twin of each, with the component sizes and
companion repos they share.

Each entry states what it has beyond its family's defaults (see `families.entry`). Wan's one-frame image entries
live with Wan in `video.py`.
"""

from __future__ import annotations

from pipelines.catalog.families import DEMO_LICENCE, FAMILIES, entry
from pipelines.catalog.schema import CallDefaults, CompanionRepo, EditDefaults, Family, LoraSpec, Task

# Component sizes in bytes as published (bf16/fp16 safetensors), used to plan placement before loading.
_SD3_ENCODERS = {"text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000, "text_encoder_3": 9_520_000_000, "vae": 168_000_000}
_FLUX_ENCODERS = {"text_encoder": 246_000_000, "text_encoder_2": 9_520_000_000, "vae": 168_000_000}
_FLUX_DEV_BYTES = {"transformer": 23_800_000_000, **_FLUX_ENCODERS}
_HYPER_SD_NOTE = " Hyper-SD LoRA: see the ByteDance/Hyper-SD model card."

# HiDream-I1 (17B MoE transformer): parameter counts × 2 bytes (bf16).
_HIDREAM_BYTES = {
    "transformer": 34_200_000_000, "text_encoder": 247_000_000, "text_encoder_2": 1_390_000_000,
    "text_encoder_3": 9_520_000_000, "text_encoder_4": 16_060_000_000, "vae": 168_000_000,
}
LLAMA_31_ENCODER = CompanionRepo(
    id="llama-3.1-8b-instruct",
    name="Llama 3.1 8B Instruct (HiDream's fourth text encoder)",
    repo="meta-llama/Meta-Llama-3.1-8B-Instruct",
    encoder="text_encoder_4",
    tokenizer="tokenizer_4",
    encoder_class="LlamaForCausalLM",
    licence="Llama 3.1 Community License; gated on the Hub (accept the licence first).",
    # The transformers files at the root only: Meta's own checkpoint lies in `original/` (16 GB of .pth and its params.json).
    allow_patterns=("*config.json", "special_tokens_map.json", "tokenizer.json", "model*.safetensors*"),
)

# FLUX.1 Redux is a prior in a repo of its own beside an unchanged FLUX.1 [dev]: SigLIP so400m (patch 14 at 384 px)
# and the Redux embedder, in bf16.
_FLUX_REDUX_BYTES = {"prior_image_encoder": 856_000_000, "prior_image_embedder": 129_000_000}
FLUX_REDUX_PRIOR = CompanionRepo(
    id="flux1-redux-dev",
    name="FLUX.1 Redux [dev] (image encoder and embedder)",
    repo="black-forest-labs/FLUX.1-Redux-dev",
    licence=FAMILIES[Family.FLUX].licence,
    prior_pipeline_class="FluxPriorReduxPipeline",
    # The diffusers folders only; the repo also holds the embedder as one BFL-layout file.
    allow_patterns=("model_index.json", "*/*.json", "*/*.safetensors"),
    folder_marker="model_index.json",
)

_TINY_BYTES = {"transformer": 1_000_000, "text_encoder": 500_000, "text_encoder_2": 500_000, "vae": 1_000_000}

IMAGE = (
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="sd3-medium",
        name="Stable Diffusion 3 Medium",
        repo="stabilityai/stable-diffusion-3-medium-diffusers",
        defaults=CallDefaults(steps=28, guidance=7.0, width=1024, height=1024),
        component_bytes={"transformer": 4_170_000_000, **_SD3_ENCODERS},
    ),
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="sd3-medium-hyper8",
        name="SD3 Medium + Hyper-SD 8 steps (fast)",
        base="sd3-medium",
        lora=LoraSpec(repo="ByteDance/Hyper-SD", filename="Hyper-SD3-8steps-CFG-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=5.0, width=1024, height=1024),
        component_bytes={"transformer": 4_170_000_000, **_SD3_ENCODERS, "lora": 472_000_000},
        licence=FAMILIES[Family.SD3].licence + _HYPER_SD_NOTE,
    ),
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="sd35-medium",
        name="Stable Diffusion 3.5 Medium",
        repo="stabilityai/stable-diffusion-3.5-medium",
        defaults=CallDefaults(steps=40, guidance=4.5, width=1024, height=1024),
        component_bytes={"transformer": 4_940_000_000, **_SD3_ENCODERS},
    ),
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="sd35-large",
        name="Stable Diffusion 3.5 Large",
        repo="stabilityai/stable-diffusion-3.5-large",
        defaults=CallDefaults(steps=28, guidance=3.5, width=1024, height=1024),
        component_bytes={"transformer": 16_300_000_000, **_SD3_ENCODERS},
    ),
    entry(
        Family.FLUX, Task.TEXT_TO_IMAGE,
        id="flux1-dev",
        name="FLUX.1 [dev]",
        repo="black-forest-labs/FLUX.1-dev",
        defaults=CallDefaults(steps=28, guidance=3.5, width=1024, height=1024),
        component_bytes=_FLUX_DEV_BYTES,
    ),
    entry(
        Family.FLUX, Task.TEXT_TO_IMAGE,
        id="flux1-dev-hyper8",
        name="FLUX.1 [dev] + Hyper-FLUX 8 steps (fast)",
        base="flux1-dev",
        lora=LoraSpec(repo="ByteDance/Hyper-SD", filename="Hyper-FLUX.1-dev-8steps-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=3.5, width=1024, height=1024),
        component_bytes={**_FLUX_DEV_BYTES, "lora": 1_390_000_000},
        licence=FAMILIES[Family.FLUX].licence + _HYPER_SD_NOTE,
    ),
    entry(
        Family.FLUX, Task.CANNY_TO_IMAGE,
        id="flux1-canny-dev",
        name="FLUX.1 Canny [dev]",
        repo="black-forest-labs/FLUX.1-Canny-dev",
        # The model card's settings: 50 steps at guidance 30.
        defaults=CallDefaults(steps=50, guidance=30.0, width=1024, height=1024),
        component_bytes=_FLUX_DEV_BYTES,
    ),
    entry(
        Family.FLUX, Task.DEPTH_TO_IMAGE,
        id="flux1-depth-dev",
        name="FLUX.1 Depth [dev]",
        repo="black-forest-labs/FLUX.1-Depth-dev",
        # diffusers' documented settings for the Depth model: 30 steps at guidance 10.
        defaults=CallDefaults(steps=30, guidance=10.0, width=1024, height=1024),
        component_bytes=_FLUX_DEV_BYTES,
    ),
    entry(
        Family.FLUX, Task.IMAGE_VARIATION,
        id="flux1-redux-dev",
        name="FLUX.1 Redux [dev] (variations)",
        # The denoiser is FLUX.1 [dev] itself, its files shared with that entry; the prior comes from Redux's repo.
        base="flux1-dev",
        companion=FLUX_REDUX_PRIOR,
        # diffusers' Redux example: 50 steps at guidance 2.5.
        defaults=CallDefaults(steps=50, guidance=2.5, width=1024, height=1024),
        component_bytes={**_FLUX_DEV_BYTES, **_FLUX_REDUX_BYTES},
    ),
    entry(
        Family.SD15, Task.TEXT_TO_IMAGE,
        id="sd15",
        name="Stable Diffusion 1.5",
        repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
        defaults=CallDefaults(steps=25, guidance=7.0, width=512, height=512, scheduler="DPM++ 2M"),
        component_bytes={"unet": 1_720_000_000, "text_encoder": 246_000_000, "vae": 167_000_000},
    ),
    entry(
        Family.SDXL, Task.TEXT_TO_IMAGE,
        id="sdxl-base",
        name="Stable Diffusion XL 1.0",
        repo="stabilityai/stable-diffusion-xl-base-1.0",
        defaults=CallDefaults(steps=30, guidance=6.0, width=1024, height=1024, scheduler="DPM++ 2M"),
        component_bytes={"unet": 5_140_000_000, "text_encoder": 246_000_000, "text_encoder_2": 1_390_000_000, "vae": 167_000_000},
    ),
    entry(
        Family.FLUX, Task.TEXT_TO_IMAGE,
        id="flux1-schnell",
        name="FLUX.1 [schnell]",
        repo="black-forest-labs/FLUX.1-schnell",
        defaults=CallDefaults(steps=4, guidance=0.0, width=1024, height=1024),
        component_bytes=_FLUX_DEV_BYTES,
        licence="Apache-2.0.",
    ),
    entry(
        Family.HIDREAM, Task.TEXT_TO_IMAGE,
        id="hidream-i1-full",
        name="HiDream-I1 Full",
        repo="HiDream-ai/HiDream-I1-Full",
        defaults=CallDefaults(steps=50, guidance=5.0, width=1024, height=1024, scheduler="UniPC"),
        component_bytes=_HIDREAM_BYTES,
        companion=LLAMA_31_ENCODER,
    ),
    entry(
        Family.HIDREAM, Task.TEXT_TO_IMAGE,
        id="hidream-i1-dev",
        name="HiDream-I1 Dev",
        repo="HiDream-ai/HiDream-I1-Dev",
        defaults=CallDefaults(steps=28, guidance=0.0, width=1024, height=1024),
        component_bytes=_HIDREAM_BYTES,
        companion=LLAMA_31_ENCODER,
    ),
    entry(
        Family.HIDREAM, Task.TEXT_TO_IMAGE,
        id="hidream-i1-fast",
        name="HiDream-I1 Fast",
        repo="HiDream-ai/HiDream-I1-Fast",
        defaults=CallDefaults(steps=16, guidance=0.0, width=1024, height=1024),
        component_bytes=_HIDREAM_BYTES,
        companion=LLAMA_31_ENCODER,
    ),
    entry(
        Family.COGVIEW4, Task.TEXT_TO_IMAGE,
        id="cogview4-6b",
        name="CogView4-6B",
        repo="THUDM/CogView4-6B",
        defaults=CallDefaults(steps=50, guidance=3.5, width=1024, height=1024),
        # The 6B transformer and the GLM-4-9B encoder: parameter counts × 2 bytes (bf16).
        component_bytes={"transformer": 12_800_000_000, "text_encoder": 17_600_000_000, "vae": 168_000_000},
    ),
)

# Models that change a given picture, real and demo.
EDIT = (
    entry(
        Family.OMNIGEN, Task.INSTRUCTION_EDIT,
        id="omnigen-v1",
        name="OmniGen v1 (instruction editing)",
        repo="Shitao/OmniGen-v1-diffusers",
        # The model card's settings: 50 steps, guidance 2.5 (2 to 3 when editing), image guidance 1.6, 1024².
        defaults=EditDefaults(steps=50, guidance=2.5, width=1024, height=1024, image_guidance=1.6),
        # The checkpoint is fp32: 3.8B parameters (Phi-3 decoder) × 4 bytes = 15.5 GB in 4 shards, and the SDXL VAE in fp32
        # (tests/layouts/Shitao__OmniGen-v1-diffusers.json). Loaded in the preset's dtype, it takes half that in bf16.
        component_bytes={"transformer": 15_500_000_000, "vae": 335_000_000},
    ),
    entry(
        Family.FLUX, Task.INPAINT,
        id="flux1-fill-dev",
        name="FLUX.1 Fill [dev] (inpaint / outpaint)",
        repo="black-forest-labs/FLUX.1-Fill-dev",
        # The model card's settings: guidance 30, 50 steps (28 already gives clean fills).
        defaults=EditDefaults(steps=50, guidance=30.0, width=1024, height=1024),
        component_bytes=_FLUX_DEV_BYTES,
    ),
    entry(
        Family.OMNIGEN, Task.INSTRUCTION_EDIT,
        id="demo-omnigen",
        name="OmniGen (tiny)",
        demo=True,
        defaults=EditDefaults(steps=4, guidance=2.5, width=64, height=64, image_guidance=1.6),
        component_bytes={"transformer": 300_000, "vae": 1_000_000},
    ),
    entry(
        Family.FLUX, Task.INPAINT,
        id="demo-flux-fill",
        name="FLUX.1 Fill (tiny)",
        demo=True,
        defaults=EditDefaults(steps=4, guidance=30.0, width=256, height=256),
        component_bytes=_TINY_BYTES,
    ),
)

IMAGE_DEMOS = (
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="demo-sd3",
        name="SD3 (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=5.0, width=256, height=256),
        component_bytes={**_TINY_BYTES, "text_encoder_3": 500_000},
    ),
    entry(
        Family.SD3, Task.TEXT_TO_IMAGE,
        id="demo-sd3-hyper8",
        name="SD3 + step-distillation LoRA (tiny)",
        demo=True,
        base="demo-sd3",
        lora=LoraSpec(repo=None, filename="demo-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=5.0, width=256, height=256),
        component_bytes={**_TINY_BYTES, "text_encoder_3": 500_000},
    ),
    entry(
        Family.FLUX, Task.TEXT_TO_IMAGE,
        id="demo-flux",
        name="FLUX.1 (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=3.5, width=256, height=256),
        component_bytes=_TINY_BYTES,
    ),
    entry(
        Family.FLUX, Task.TEXT_TO_IMAGE,
        id="demo-flux-hyper8",
        name="FLUX.1 + step-distillation LoRA (tiny)",
        demo=True,
        base="demo-flux",
        lora=LoraSpec(repo=None, filename="demo-lora.safetensors", scale=0.125),
        defaults=CallDefaults(steps=8, guidance=3.5, width=256, height=256),
        component_bytes=_TINY_BYTES,
    ),
    entry(
        Family.FLUX, Task.CANNY_TO_IMAGE,
        id="demo-flux-canny",
        name="FLUX.1 Canny (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=30.0, width=256, height=256),
        component_bytes=_TINY_BYTES,
    ),
    entry(
        Family.FLUX, Task.DEPTH_TO_IMAGE,
        id="demo-flux-depth",
        name="FLUX.1 Depth (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=10.0, width=256, height=256),
        component_bytes=_TINY_BYTES,
    ),
    entry(
        Family.FLUX, Task.IMAGE_VARIATION,
        id="demo-flux-redux",
        name="FLUX.1 Redux (tiny)",
        demo=True,
        base="demo-flux",
        defaults=CallDefaults(steps=4, guidance=2.5, width=256, height=256),
        component_bytes={**_TINY_BYTES, "prior_image_encoder": 100_000, "prior_image_embedder": 10_000},
        companion=CompanionRepo(
            id="demo-flux-redux-prior", name="FLUX.1 Redux prior (tiny)", repo=None, licence=DEMO_LICENCE,
            prior_pipeline_class="FluxPriorReduxPipeline", folder_marker="model_index.json",
        ),
    ),
    entry(
        Family.HIDREAM, Task.TEXT_TO_IMAGE,
        id="demo-hidream",
        name="HiDream-I1 (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=5.0, width=1024, height=1024),
        component_bytes={**_TINY_BYTES, "text_encoder_3": 500_000, "text_encoder_4": 100_000},
        companion=CompanionRepo(
            id="demo-llama", name="Llama (tiny)", repo=None, encoder="text_encoder_4", tokenizer="tokenizer_4",
            encoder_class="LlamaForCausalLM", licence=DEMO_LICENCE,
        ),
    ),
    entry(
        Family.COGVIEW4, Task.TEXT_TO_IMAGE,
        id="demo-cogview4",
        name="CogView4 (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=3.5, width=512, height=512),
        component_bytes={"transformer": 200_000, "text_encoder": 100_000, "vae": 1_000_000},
    ),
    entry(
        Family.SD15, Task.TEXT_TO_IMAGE,
        id="demo-sd15",
        name="SD1.5 (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=7.0, width=256, height=256),
        component_bytes={"unet": 1_000_000, "text_encoder": 500_000, "vae": 1_000_000},
    ),
    entry(
        Family.SDXL, Task.TEXT_TO_IMAGE,
        id="demo-sdxl",
        name="SDXL (tiny)",
        demo=True,
        defaults=CallDefaults(steps=4, guidance=6.0, width=256, height=256),
        component_bytes={"unet": 1_000_000, "text_encoder": 500_000, "text_encoder_2": 500_000, "vae": 1_000_000},
    ),
)
