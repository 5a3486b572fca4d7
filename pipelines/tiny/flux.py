"""Tiny FLUX.1: real component classes, 16 latent channels packed 2×2, VAE scale 8, guidance embedding."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import LATENT_CHANNELS, clip_config, tiny_t5, tiny_vae


# FLUX.1 Fill's transformer reads, per packed 2×2 latent patch: the noisy latents (16×4), the masked image's
# latents (16×4) and the mask at pixel resolution folded into the patch (8×8 pixels × 4): 384 channels in all.
FILL_IN_CHANNELS = LATENT_CHANNELS * 4 * 2 + 8 * 8 * 4


def tiny_transformer(seed: int, in_channels: int = LATENT_CHANNELS * 4) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )


def tiny_clip(seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    return CLIPTextModel(clip_config())


def build(folder: Path, seed: int) -> None:
    _build(FluxPipeline, tiny_transformer(seed + 1), folder, seed)


def build_fill(folder: Path, seed: int) -> None:
    """FLUX.1 Fill: the same encoders and VAE around a transformer that also reads the masked image and the mask."""
    _build(FluxFillPipeline, tiny_transformer(seed + 1, in_channels=FILL_IN_CHANNELS), folder, seed)


def _build(pipeline_class, transformer: FluxTransformer2DModel, folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae()
    pipe = pipeline_class(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=vae,
        text_encoder=tiny_clip(seed + 2),
        tokenizer=tokenizers.clip_tokenizer(),
        text_encoder_2=tiny_t5(seed + 3, d_model=32),
        tokenizer_2=tokenizers.t5_tokenizer(),
    )
    pipe.save_pretrained(folder)


def build_lora(path: Path, seed: int) -> None:
    """A random LoRA on the attention of every block, double- and single-stream, as FLUX LoRAs are trained."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    transformer = tiny_transformer(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    torch.manual_seed(seed + 1)
    transformer = inject_adapter_in_model(config, transformer)
    layers = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)
