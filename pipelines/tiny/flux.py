"""Tiny FLUX.1: real component classes, 16 latent channels packed 2×2, VAE scale 8, guidance embedding; and the
FLUX.1 tools: the Canny/Depth control model (the control image's packed latents enter beside the noise's, so the
transformer takes twice the channels it gives back) and the Redux prior (a SigLIP vision encoder and the Redux
embedder, which projects its patches into the T5 embedding width)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxControlPipeline, FluxPipeline, FluxPriorReduxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from transformers import CLIPTextModel, SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

from pipelines.tiny import tokenizers
from pipelines.tiny.sd3 import LATENT_CHANNELS, clip_config, tiny_t5, tiny_vae


# The T5 encoder's width, which the transformer's context projection and the Redux embedder's output share.
TEXT_WIDTH = 32


def tiny_transformer(seed: int, control: bool = False) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    packed_channels = LATENT_CHANNELS * 4
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=packed_channels * 2 if control else packed_channels,
        out_channels=packed_channels,
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


def _components(seed: int, control: bool) -> dict:
    torch.manual_seed(seed)
    return dict(
        vae=tiny_vae(),
        transformer=tiny_transformer(seed + 1, control=control),
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        ),
        text_encoder=tiny_clip(seed + 2),
        tokenizer=tokenizers.clip_tokenizer(),
        text_encoder_2=tiny_t5(seed + 3, d_model=TEXT_WIDTH),
        tokenizer_2=tokenizers.t5_tokenizer(),
    )


def build(folder: Path, seed: int) -> None:
    FluxPipeline(**_components(seed, control=False)).save_pretrained(folder)


def build_control(folder: Path, seed: int) -> None:
    """FLUX.1 Canny or Depth: the same folder layout as FLUX.1 [dev], with `FluxControlPipeline` in its index."""
    FluxControlPipeline(**_components(seed, control=True)).save_pretrained(folder)


def build_redux_prior(folder: Path, seed: int) -> None:
    """FLUX.1 Redux's repo: `image_encoder` (SigLIP), `feature_extractor` and `image_embedder`, no text encoders."""
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
