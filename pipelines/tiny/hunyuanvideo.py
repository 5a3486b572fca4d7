"""Tiny HunyuanVideo text to video, in the layout of `hunyuanvideo-community/HunyuanVideo` (and FastVideo's
step-distilled copy): FramePack's tiny text encoders, tokenizers, VAE and scheduler with a plain HunyuanVideo
transformer of the same shape (16 latent channels, VAE 8× per side and 4× in time, patch 1×2×2), so sizes and frame
counts valid here are valid for the real checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

from pipelines.tiny import framepack


def tiny_transformer(seed: int, **config) -> HunyuanVideoTransformer3DModel:
    """The tiny transformer; `config` adds what a variant changes (I2V's `image_condition_type`)."""
    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=framepack.LATENT_CHANNELS,
        out_channels=framepack.LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=16,
        # One block of each kind: TeaCache and FirstBlockCache need a first and a last block.
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        # Guidance is an input of the transformer, as in the released (guidance-distilled) weights.
        guidance_embeds=True,
        text_embed_dim=framepack.LLAMA_DIM,
        pooled_projection_dim=framepack.CLIP_DIM,
        rope_axes_dim=(4, 6, 6),
        **config,
    )


def build(folder: Path, seed: int) -> None:
    HunyuanVideoPipeline(transformer=tiny_transformer(seed + 1), **framepack.hunyuanvideo_base_components(seed)).save_pretrained(folder)
