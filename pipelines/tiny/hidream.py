"""Tiny HiDream-I1: the real component classes and latent layout (16 channels, VAE scale 8, patch 2), so the
pipeline renders the same fixed 1024×1024-pixel area as the real model whatever size is asked.

As published, the pipeline folder leaves `text_encoder_4`/`tokenizer_4` empty in `model_index.json`: the
Llama encoder is a folder of its own (`build_llama`), passed in at load time exactly like the real
Meta-Llama-3.1-8B-Instruct.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
from transformers import CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import LATENT_CHANNELS, clip_config, tiny_t5, tiny_vae

T5_DIM = 32
LLAMA_DIM = 16
LLAMA_LAYERS = 2
# Llama 3's own names for its first and end-of-turn tokens (the pipeline pads with the end token).
LLAMA_SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot_id|>"]


def tiny_transformer(seed: int) -> HiDreamImageTransformer2DModel:
    torch.manual_seed(seed)
    return HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[T5_DIM, LLAMA_DIM],
        # The two CLIP projections (32 + 32), pooled.
        text_emb_dim=64,
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        # In latent pixels, as the real model: 128×128 latents are the 1024×1024 images it renders.
        max_resolution=(128, 128),
        llama_layers=list(range(LLAMA_LAYERS)),
    )


def tiny_clip(seed: int) -> CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    # HiDream tokenizes its CLIP prompts to 128 tokens.
    return CLIPTextModelWithProjection(clip_config(projection_dim=32, max_position_embeddings=128))


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae()
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=tiny_clip(seed + 2),
        tokenizer=tokenizers.clip_tokenizer(),
        text_encoder_2=tiny_clip(seed + 3),
        tokenizer_2=tokenizers.clip_tokenizer(),
        text_encoder_3=tiny_t5(seed + 4, d_model=T5_DIM),
        tokenizer_3=tokenizers.t5_tokenizer(),
        text_encoder_4=None,
        tokenizer_4=None,
        transformer=tiny_transformer(seed + 1),
    )
    pipe.save_pretrained(folder)


def build_llama(folder: Path, seed: int) -> None:
    """The fourth text encoder in the layout of a transformers Llama repo: weights, config and tokenizer at its root."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tokenizers.byte_level_vocab_size(LLAMA_SPECIAL_TOKENS),
        hidden_size=LLAMA_DIM,
        intermediate_size=32,
        num_hidden_layers=LLAMA_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer = tokenizers.byte_level_tokenizer(LLAMA_SPECIAL_TOKENS, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    tokenizer.save_pretrained(folder)
