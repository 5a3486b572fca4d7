"""Tiny Stable Diffusion XL: two CLIP text encoders (hidden states concatenated, the second one's pooled
projection and the size/crop conditioning added to the time embedding), 4 latent channels, VAE scale 8."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import clip_config
from pipelines.tiny.sd15 import LATENT_CHANNELS, NOISE_SCHEDULE, tiny_vae

# The two encoders differ in width as in the real model (768 and 1280): single-file loading tells them apart by it.
HIDDEN = 32
HIDDEN_2 = 48
TIME_EMBED = 8


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
        cross_attention_dim=HIDDEN + HIDDEN_2,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        # Six size/crop numbers, each embedded, plus the pooled text projection.
        projection_class_embeddings_input_dim=6 * TIME_EMBED + HIDDEN_2,
        norm_num_groups=8,
    )


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae(scaling_factor=0.13025)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(clip_config())
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(hidden_size=HIDDEN_2, projection_dim=HIDDEN_2))
    pipe = StableDiffusionXLPipeline(
        unet=tiny_unet(seed + 1),
        scheduler=EulerDiscreteScheduler(**NOISE_SCHEDULE),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizers.clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizers.clip_tokenizer(),
    )
    pipe.save_pretrained(folder)
