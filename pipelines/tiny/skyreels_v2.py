"""Tiny SkyReels V2 diffusion forcing: Wan's tiny VAE and UMT5 with a SkyReels transformer of the same shape (16
latent channels, patch 1×2×2), so sizes, frame counts (4k+1) and the long mode's chunking behave as for the real
checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import SkyReelsV2DiffusionForcingPipeline, SkyReelsV2Transformer3DModel

from pipelines.tiny import tokenizers, wan


def tiny_transformer(seed: int) -> SkyReelsV2Transformer3DModel:
    torch.manual_seed(seed)
    return SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=wan.HEADS,
        attention_head_dim=wan.HEAD_DIM,
        in_channels=wan.LATENT_CHANNELS,
        out_channels=wan.LATENT_CHANNELS,
        text_dim=wan.TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def build(folder: Path, seed: int) -> None:
    pipe = SkyReelsV2DiffusionForcingPipeline(
        transformer=tiny_transformer(seed + 1),
        vae=wan.tiny_vae(seed),
        text_encoder=wan.tiny_umt5(seed + 2),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
        scheduler=wan.scheduler(),
    )
    pipe.save_pretrained(folder)
