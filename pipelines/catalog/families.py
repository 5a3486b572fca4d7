"""The model families as data: every family's rules (`FAMILIES`), the sampler choices they offer, the LoRA key
fragments that tell which family a LoRA file was made for, and `entry`, which makes a catalog entry of a family
from what the model has of its own.

A family states what all its entries share (the pipeline class per task, the licence, the repo layout), so an entry in
`image.py`, `video.py` or `audio.py` states only what differs.
"""

from __future__ import annotations

from typing import Mapping

from pipelines.catalog.rules import (
    SPEED_OFF,
    FamilySpec,
    InstructionRules,
    SchedulerChoice,
    SectionRules,
    SpeedSetting,
    VideoRules,
)
from pipelines.catalog.schema import Family, LongVideo, ModelSpec, Role, Task, frozen


def _teacache_speeds(balanced: float, fast: float) -> Mapping[str, SpeedSetting]:
    return {"off": SPEED_OFF, "balanced": SpeedSetting("teacache", balanced), "fast": SpeedSetting("teacache", fast)}


_FLOW_SCHEDULERS = (
    SchedulerChoice("Euler", "FlowMatchEulerDiscreteScheduler", shift_parameter="shift"),
    SchedulerChoice("Heun", "FlowMatchHeunDiscreteScheduler", shift_parameter="shift"),
    SchedulerChoice(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction", "algorithm_type": "dpmsolver++", "solver_order": 2}),
    ),
    SchedulerChoice(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction", "algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    ),
    SchedulerChoice(
        "UniPC",
        "UniPCMultistepScheduler",
        frozen({"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
    ),
)

# Samplers as SD1.5/SDXL users know them: the epsilon-prediction schedulers, not the flow-matching ones.
_EPSILON_SCHEDULERS = (
    SchedulerChoice("Euler", "EulerDiscreteScheduler"),
    SchedulerChoice("DPM++ 2M", "DPMSolverMultistepScheduler", frozen({"algorithm_type": "dpmsolver++", "solver_order": 2})),
    SchedulerChoice("DPM++ 2M SDE", "DPMSolverMultistepScheduler", frozen({"algorithm_type": "sde-dpmsolver++", "solver_order": 2})),
    SchedulerChoice("UniPC", "UniPCMultistepScheduler"),
    SchedulerChoice("DDIM", "DDIMScheduler"),
)

_STABILITY_LICENCE = "Stability AI Community License: free below USD 1M annual revenue; gated on the Hub (accept the licence first)."
# Wan2.1 and Wan2.1 VACE.
_WAN_LICENCE = "Apache-2.0."


def diffusers_files(weights: tuple[str, ...], others: tuple[str, ...], variant: str | None = None) -> tuple[str, ...]:
    """Download patterns (fnmatch, as huggingface_hub matches them; `*` also matches `/`) for exactly the folders a
    diffusers pipeline loads: `model_index.json`, each weight folder's configs and its weights of `variant` (None:
    the files without a precision in their name), whole tokenizer and scheduler folders. Nothing else: not the root's
    single files, not ComfyUI's `text_encoders/`, SD3.5's `vae copy/` or SDXL's `vae_1_0/`, not a folder the
    pipeline is loaded without (SD1.5's safety checker), not the fp16 duplicates beside fp32 weights, ONNX or
    OpenVINO copies."""
    stem = f"model.{variant}" if variant else "model"
    patterns = ["model_index.json"]
    for folder in weights:
        # `*model` covers `model` (transformers) and `diffusion_pytorch_model` (diffusers); `.safetensors*` the
        # single file and the shards' index; `-*` the shards. `model.safetensors` never matches `model.fp16.…`.
        patterns += [f"{folder}/*config.json", f"{folder}/*{stem}.safetensors*", f"{folder}/*{stem}-*.safetensors"]
    return tuple(patterns) + tuple(f"{folder}/*" for folder in others)


# SD3 and SD3.5 repos also hold ComfyUI's `text_encoders/`, fp16 duplicates of the encoders and (3.5) `vae copy/`.
_SD3_FILES = diffusers_files(
    ("text_encoder", "text_encoder_2", "text_encoder_3", "transformer", "vae"), ("tokenizer", "tokenizer_2", "tokenizer_3", "scheduler"),
)
# The SD1.5/SDXL repos also hold single-file duplicates, fp32 and ONNX/OpenVINO copies, SDXL's extra VAE folders and
# SD1.5's safety checker (which we load without); their fp16 copies are what is loaded.
_SD15_FILES = diffusers_files(("text_encoder", "unet", "vae"), ("tokenizer", "scheduler"), variant="fp16")
_SDXL_FILES = diffusers_files(
    ("text_encoder", "text_encoder_2", "unet", "vae"), ("tokenizer", "tokenizer_2", "scheduler"), variant="fp16",
)

# Models attached for a job (pipelines/catalog/controls.py): a ControlNet runs beside the denoiser at every step; an
# IP-Adapter's image encoder runs once, before it, like a text encoder.
_ATTACHED_ROLES = {"controlnet": Role.DENOISER, "image_encoder": Role.TEXT_ENCODER}

FAMILIES: Mapping[Family, FamilySpec] = frozen({
    Family.SD3: FamilySpec(
        family=Family.SD3,
        pipeline_classes=frozen({Task.TEXT_TO_IMAGE: "StableDiffusion3Pipeline"}),
        licence=_STABILITY_LICENCE,
        allow_patterns=_SD3_FILES,
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
        file_bases=frozen({"sd3": "sd3-medium", "sd35_medium": "sd35-medium", "sd35_large": "sd35-large"}),
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "text_encoder_3": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
            **_ATTACHED_ROLES,
        }),
    ),
    Family.FLUX: FamilySpec(
        family=Family.FLUX,
        pipeline_classes=frozen({
            Task.TEXT_TO_IMAGE: "FluxPipeline",
            # Canny and Depth are FLUX.1 [dev] transformers that take the control image's latents beside the noise.
            Task.CANNY_TO_IMAGE: "FluxControlPipeline",
            Task.DEPTH_TO_IMAGE: "FluxControlPipeline",
            # Redux runs FLUX.1 [dev] unchanged, conditioned by its prior (see `FLUX_REDUX_PRIOR`).
            Task.IMAGE_VARIATION: "FluxPipeline",
            Task.INPAINT: "FluxFillPipeline",
        }),
        # FLUX.1 [dev]'s and its tools'; FLUX.1 [schnell] states its own.
        licence="FLUX.1 [dev] Non-Commercial License; gated on the Hub (accept the licence first).",
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
        file_bases=frozen({"flux-dev": "flux1-dev", "flux-schnell": "flux1-schnell"}),
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            # FLUX.1 Redux's prior (see `FLUX_REDUX_PRIOR`) runs once per job before the transformer, like an encoder.
            "prior_image_encoder": Role.TEXT_ENCODER,
            "prior_image_embedder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
            **_ATTACHED_ROLES,
        }),
    ),
    Family.OMNIGEN: FamilySpec(
        family=Family.OMNIGEN,
        pipeline_classes=frozen({Task.INSTRUCTION_EDIT: "OmniGenPipeline"}),
        licence="MIT.",
        # VAE 8× per side, patch 2×2; the processor crops input images to multiples of 16 (and scales up below 16).
        size_multiple=16,
        min_size=16,
        max_size=2048,
        # The instruction's tokens are embedded by the transformer itself (a Phi-3 decoder): no text encoder.
        text_tokens=256,
        guidance_doubles_batch=True,
        schedulers=_FLOW_SCHEDULERS[:1],
        component_roles=frozen({"transformer": Role.DENOISER, "vae": Role.VAE}),
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
        pipeline_classes=frozen({Task.TEXT_TO_MUSIC: "AceStepPipeline"}),
        # MIT, as the ACE-Step 1.5 model cards' metadata (derived repos such as dummy9996/acestep-v15-fp8 inherit
        # "License: mit" from ACE-Step/Ace-Step1.5) and the ACE-Step-1.5 code repo state; not Apache-2.0 (ACE-Step v1).
        licence="MIT (ACE-Step 1.5 by ACE Studio and StepFun; see the model card).",
        # The condition encoder and the audio (de)tokenizer turn text, lyrics and reference audio into the
        # denoiser's context, like a text encoder: they run before the DiT and leave before it starts.
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "condition_encoder": Role.TEXT_ENCODER,
            "audio_tokenizer": Role.TEXT_ENCODER,
            "audio_token_detokenizer": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
        # Our TeaCache with the identity for a polynomial (pipelines/speed/step_cache.py). Measured on the tiny model: at 30
        # steps 0.2 skips 11 and 0.3 skips 16 denoiser calls (≈1.5× and ≈2×); at 8 steps 2 and 4. Not checked on real
        # weights, whose timestep projection may change more or less per step.
        speed=_teacache_speeds(0.2, 0.3),
    ),
    Family.WAN: FamilySpec(
        family=Family.WAN,
        # The text-to-video pipeline makes images too: a video of one frame (see `call_kwargs`).
        pipeline_classes=frozen({
            Task.TEXT_TO_VIDEO: "WanPipeline", Task.TEXT_TO_IMAGE: "WanPipeline", Task.IMAGE_TO_VIDEO: "WanImageToVideoPipeline",
        }),
        licence=_WAN_LICENCE,
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
        call_kwargs=frozen({"num_frames": 1, "output_type": "pil"}),
        component_roles=frozen({
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
        file_bases=frozen({
            "wan-t2v-1.3B": "wan21-t2v-1.3b", "wan-t2v-14B": "wan21-t2v-14b", "wan-i2v-14B": "wan21-i2v-14b-480p",
            "wan-vace-1.3B": "wan21-vace-1.3b", "wan-vace-14B": "wan21-vace-14b",
        }),
    ),
    Family.WAN_VACE: FamilySpec(
        family=Family.WAN_VACE,
        pipeline_classes=frozen({Task.TEXT_TO_VIDEO: "WanVACEPipeline"}),
        licence=_WAN_LICENCE,
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
        component_roles=frozen({"text_encoder": Role.TEXT_ENCODER, "transformer": Role.DENOISER, "vae": Role.VAE}),
        video=VideoRules(frame_multiple=4, min_frames=5, max_frames=129, default_fps=16, pixels_per_token=16, vace_inputs=True),
    ),
    Family.SKYREELS_V2: FamilySpec(
        family=Family.SKYREELS_V2,
        pipeline_classes=frozen({Task.TEXT_TO_VIDEO: "SkyReelsV2DiffusionForcingPipeline"}),
        licence="SkyReels V2 Community License (Skywork; see the model card)",
        # Wan's VAE and a Wan-shaped transformer: 8× per side, patch 2×2, frames 4k+1.
        size_multiple=16,
        min_size=64,
        max_size=1280,
        supports_negative_prompt=True,
        schedulers=(SchedulerChoice("UniPC", "UniPCMultistepScheduler"),),
        text_tokens=512,
        # Like Wan: conditional and unconditional passes one after the other.
        guidance_doubles_batch=False,
        component_roles=frozen({"text_encoder": Role.TEXT_ENCODER, "transformer": Role.DENOISER, "vae": Role.VAE}),
        # Trained at 97 frames (540P); longer videos come in chunks that continue from the previous chunk's end.
        video=VideoRules(
            frame_multiple=4, min_frames=5, max_frames=97, default_fps=24, pixels_per_token=16, fps_argument="fps",
            long_video=LongVideo.HISTORY_CHUNKS, asynchronous_forcing=True,
        ),
    ),
    Family.LTX: FamilySpec(
        family=Family.LTX,
        pipeline_classes=frozen({Task.TEXT_TO_VIDEO: "LTXPipeline"}),
        licence="LTX-Video Open Weights License (LTXV-OWL): free for use below USD 10M annual revenue; see the model card.",
        # Lightricks ship the T5 tokenizer as `spiece.model` alone, which transformers converts with sentencepiece (and
        # protobuf, installed with it from requirements.txt).
        needs_packages=("sentencepiece",),
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
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            # LTX-Video 0.9.7's spatial upscaler (a companion, see `UpsamplePass`): a small model run once between
            # the two passes, placed like the VAE.
            "latent_upsampler": Role.VAE,
            "vae": Role.VAE,
        }),
        video=VideoRules(
            frame_multiple=8, min_frames=9, max_frames=257, default_fps=24, pixels_per_token=32,
            fps_argument="frame_rate", image_to_video_pipeline_class="LTXImageToVideoPipeline",
        ),
    ),
    Family.FRAMEPACK: FamilySpec(
        family=Family.FRAMEPACK,
        pipeline_classes=frozen({Task.IMAGE_TO_VIDEO: "HunyuanVideoFramepackPipeline"}),
        licence=(
            "Tencent Hunyuan Community License (FramePack's weights and HunyuanVideo's; not licensed in the EU, UK and "
            "South Korea; see the model cards). The SigLIP image encoder comes from lllyasviel/flux_redux_bfl (see its "
            "model card)."
        ),
        # FramePack's repos hold the transformer alone, config and weights at the root; the rest of the pipeline comes
        # from its component repos.
        allow_patterns=("*.json", "*.safetensors"),
        folder_marker="config.json",
        # Their config.json names the authors' class (`HunyuanVideoTransformer3DModelPacked`); diffusers' class reads it.
        denoiser_class="HunyuanVideoFramepackTransformer3DModel",
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
        component_roles=frozen({
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
        # Image to video: the I2V model's own repo (its Llava text encoder reads the picture too; its transformer takes
        # the picture's latents in place of the first latent frame).
        pipeline_classes=frozen({Task.TEXT_TO_VIDEO: "HunyuanVideoPipeline", Task.IMAGE_TO_VIDEO: "HunyuanVideoImageToVideoPipeline"}),
        licence="Tencent Hunyuan Community License (not licensed in the EU, UK and South Korea; see the model card).",
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
        component_roles=frozen({
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
        pipeline_classes=frozen({Task.TEXT_TO_IMAGE: "HiDreamImagePipeline"}),
        licence=(
            "HiDream-I1: MIT. Its Llama 3.1 text encoder: Llama 3.1 Community License, gated on the Hub "
            "(accept it at https://huggingface.co/meta-llama/Meta-Llama-3.1-8B-Instruct first)."
        ),
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
        component_roles=frozen({
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
        pipeline_classes=frozen({Task.TEXT_TO_IMAGE: "CogView4Pipeline"}),
        licence="Apache-2.0 (CogView4-6B, including its GLM-4 text encoder).",
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
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "transformer": Role.DENOISER,
            "vae": Role.VAE,
        }),
    ),
    Family.SDXL: FamilySpec(
        family=Family.SDXL,
        pipeline_classes=frozen({Task.TEXT_TO_IMAGE: "StableDiffusionXLPipeline"}),
        licence="CreativeML Open RAIL++-M (use restrictions in the licence; commercial use allowed).",
        allow_patterns=_SDXL_FILES,
        variant="fp16",
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
        file_bases=frozen({"xl_base": "sdxl-base"}),
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "text_encoder_2": Role.TEXT_ENCODER,
            "unet": Role.DENOISER,
            "vae": Role.VAE,
            **_ATTACHED_ROLES,
        }),
    ),
    Family.SD15: FamilySpec(
        family=Family.SD15,
        pipeline_classes=frozen({Task.TEXT_TO_IMAGE: "StableDiffusionPipeline"}),
        licence="CreativeML Open RAIL-M (use restrictions in the licence; commercial use allowed).",
        allow_patterns=_SD15_FILES,
        variant="fp16",
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
        file_bases=frozen({"v1": "sd15"}),
        # Community SD1.5 checkpoints ship without the safety checker; so do we (the model is run locally, by its owner).
        load_kwargs=frozen({"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}),
        component_roles=frozen({
            "text_encoder": Role.TEXT_ENCODER,
            "unet": Role.DENOISER,
            "vae": Role.VAE,
            **_ATTACHED_ROLES,
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

DEMO_LICENCE = "Demo model built by Atelier from a config with random weights: its outputs are noise, not a real model's."


def entry(family: Family, task: Task, **fields) -> ModelSpec:
    """A catalog entry of `family` for `task`: the family's pipeline class for the task, its licence and repo layout,
    then `fields`, what the model has of its own (they win over the family's). A demo is built by our code, so it
    takes the demo licence and no download layout. `component_bytes` is frozen here."""
    spec = FAMILIES[family]
    inherited = {
        "pipeline_class": spec.pipeline_classes[task], "folder_marker": spec.folder_marker, "denoiser_class": spec.denoiser_class,
    }
    if fields.get("demo"):
        inherited["licence"] = DEMO_LICENCE
    else:
        inherited.update(licence=spec.licence, allow_patterns=spec.allow_patterns, variant=spec.variant)
    # A value the family leaves empty is left to ModelSpec's default.
    inherited = {name: value for name, value in inherited.items() if value}
    fields["component_bytes"] = frozen(fields["component_bytes"])
    return ModelSpec(family=family, task=task, **{**inherited, **fields})


def family_spec(family: Family) -> FamilySpec:
    return FAMILIES[family]
