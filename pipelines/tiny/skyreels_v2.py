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
    return SkyReelsV2Transformer3DModel(**wan.TRANSFORMER_CONFIG, in_channels=wan.LATENT_CHANNELS)


def build(folder: Path, seed: int) -> None:
    pipe = SkyReelsV2DiffusionForcingPipeline(
        transformer=tiny_transformer(seed + 1),
        vae=wan.tiny_vae(seed),
        text_encoder=wan.tiny_umt5(seed + 2),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=512),
        scheduler=wan.scheduler(),
    )
    pipe.save_pretrained(folder)
