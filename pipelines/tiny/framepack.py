"""Tiny FramePack (HunyuanVideo-based image to video in sections), in the three folders it is published as:

- the transformer alone at a repo's root (`lllyasviel/FramePackI2V_HY`, `lllyasviel/FramePack_F1_I2V_HY_20250503`);
- HunyuanVideo's text encoders, tokenizers, VAE and scheduler in their subfolders (`hunyuanvideo-community/HunyuanVideo`,
  whose own transformer FramePack does not use);
- the SigLIP image encoder and its processor in their subfolders (`lllyasviel/flux_redux_bfl`).

The real latent layout is kept (16 channels, VAE 8× per side and 4× in time, patch 1×2×2), so sizes and section
lengths valid here are valid for the real checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackTransformer3DModel
from transformers import CLIPTextModel, LlamaConfig, LlamaModel, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import clip_config

LATENT_CHANNELS = 16
# The class lllyasviel's FramePack repos were saved with (their config.json's `_class_name`).
AUTHORS_CLASS = "HunyuanVideoTransformer3DModelPacked"
LLAMA_DIM = 16
CLIP_DIM = 32
SIGLIP_DIM = 16
# Llama 3's own names for its first and end-of-turn tokens; HunyuanVideo's prompt template is written in them.
LLAMA_SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def tiny_transformer(seed: int) -> HunyuanVideoFramepackTransformer3DModel:
    torch.manual_seed(seed)
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=16,
        # One block of each kind: TeaCache and FirstBlockCache need a first and a last block.
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        text_embed_dim=LLAMA_DIM,
        pooled_projection_dim=CLIP_DIM,
        rope_axes_dim=(4, 6, 6),
        has_image_proj=True,
        image_proj_dim=SIGLIP_DIM,
        has_clean_x_embedder=True,
    )


def tiny_vae(seed: int) -> AutoencoderKLHunyuanVideo:
    torch.manual_seed(seed)
    return AutoencoderKLHunyuanVideo(
        latent_channels=LATENT_CHANNELS, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
    )


def tiny_llama(seed: int) -> LlamaModel:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tokenizers.byte_level_vocab_size(LLAMA_SPECIAL_TOKENS), hidden_size=LLAMA_DIM, intermediate_size=32,
        # The pipeline reads the third hidden state from the end: embeddings and two layers.
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return LlamaModel(config)


def tiny_siglip(seed: int) -> SiglipVisionModel:
    torch.manual_seed(seed)
    config = SiglipVisionConfig(
        hidden_size=SIGLIP_DIM, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
    )
    return SiglipVisionModel(config)


def build_transformer(folder: Path, seed: int) -> None:
    """The model's own repo: its transformer's config and weights at the root, the config naming the class the
    authors saved it with (`HunyuanVideoTransformer3DModelPacked`, from FramePack's own code), as the real repos do."""
    tiny_transformer(seed + 1).save_pretrained(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = AUTHORS_CLASS
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def hunyuanvideo_base_components(seed: int) -> dict:
    """HunyuanVideo's text encoders, tokenizers, VAE and scheduler, by their pipeline keyword (FramePack and
    HunyuanVideo's own text-to-video pipeline share them)."""
    llama = tiny_llama(seed + 2)
    torch.manual_seed(seed + 3)
    clip = CLIPTextModel(clip_config(hidden_size=CLIP_DIM))
    return {
        "text_encoder": llama,
        "tokenizer": tokenizers.byte_level_tokenizer(
            LLAMA_SPECIAL_TOKENS, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|eot_id|>"
        ),
        "text_encoder_2": clip,
        "tokenizer_2": tokenizers.clip_tokenizer(),
        "vae": tiny_vae(seed),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
    }


def build_hunyuanvideo_base(folder: Path, seed: int) -> None:
    """HunyuanVideo's components FramePack uses, each in the subfolder it has in the community diffusers repo."""
    for name, component in hunyuanvideo_base_components(seed).items():
        component.save_pretrained(Path(folder) / name)


def build_redux_image_encoder(folder: Path, seed: int) -> None:
    """The SigLIP vision encoder and its processor, in the subfolders of `lllyasviel/flux_redux_bfl`."""
    folder = Path(folder)
    tiny_siglip(seed + 4).save_pretrained(folder / "image_encoder")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder / "feature_extractor")
