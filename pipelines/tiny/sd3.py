"""Tiny Stable Diffusion 3: the real component classes with the real latent layout (16 channels,
VAE scale 8, patch 2), so the same sizes are valid as for SD3 Medium."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from pipelines.tiny import tokenizers

LATENT_CHANNELS = 16


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        # The real SD3/FLUX VAE config says 1024: tiling then starts above 1024 px, as for the real model.
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def clip_config(hidden_size: int = 32, **extra) -> CLIPTextConfig:
    """A 2-layer CLIP text encoder over the character tokenizer (its end token is also its pad token)."""
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=tokenizers.CLIP_VOCAB_SIZE,
        hidden_act="gelu",
        **extra,
    )


def tiny_clip(seed: int) -> CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(clip_config(projection_dim=32))


def tiny_t5(seed: int, d_model: int) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=tokenizers.T5_VOCAB_SIZE,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def tiny_transformer(seed: int) -> SD3Transformer2DModel:
    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        # CLIP-L and CLIP-G hidden states (32 + 32) are padded up to the T5 width.
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        pos_embed_max_size=96,
    )


def build(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    vae = tiny_vae()
    pipe = StableDiffusion3Pipeline(
        transformer=tiny_transformer(seed + 1),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=tiny_clip(seed + 2),
        tokenizer=tokenizers.clip_tokenizer(),
        text_encoder_2=tiny_clip(seed + 3),
        tokenizer_2=tokenizers.clip_tokenizer(),
        text_encoder_3=tiny_t5(seed + 4, d_model=64),
        tokenizer_3=tokenizers.t5_tokenizer(),
    )
    pipe.save_pretrained(folder)
    add_repo_extras(folder, pipe)


def add_repo_extras(folder: Path, pipe: StableDiffusion3Pipeline) -> None:
    """What Stability's SD3/SD3.5 repos hold beside the diffusers folders, which the loader never reads and a download
    must skip: ComfyUI's single-file text encoders in `text_encoders/` and fp16 duplicates of each text encoder (as
    `model.fp16.safetensors` beside `model.safetensors`)."""
    from safetensors.torch import save_file

    singles = {"clip_l": pipe.text_encoder, "clip_g": pipe.text_encoder_2, "t5xxl_fp16": pipe.text_encoder_3}
    (folder / "text_encoders").mkdir()
    for name, encoder in singles.items():
        state = {key: value.to(torch.float16).contiguous() for key, value in encoder.state_dict().items()}
        save_file(state, folder / "text_encoders" / f"{name}.safetensors")
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        state = {key: value.to(torch.float16).contiguous() for key, value in getattr(pipe, name).state_dict().items()}
        save_file(state, folder / name / "model.fp16.safetensors", metadata={"format": "pt"})


def build_lora(path: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    transformer = tiny_transformer(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    torch.manual_seed(seed + 1)
    transformer = inject_adapter_in_model(config, transformer)
    layers = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusion3Pipeline.save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)
