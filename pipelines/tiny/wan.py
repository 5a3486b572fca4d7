"""Tiny Wan2.1, text to video, image to video and VACE: the real component classes and the real latent layout (16
channels, VAE 8× per side and 4× in time with the first frame kept alone, patch 1×2×2), so the same sizes and
frame counts (4k+1) are valid as for the real checkpoints. The scheduler is Wan's own: flow-matching UniPC."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

from pipelines.tiny import tokenizers

LATENT_CHANNELS = 16
HEADS, HEAD_DIM = 2, 12
TEXT_DIM = 32
IMAGE_DIM = 16
# The image-to-video transformer sees the noise, a 4-channel "which frames are given" mask and the encoded image.
I2V_IN_CHANNELS = LATENT_CHANNELS + 4 + LATENT_CHANNELS
# VACE's control branch reads the kept and the regenerated part of the input video (a latent each) and the mask
# folded from the VAE's 8×8 pixels into channels: 16 + 16 + 64, the real model's 96.
VACE_IN_CHANNELS = 2 * LATENT_CHANNELS + 8 * 8


def tiny_vae(seed: int) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3, z_dim=LATENT_CHANNELS, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def tiny_umt5(seed: int) -> UMT5EncoderModel:
    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=tokenizers.T5_VOCAB_SIZE, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config)


# What the text-to-video, image-to-video and VACE transformers share (and SkyReels V2's, of the same shape).
TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=HEADS,
    attention_head_dim=HEAD_DIM,
    out_channels=LATENT_CHANNELS,
    text_dim=TEXT_DIM,
    freq_dim=32,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


def tiny_transformer(seed: int, image_to_video: bool) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    if image_to_video:
        return WanTransformer3DModel(
            **TRANSFORMER_CONFIG, in_channels=I2V_IN_CHANNELS, image_dim=IMAGE_DIM, added_kv_proj_dim=HEADS * HEAD_DIM,
        )
    return WanTransformer3DModel(**TRANSFORMER_CONFIG, in_channels=LATENT_CHANNELS)


def tiny_vace_transformer(seed: int) -> WanVACETransformer3DModel:
    torch.manual_seed(seed)
    return WanVACETransformer3DModel(
        **TRANSFORMER_CONFIG,
        in_channels=LATENT_CHANNELS,
        # A control block beside every transformer block (the real 1.3B has one beside every other).
        vace_layers=[0, 1],
        vace_in_channels=VACE_IN_CHANNELS,
    )


def tiny_image_encoder(seed: int) -> CLIPVisionModel:
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=IMAGE_DIM, projection_dim=IMAGE_DIM, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, image_size=32, patch_size=8,
    )
    return CLIPVisionModel(config)


def scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def build(folder: Path, seed: int) -> None:
    pipe = WanPipeline(
        transformer=tiny_transformer(seed + 1, image_to_video=False),
        vae=tiny_vae(seed),
        text_encoder=tiny_umt5(seed + 2),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
        scheduler=scheduler(),
    )
    pipe.save_pretrained(folder)


def build_image_to_video(folder: Path, seed: int) -> None:
    pipe = WanImageToVideoPipeline(
        transformer=tiny_transformer(seed + 1, image_to_video=True),
        vae=tiny_vae(seed),
        text_encoder=tiny_umt5(seed + 2),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
        scheduler=scheduler(),
        image_encoder=tiny_image_encoder(seed + 3),
        image_processor=CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}),
    )
    pipe.save_pretrained(folder)


def build_vace(folder: Path, seed: int) -> None:
    pipe = WanVACEPipeline(
        transformer=tiny_vace_transformer(seed + 1),
        vae=tiny_vae(seed),
        text_encoder=tiny_umt5(seed + 2),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
        scheduler=scheduler(),
    )
    pipe.save_pretrained(folder)
