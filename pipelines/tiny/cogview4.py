"""Tiny CogView4: the real component classes (GLM text encoder, CogView4 transformer, 16-channel VAE of scale 8,
patch 2) and the real scheduler settings, so the same sizes are valid as for CogView4-6B."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
from transformers import GlmConfig, GlmModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import LATENT_CHANNELS, tiny_vae

GLM_DIM = 32
# GLM-4's end token (also its pad token) and the two tokens its tokenizer starts every text with; the
# pipeline encodes an empty negative prompt, which must still give tokens.
GLM_SPECIAL_TOKENS = ["<|endoftext|>", "[gMASK]", "<sop>"]


def tiny_transformer(seed: int) -> CogView4Transformer2DModel:
    torch.manual_seed(seed)
    return CogView4Transformer2DModel(
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        text_embed_dim=GLM_DIM,
        time_embed_dim=16,
        condition_dim=8,
        sample_size=128,
    )


def tiny_glm(seed: int) -> GlmModel:
    torch.manual_seed(seed)
    config = GlmConfig(
        vocab_size=tokenizers.byte_level_vocab_size(GLM_SPECIAL_TOKENS),
        hidden_size=GLM_DIM,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        pad_token_id=0,
        eos_token_id=0,
    )
    return GlmModel(config)


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae()
    tokenizer = tokenizers.byte_level_tokenizer(
        GLM_SPECIAL_TOKENS, prefix=["[gMASK]", "<sop>"], eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        padding_side="left",
    )
    pipe = CogView4Pipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_glm(seed + 2),
        vae=vae,
        transformer=tiny_transformer(seed + 1),
        # CogView4-6B's scheduler: shift grows linearly with the image's token count.
        scheduler=FlowMatchEulerDiscreteScheduler(
            base_shift=0.25, max_shift=0.75, base_image_seq_len=256, use_dynamic_shifting=True, time_shift_type="linear"
        ),
    )
    pipe.save_pretrained(folder)
