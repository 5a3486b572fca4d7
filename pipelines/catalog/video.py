"""The video models: Wan2.1 (text and image to video, and as a one-frame image model), Wan2.1 VACE, SkyReels V2,
LTX-Video, FramePack and HunyuanVideo, and the tiny demo twin of each, with the component sizes and component repos
they share.

Each entry states what it has beyond its family's defaults (see `families.entry`).
"""

from __future__ import annotations

from dataclasses import replace

from pipelines.catalog.families import DEMO_LICENCE, FAMILIES, entry
from pipelines.catalog.schema import (
    CallDefaults, CompanionRepo, ComponentRepo, Family, ModelSpec, Task, UpsamplePass, VideoDefaults, frozen,
)

# Wan2.1: UMT5-XXL text encoder and the Wan VAE (shipped in float32) are shared by every size, and by SkyReels V2.
_WAN_ENCODERS = {"text_encoder": 11_400_000_000, "vae": 508_000_000}
_WAN_I2V_ENCODERS = {**_WAN_ENCODERS, "image_encoder": 1_260_000_000}
# LTX-Video: T5-XXL text encoder and the LTX VAE.
_LTX_ENCODERS = {"text_encoder": 9_520_000_000, "vae": 840_000_000}
# Timestep-aware VAEs (LTX-Video 0.9.1 and later) decode from slightly noised latents, as Lightricks recommends.
_LTX_DECODE_NOISE = (("decode_timestep", 0.05), ("decode_noise_scale", 0.025))
# LTX-Video 0.9.7 distilled, as diffusers' LTX-Video page runs it ("LTX-Video 0.9.7 distilled", docs/source/en/api/
# pipelines/ltx_video.md): LTXConditionPipeline, guidance 1.0 (guidance- and timestep-distilled), guidance_rescale 0.7,
# image_cond_noise_scale 0.0, decode_timestep 0.05 and decode_noise_scale 0.025 (`_LTX_DECODE_NOISE`), and "the
# following custom timesteps for the best results". The base pass's schedule, "to prepare for upscaling" (it ends at
# 0.03, so a single pass at the asked size gives a finished video too):
_LTX_097_DISTILLED_TIMESTEPS = (1000.0, 993.0, 987.0, 981.0, 975.0, 909.0, 725.0, 0.03)
_LTX_097_DISTILLED_KWARGS = (*_LTX_DECODE_NOISE, ("guidance_rescale", 0.7), ("image_cond_noise_scale", 0.0))
# The same page's two-pass example: the base pass at `downscale_factor = 2 / 3` of the expected size (rounded down to the
# VAE's 32 px), `pipe_upsample(latents=..., adain_factor=1.0)`, then "Upscaling: [1000, 909, 725, 421, 0]" at the
# doubled size with `denoise_strength=0.999` ("effectively, 4 inference steps out of 5"), then each frame resized to
# the expected size.
_LTX_097_UPSAMPLE = UpsamplePass(
    base_scale=2 / 3, timesteps=(1000.0, 909.0, 725.0, 421.0, 0.0), denoise_strength=0.999, adain_factor=1.0,
)
# Lightricks' 0.9.7 spatial latent upscaler, published as diffusers' LTXLatentUpsamplePipeline (model_index.json,
# latent_upsampler/, and vae/: a copy of the model's own VAE, which is passed in instead; see
# tests/layouts/Lightricks__ltxv-spatial-upscaler-0.9.7.json). 126.3M parameters (diffusers' conversion config for 0.9.7:
# 128 channels, 512 mid channels, 4 blocks per stage, 3D), 505 MB in float32.
LTXV_SPATIAL_UPSCALER_097 = CompanionRepo(
    id="ltxv-spatial-upscaler-0.9.7",
    name="LTX-Video 0.9.7 spatial latent upscaler",
    repo="Lightricks/ltxv-spatial-upscaler-0.9.7",
    licence=FAMILIES[Family.LTX].licence,
    upsampler_pipeline_class="LTXLatentUpsamplePipeline",
    allow_patterns=("model_index.json", "latent_upsampler/*"),
    folder_marker="latent_upsampler/config.json",
)
_LTX_UPSAMPLER_BYTES = 505_000_000
# SkyReels V2 long videos: each chunk's conditioning frames (the previous chunk's end) are lightly re-noised, which
# improves consistency (SkyReels-V2's README, github.com/SkyworkAI/SkyReels-V2: every long-video example passes
# `--addnoise_condition 20`; diffusers' SkyReelsV2DiffusionForcingPipeline example and warning recommend 20). The
# pipeline uses it only when a video is made in chunks (`overlap_history`).
_SKYREELS_LONG_VIDEO = (("addnoise_condition", 20),)
# Wan2.1's generate.py (github.com/Wan-Video/Wan2.1): "The default sampling steps are 40 for image-to-video tasks";
# the shift is 3.0 for I2V at 832*480, else 5.0, and 16 for VACE.
_WAN_I2V_STEPS = 40
_WAN_VACE_SHIFT = 16.0

# FramePack: the 13B HunyuanVideo-based transformer (bf16), HunyuanVideo's Llava-Llama-3-8B and CLIP-L text encoders and
# VAE, Redux's SigLIP-so400m image encoder; bytes from parameter counts, as published.
_FRAMEPACK_BYTES = {
    "transformer": 25_700_000_000, "text_encoder": 15_000_000_000, "text_encoder_2": 246_000_000, "vae": 493_000_000,
    "image_encoder": 856_000_000,
}
# HunyuanVideo text to video: its 13B transformer (bf16) with the same encoders and VAE as FramePack.
_HUNYUANVIDEO_BYTES = {key: value for key, value in _FRAMEPACK_BYTES.items() if key != "image_encoder"}
# HunyuanVideo image to video: the same 13B transformer shape (the released token-replace weights keep 16 input channels),
# and a Llava-Llama-3-8B text encoder that reads the picture too. Its bytes from parameter counts (Llama-3-8B with its
# LM head 8.03B, the CLIP ViT-L/14-336 vision tower 0.30B, the projector 0.02B; fp16), not read from the repo. The CLIP-L
# text encoder and the VAE are the models T2V has (Tencent: "hunyuanvideo and hunyuanvideo-i2v share the same VAE"),
# in the I2V repo's own copies: see docs/models.md.
_HUNYUANVIDEO_I2V_BYTES = {**_HUNYUANVIDEO_BYTES, "text_encoder": 16_710_000_000}
HUNYUANVIDEO_BASE = ComponentRepo(
    id="hunyuanvideo-base",
    name="HunyuanVideo text encoders and VAE",
    repo="hunyuanvideo-community/HunyuanVideo",
    components=frozen({
        "text_encoder": "LlamaModel", "tokenizer": "AutoTokenizer", "text_encoder_2": "CLIPTextModel",
        "tokenizer_2": "AutoTokenizer", "vae": "AutoencoderKLHunyuanVideo", "scheduler": "FlowMatchEulerDiscreteScheduler",
    }),
    licence=FAMILIES[Family.FRAMEPACK].licence,
    folder_marker="vae/config.json",
)
REDUX_IMAGE_ENCODER = ComponentRepo(
    id="flux-redux-siglip",
    name="SigLIP image encoder (from FLUX Redux)",
    repo="lllyasviel/flux_redux_bfl",
    components=frozen({"image_encoder": "SiglipVisionModel", "feature_extractor": "SiglipImageProcessor"}),
    licence=FAMILIES[Family.FRAMEPACK].licence,
    folder_marker="image_encoder/config.json",
)
# The demo's two component repos, built by our code in the same layout.
_DEMO_FRAMEPACK_REPOS = (
    replace(HUNYUANVIDEO_BASE, id="demo-hunyuanvideo-base", name="HunyuanVideo text encoders and VAE (tiny)", repo=None, licence=""),
    replace(REDUX_IMAGE_ENCODER, id="demo-flux-redux-siglip", name="SigLIP image encoder (tiny)", repo=None, licence=""),
)

_TINY_VIDEO_BYTES = {"transformer": 200_000, "text_encoder": 200_000, "vae": 200_000}


def _framepack(model_id: str, name: str, repo: str, sampling_type: str) -> ModelSpec:
    """A FramePack model: its repo's transformer with HunyuanVideo's encoders and VAE and Redux's image encoder. The
    published models differ only in the order they make sections in (`sampling_type`). FramePack's own defaults: 25
    steps, distilled guidance 10, 30 fps; 145 frames = 4 sections ≈ 5 s."""
    return entry(
        Family.FRAMEPACK, Task.IMAGE_TO_VIDEO,
        id=model_id,
        name=name,
        repo=repo,
        defaults=VideoDefaults(
            steps=25, guidance=10.0, width=640, height=640, frames=145, fps=30, flow_shift=None,
            call_kwargs=(("sampling_type", sampling_type),),
        ),
        component_bytes=_FRAMEPACK_BYTES,
        component_repos=(HUNYUANVIDEO_BASE, REDUX_IMAGE_ENCODER),
    )


VIDEO = (
    entry(
        Family.WAN, Task.TEXT_TO_VIDEO,
        id="wan21-t2v-1.3b",
        name="Wan2.1 T2V 1.3B",
        repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        # Wan2.1's README (github.com/Wan-Video/Wan2.1, "Run Text-to-Video Generation"): for T2V-1.3B "we recommend
        # setting --sample_guide_scale 6", and --sample_shift "within the range of 8 to 12"; its example uses 8.
        # 50 steps: generate.py's default for text to video.
        defaults=VideoDefaults(steps=50, guidance=6.0, width=832, height=480, frames=81, fps=16, flow_shift=8.0),
        component_bytes={"transformer": 2_840_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.WAN, Task.TEXT_TO_IMAGE,
        id="wan21-t2v-1.3b-image",
        name="Wan2.1 T2V 1.3B as an image model (one frame)",
        base="wan21-t2v-1.3b",
        defaults=CallDefaults(steps=30, guidance=5.0, width=832, height=480, scheduler="UniPC"),
        component_bytes={"transformer": 2_840_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.WAN, Task.TEXT_TO_IMAGE,
        id="wan21-t2v-14b-image",
        name="Wan2.1 T2V 14B as an image model (one frame)",
        base="wan21-t2v-14b",
        defaults=CallDefaults(steps=30, guidance=5.0, width=1280, height=720, scheduler="UniPC"),
        component_bytes={"transformer": 28_600_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.SKYREELS_V2, Task.TEXT_TO_VIDEO,
        id="skyreels-v2-df-1.3b-540p",
        name="SkyReels V2 DF 1.3B (540P, long video)",
        repo="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
        # The model card's text-to-video settings: shift 8, guidance 6, 97 frames at 24 fps.
        defaults=VideoDefaults(steps=30, guidance=6.0, width=960, height=544, frames=97, fps=24, flow_shift=8.0,
                                call_kwargs=_SKYREELS_LONG_VIDEO),
        component_bytes={"transformer": 2_840_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.SKYREELS_V2, Task.TEXT_TO_VIDEO,
        id="skyreels-v2-df-14b-540p",
        name="SkyReels V2 DF 14B (540P, long video)",
        repo="Skywork/SkyReels-V2-DF-14B-540P-Diffusers",
        defaults=VideoDefaults(steps=30, guidance=6.0, width=960, height=544, frames=97, fps=24, flow_shift=8.0,
                                call_kwargs=_SKYREELS_LONG_VIDEO),
        component_bytes={"transformer": 28_600_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.SKYREELS_V2, Task.TEXT_TO_VIDEO,
        id="skyreels-v2-df-14b-720p",
        name="SkyReels V2 DF 14B (720P, long video)",
        repo="Skywork/SkyReels-V2-DF-14B-720P-Diffusers",
        # Trained at 1280×720 (the model card makes 121 frames at once; the family's 97-frame limit applies here,
        # longer videos come in chunks).
        defaults=VideoDefaults(steps=30, guidance=6.0, width=1280, height=720, frames=97, fps=24, flow_shift=8.0,
                                call_kwargs=_SKYREELS_LONG_VIDEO),
        component_bytes={"transformer": 28_600_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.WAN, Task.TEXT_TO_VIDEO,
        id="wan21-t2v-14b",
        name="Wan2.1 T2V 14B",
        repo="Wan-AI/Wan2.1-T2V-14B-Diffusers",
        # Shift 5.0 for 720p, 3.0 for 480p (Wan's own recommendation).
        defaults=VideoDefaults(steps=50, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=5.0),
        component_bytes={"transformer": 28_600_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.WAN, Task.IMAGE_TO_VIDEO,
        id="wan21-i2v-14b-480p",
        name="Wan2.1 I2V 14B 480p",
        repo="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        defaults=VideoDefaults(steps=_WAN_I2V_STEPS, guidance=5.0, width=832, height=480, frames=81, fps=16, flow_shift=3.0),
        component_bytes={"transformer": 32_800_000_000, **_WAN_I2V_ENCODERS},
    ),
    entry(
        Family.WAN, Task.IMAGE_TO_VIDEO,
        id="wan21-i2v-14b-720p",
        name="Wan2.1 I2V 14B 720p",
        repo="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
        defaults=VideoDefaults(steps=_WAN_I2V_STEPS, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=5.0),
        component_bytes={"transformer": 32_800_000_000, **_WAN_I2V_ENCODERS},
    ),
    entry(
        Family.WAN_VACE, Task.TEXT_TO_VIDEO,
        id="wan21-vace-1.3b",
        name="Wan2.1 VACE 1.3B (references, video editing)",
        repo="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        # Wan2.1's generate.py for VACE: 50 steps, guidance 5, shift 16 (see `_WAN_VACE_SHIFT`); 480p, 81 frames.
        defaults=VideoDefaults(steps=50, guidance=5.0, width=832, height=480, frames=81, fps=16, flow_shift=_WAN_VACE_SHIFT),
        # The 1.3B transformer (2.84 GB) plus 15 VACE blocks (1.47 GB), bf16.
        component_bytes={"transformer": 4_310_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.WAN_VACE, Task.TEXT_TO_VIDEO,
        id="wan21-vace-14b",
        name="Wan2.1 VACE 14B (references, video editing)",
        repo="Wan-AI/Wan2.1-VACE-14B-diffusers",
        defaults=VideoDefaults(steps=50, guidance=5.0, width=1280, height=720, frames=81, fps=16, flow_shift=_WAN_VACE_SHIFT),
        # The 14B transformer (28.6 GB) plus 8 VACE blocks (6.1 GB), bf16.
        component_bytes={"transformer": 34_680_000_000, **_WAN_ENCODERS},
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="ltx-video-0.9.5",
        name="LTX-Video 0.9.5 (2B)",
        repo="Lightricks/LTX-Video-0.9.5",
        defaults=VideoDefaults(
            steps=40, guidance=3.0, width=768, height=512, frames=161, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes={"transformer": 3_850_000_000, **_LTX_ENCODERS},
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="ltx-video-0.9.6-distilled",
        name="LTX-Video 0.9.6 2B distilled (fast, 8 GB GPUs)",
        # Lightricks' README: the 2B 0.9.6 distilled model runs in 8 steps without classifier-free guidance, in real
        # time on an H100 and within 8 GB of VRAM (with offloading); the repo's layout is assumed to be 0.9.5's
        # (tests/layouts/Lightricks__LTX-Video-0.9.6-distilled.json says what was not verified).
        repo="Lightricks/LTX-Video-0.9.6-distilled",
        defaults=VideoDefaults(
            steps=8, guidance=1.0, width=768, height=512, frames=121, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes={"transformer": 3_850_000_000, **_LTX_ENCODERS},
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="ltx-video-0.9.7-distilled",
        name="LTX-Video 0.9.7 13B distilled (fast)",
        repo="Lightricks/LTX-Video-0.9.7-distilled",
        # LTXConditionPipeline: it takes the authors' timesteps (LTXPipeline computes its own sigmas and refuses them),
        # and the start picture as a condition of its own. Settings and their sources: `_LTX_097_DISTILLED_*` above.
        pipeline_class="LTXConditionPipeline",
        defaults=VideoDefaults(
            steps=len(_LTX_097_DISTILLED_TIMESTEPS), guidance=1.0, width=768, height=512, frames=121, fps=24,
            flow_shift=None, call_kwargs=_LTX_097_DISTILLED_KWARGS, timesteps=_LTX_097_DISTILLED_TIMESTEPS,
        ),
        component_bytes={"transformer": 26_000_000_000, **_LTX_ENCODERS},
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="ltx-video-0.9.7-distilled-upscaled",
        name="LTX-Video 0.9.7 13B distilled + latent upscaler (two passes, sharper)",
        # The same weights as `ltx-video-0.9.7-distilled`, with the spatial upscaler stored once beside them.
        repo="Lightricks/LTX-Video-0.9.7-distilled",
        base="ltx-video-0.9.7-distilled",
        pipeline_class="LTXConditionPipeline",
        defaults=VideoDefaults(
            steps=len(_LTX_097_DISTILLED_TIMESTEPS), guidance=1.0, width=768, height=512, frames=121, fps=24,
            flow_shift=None, call_kwargs=_LTX_097_DISTILLED_KWARGS, timesteps=_LTX_097_DISTILLED_TIMESTEPS,
            upsample=_LTX_097_UPSAMPLE,
        ),
        component_bytes={"transformer": 26_000_000_000, **_LTX_ENCODERS, "latent_upsampler": _LTX_UPSAMPLER_BYTES},
        companion=LTXV_SPATIAL_UPSCALER_097,
    ),
)

# The HunyuanVideo-based models: FramePack (image to video in sections) and HunyuanVideo itself.
HUNYUAN = (
    # Sections are made from the end of the video back to the input image (anti-drifting).
    _framepack(
        "framepack-i2v-hy", "FramePack I2V (HunyuanVideo, long video in sections)", "lllyasviel/FramePackI2V_HY",
        sampling_type="inverted_anti_drifting",
    ),
    # F1 makes its sections forward from the input image (vanilla sampling): more motion, more drift.
    _framepack(
        "framepack-f1-i2v-hy", "FramePack F1 I2V (HunyuanVideo, forward sections)", "lllyasviel/FramePack_F1_I2V_HY_20250503",
        sampling_type="vanilla",
    ),
    entry(
        Family.HUNYUANVIDEO, Task.TEXT_TO_VIDEO,
        id="hunyuanvideo-t2v",
        name="HunyuanVideo T2V 13B",
        repo="hunyuanvideo-community/HunyuanVideo",
        # HunyuanVideoPipeline's defaults in diffusers 0.42.1: 50 steps, embedded guidance 6.0, 129 frames; shift 7 is
        # the repo's scheduler config. Size: the smaller of Tencent's two trained resolutions (720×1280, 544×960).
        defaults=VideoDefaults(steps=50, guidance=6.0, width=960, height=544, frames=129, fps=24, flow_shift=7.0),
        component_bytes=_HUNYUANVIDEO_BYTES,
    ),
    entry(
        Family.HUNYUANVIDEO, Task.TEXT_TO_VIDEO,
        id="fast-hunyuanvideo",
        name="Fast HunyuanVideo T2V 13B (step-distilled, 6 steps)",
        repo="FastVideo/FastHunyuan-diffusers",
        # FastVideo's model card: 6 steps, flow shift 17, embedded guidance 6 (frames and size as HunyuanVideo's).
        defaults=VideoDefaults(steps=6, guidance=6.0, width=960, height=544, frames=129, fps=24, flow_shift=17.0),
        component_bytes=_HUNYUANVIDEO_BYTES,
    ),
    entry(
        Family.HUNYUANVIDEO, Task.IMAGE_TO_VIDEO,
        id="hunyuanvideo-i2v",
        name="HunyuanVideo I2V 13B",
        repo="hunyuanvideo-community/HunyuanVideo-I2V",
        # Steps 50 and 129 frames: HunyuanVideoImageToVideoPipeline's defaults in diffusers 0.42.1. Guidance 6.0: the
        # pipeline's example for this repo (`pipe(image=image, prompt=prompt, guidance_scale=6.0)`; embedded guidance,
        # one pass per step). Flow shift 7.0: Tencent's HunyuanVideo-I2V README, "for more stable videos" with
        # --i2v-stability (17 for more motion). Size: as the T2V entry's, the smaller of HunyuanVideo's trained
        # resolutions (the pipeline's default is 1280×720); a start picture keeps its aspect at this pixel count.
        defaults=VideoDefaults(steps=50, guidance=6.0, width=960, height=544, frames=129, fps=24, flow_shift=7.0),
        component_bytes=_HUNYUANVIDEO_I2V_BYTES,
    ),
)

VIDEO_DEMOS = (
    entry(
        Family.WAN, Task.TEXT_TO_VIDEO,
        id="demo-wan",
        name="Wan2.1 T2V (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    entry(
        Family.SKYREELS_V2, Task.TEXT_TO_VIDEO,
        id="demo-skyreels-v2",
        name="SkyReels V2 DF (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=6.0, width=64, height=64, frames=9, fps=24, flow_shift=8.0),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    entry(
        Family.WAN, Task.TEXT_TO_IMAGE,
        id="demo-wan-image",
        name="Wan2.1 T2V as an image model (tiny)",
        demo=True,
        base="demo-wan",
        defaults=CallDefaults(steps=4, guidance=5.0, width=64, height=64, scheduler="UniPC"),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    entry(
        Family.WAN, Task.IMAGE_TO_VIDEO,
        id="demo-wan-i2v",
        name="Wan2.1 I2V (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes={**_TINY_VIDEO_BYTES, "image_encoder": 200_000},
    ),
    entry(
        Family.WAN_VACE, Task.TEXT_TO_VIDEO,
        id="demo-wan-vace",
        name="Wan2.1 VACE (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=5.0, width=64, height=64, frames=9, fps=16, flow_shift=3.0),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="demo-ltx",
        name="LTX-Video (tiny)",
        demo=True,
        defaults=VideoDefaults(
            steps=4, guidance=3.0, width=64, height=64, frames=9, fps=24, flow_shift=None, call_kwargs=_LTX_DECODE_NOISE,
        ),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    # LTX-Video 0.9.7 distilled's path on the tiny LTX weights: the condition pipeline with a two-step schedule (the
    # real one's first and last timesteps), and the two passes with a one-step second pass.
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="demo-ltx-distilled",
        name="LTX-Video 0.9.7 distilled path (tiny)",
        demo=True,
        base="demo-ltx",
        pipeline_class="LTXConditionPipeline",
        defaults=VideoDefaults(
            steps=2, guidance=1.0, width=64, height=64, frames=9, fps=24, flow_shift=None,
            call_kwargs=_LTX_097_DISTILLED_KWARGS, timesteps=(1000.0, 0.03),
        ),
        component_bytes=_TINY_VIDEO_BYTES,
    ),
    entry(
        Family.LTX, Task.TEXT_TO_VIDEO,
        id="demo-ltx-distilled-upscaled",
        name="LTX-Video 0.9.7 distilled + latent upscaler path (tiny)",
        demo=True,
        base="demo-ltx",
        pipeline_class="LTXConditionPipeline",
        defaults=VideoDefaults(
            steps=2, guidance=1.0, width=64, height=64, frames=9, fps=24, flow_shift=None,
            call_kwargs=_LTX_097_DISTILLED_KWARGS, timesteps=(1000.0, 0.03),
            # Strength 0.999 skips the first timestep, as in the real schedule: one step at 421.
            upsample=UpsamplePass(base_scale=2 / 3, timesteps=(1000.0, 421.0), denoise_strength=0.999, adain_factor=1.0),
        ),
        component_bytes={**_TINY_VIDEO_BYTES, "latent_upsampler": 650_000},
        companion=replace(
            LTXV_SPATIAL_UPSCALER_097, id="demo-ltxv-spatial-upscaler", name="LTX-Video spatial latent upscaler (tiny)",
            repo=None, licence=DEMO_LICENCE,
        ),
    ),
    entry(
        Family.HUNYUANVIDEO, Task.TEXT_TO_VIDEO,
        id="demo-hunyuanvideo",
        name="HunyuanVideo T2V (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=6.0, width=64, height=64, frames=9, fps=24, flow_shift=7.0),
        component_bytes={**_TINY_VIDEO_BYTES, "text_encoder_2": 200_000},
    ),
    entry(
        Family.HUNYUANVIDEO, Task.IMAGE_TO_VIDEO,
        id="demo-hunyuanvideo-i2v",
        name="HunyuanVideo I2V (tiny)",
        demo=True,
        defaults=VideoDefaults(steps=4, guidance=6.0, width=64, height=64, frames=9, fps=24, flow_shift=7.0),
        component_bytes={**_TINY_VIDEO_BYTES, "text_encoder_2": 200_000},
    ),
    entry(
        Family.FRAMEPACK, Task.IMAGE_TO_VIDEO,
        id="demo-framepack",
        name="FramePack I2V (tiny)",
        demo=True,
        # Two sections of the default window.
        defaults=VideoDefaults(
            steps=4, guidance=10.0, width=64, height=64, frames=73, fps=30, flow_shift=None,
            call_kwargs=(("sampling_type", "inverted_anti_drifting"),),
        ),
        component_bytes={**_TINY_VIDEO_BYTES, "text_encoder_2": 200_000, "image_encoder": 100_000},
        component_repos=_DEMO_FRAMEPACK_REPOS,
    ),
)
