"""Tiny Stable Diffusion 1.5: the real component classes with the real latent layout (4 channels, VAE scale 8),
so the same sizes are valid as for the real model."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import clip_config

LATENT_CHANNELS = 4
# SD1.5's own noise schedule; SDXL uses the same one.
NOISE_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1)


def tiny_vae(scaling_factor: float, sample_size: int = 512) -> AutoencoderKL:
    """SD's 4-channel VAE of scale 8, also SDXL's and OmniGen's (`sample_size` only sets the tiling tile)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def tiny_unet(seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae(scaling_factor=0.18215)
    torch.manual_seed(seed + 2)
    pipe = StableDiffusionPipeline(
        unet=tiny_unet(seed + 1),
        scheduler=EulerDiscreteScheduler(**NOISE_SCHEDULE),
        vae=vae,
        text_encoder=CLIPTextModel(clip_config()),
        tokenizer=tokenizers.clip_tokenizer(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
