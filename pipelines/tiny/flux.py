"""Tiny FLUX.1: real component classes, 16 latent channels packed 2×2, VAE scale 8, guidance embedding; and the
FLUX.1 Fill, Canny/Depth (control) and Redux models around the same components."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler, FluxControlPipeline, FluxFillPipeline, FluxPipeline, FluxPriorReduxPipeline, FluxTransformer2DModel,
)
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from transformers import CLIPTextModel, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import LATENT_CHANNELS, clip_config, tiny_t5, tiny_vae


# FLUX.1 Fill's transformer reads, per packed 2×2 latent patch: the noisy latents (16×4), the masked image's
# latents (16×4) and the mask at pixel resolution folded into the patch (8×8 pixels × 4): 384 channels in all.
FILL_IN_CHANNELS = LATENT_CHANNELS * 4 * 2 + 8 * 8 * 4
# FLUX.1 Canny and Depth read the noisy latents and the control picture's latents, both packed: 128 in the real model.
CONTROL_IN_CHANNELS = LATENT_CHANNELS * 4 * 2
# The T5 encoder's width, which the transformer's context projection and the Redux embedder's output share.
TEXT_WIDTH = 32


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
        joint_attention_dim=TEXT_WIDTH,
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


def build_control(folder: Path, seed: int) -> None:
    """FLUX.1 Canny or Depth: the same folder layout as FLUX.1 [dev], with `FluxControlPipeline` in its index."""
    _build(FluxControlPipeline, tiny_transformer(seed + 1, in_channels=CONTROL_IN_CHANNELS), folder, seed)


def build_redux_prior(folder: Path, seed: int) -> None:
    """FLUX.1 Redux's repo: `image_encoder` (SigLIP), `feature_extractor` and `image_embedder` (which projects SigLIP's
    patches to the T5 width, so they join the prompt's tokens), no text encoders."""
    torch.manual_seed(seed)
    encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
    ))
    torch.manual_seed(seed + 1)
    prior = FluxPriorReduxPipeline(
        image_encoder=encoder,
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}),
        image_embedder=ReduxImageEncoder(redux_dim=16, txt_in_features=TEXT_WIDTH),
    )
    prior.save_pretrained(folder)


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
        text_encoder_2=tiny_t5(seed + 3, d_model=TEXT_WIDTH),
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
