"""Tiny OmniGen: the real transformer class (a Phi-3-style decoder that embeds the instruction's tokens itself, so
there is no text encoder), a 4-channel VAE of scale 8 and a Llama tokenizer. The processor counts one input-image
token per 16×16 pixels, so the VAE's scale (8) times the patch (2) must stay 16, as in the real model."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, OmniGenPipeline, OmniGenTransformer2DModel
from transformers import LlamaTokenizer

from pipelines.tiny.sd15 import tiny_vae

# Llama's first tokens: unknown, start, end. The pipeline's processor drops a leading id 1 (start) from each
# chunk of text between image placeholders.
_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
_CHARACTERS = ["\u2581", *string.printable]
_VOCAB_SIZE = len(_SPECIAL_TOKENS) + len(_CHARACTERS)


def tiny_tokenizer() -> LlamaTokenizer:
    vocab = {token: index for index, token in enumerate([*_SPECIAL_TOKENS, *_CHARACTERS])}
    return LlamaTokenizer(vocab=vocab, merges=[], unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>")


def tiny_transformer(seed: int) -> OmniGenTransformer2DModel:
    torch.manual_seed(seed)
    head_dim = 8
    return OmniGenTransformer2DModel(
        in_channels=4,
        patch_size=2,
        hidden_size=16,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        num_layers=2,
        pad_token_id=0,
        vocab_size=_VOCAB_SIZE,
        # Phi-3's "su" rotary scaling: one factor per rotary frequency (half the head's width).
        rope_scaling={"short_factor": [1.0] * (head_dim // 2), "long_factor": [1.0] * (head_dim // 2)},
        pos_embed_max_size=64,
        time_step_dim=16,
    )


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    pipe = OmniGenPipeline(
        transformer=tiny_transformer(seed + 1),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(scaling_factor=0.13025, sample_size=1024),
        tokenizer=tiny_tokenizer(),
    )
    pipe.save_pretrained(folder)
