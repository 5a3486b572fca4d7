"""Tiny LTX-Video: the real component classes and the real latent layout (VAE 32× per side with a 4×4 patchify,
8× in time with the first frame kept alone, transformer patch 1), so the same sizes (multiples of 32) and frame
counts (8k+1) are valid as for the real checkpoints. The VAE is timestep-aware like 0.9.1 and later, and the
scheduler shifts with the video's length as the real one does.

`build_latent_upsampler` writes the tiny twin of LTX-Video 0.9.7's spatial upscaler in its repo's layout (an
LTXLatentUpsamplePipeline: `model_index.json`, `latent_upsampler/`, and `vae/`, a copy of the model's VAE)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXLatentUpsamplePipeline, LTXPipeline, LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import tiny_t5

LATENT_CHANNELS = 8
TEXT_DIM = 32


def tiny_vae(seed: int) -> AutoencoderKLLTXVideo:
    torch.manual_seed(seed)
    return AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=True,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


def tiny_transformer(seed: int) -> LTXVideoTransformer3DModel:
    torch.manual_seed(seed)
    return LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=TEXT_DIM,
    )


def build(folder: Path, seed: int) -> None:
    pipe = LTXPipeline(
        transformer=tiny_transformer(seed + 1),
        vae=tiny_vae(seed),
        text_encoder=tiny_t5(seed + 2, d_model=TEXT_DIM),
        tokenizer=tokenizers.t5_tokenizer(model_max_length=128),
        # The real LTX-Video scheduler config: the shift follows the number of latent tokens.
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
            max_image_seq_len=4096, shift_terminal=0.1,
        ),
    )
    pipe.save_pretrained(folder)
    # Lightricks' repos ship the T5 tokenizer as `spiece.model` alone: the demo loads it the same way.
    shutil.rmtree(folder / "tokenizer")
    tokenizers.save_sentencepiece_t5(folder / "tokenizer", model_max_length=128)


def build_latent_upsampler(folder: Path, seed: int) -> None:
    """The spatial upscaler's tiny twin: the real class and its ×2 spatial layout (diffusers' conversion config for
    0.9.7: 3D, spatial upsampling only), on the tiny VAE's latent channels."""
    torch.manual_seed(seed + 3)
    upsampler = LTXLatentUpsamplerModel(
        in_channels=LATENT_CHANNELS, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True, temporal_upsample=False,
    )
    LTXLatentUpsamplePipeline(vae=tiny_vae(seed), latent_upsampler=upsampler).save_pretrained(folder)
