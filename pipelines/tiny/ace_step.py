"""Tiny ACE-Step 1.5: the real component classes with the real audio layout — stereo 48 kHz, an Oobleck VAE
that downsamples 1920× (25 latent frames per second), a 2-frame DiT patch, 5-frame pooling into 5 Hz audio
codes — so durations, lengths and every task behave as for the real checkpoints. Every width is tiny.

The audio tokenizer and detokenizer are included: the `cover` task (from `src_audio` or `audio_codes`)
needs them. Turbo (guidance-distilled) by default, like the checkpoint the app ships first.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
from diffusers.pipelines.ace_step.modeling_ace_step import (
    AceStepAudioTokenDetokenizer,
    AceStepAudioTokenizer,
    AceStepConditionEncoder,
)
from tokenizers import pre_tokenizers
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model

SAMPLE_RATE = 48_000
# The real ACE-Step VAE's strides: 2·4·4·6·10 = 1920 samples per latent frame. All even, so the decoder
# gives exactly 1920 samples per frame.
DOWNSAMPLING_RATIOS = (2, 4, 4, 6, 10)
SAMPLES_PER_LATENT = math.prod(DOWNSAMPLING_RATIOS)
LATENTS_PER_SECOND = SAMPLE_RATE / SAMPLES_PER_LATENT  # 25.0
# The real model has 64. The VAE encoder runs 2× this many channels at the full sample rate, and a reference
# clip is always encoded as 30 s of audio: 4 keeps that encode near 1 s on 2 CPU cores (8 takes 2–3× as long).
ACOUSTIC_DIM = 4
TEXT_DIM = 32
HIDDEN = 32
# Shared by the condition encoder, DiT and audio (de)tokenizer: 4 query heads, 2 key/value heads of 8.
_ATTENTION = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64}
POOL_WINDOW = 5  # 25 Hz latents → 5 Hz audio codes, as in the real model
FSQ_LEVELS = [8, 8, 8, 5, 5, 5]  # the real codebook: 64,000 codes
SILENCE_FRAMES = 15_000  # the length AceStepConditionEncoder registers its silence latent with


def tiny_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE without merges: every byte of any text is a token, so nothing is dropped."""
    vocab = {"<|endoftext|>": 0}
    for character in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[character] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=4096)


def tiny_text_encoder(seed: int, vocab_size: int) -> Qwen3Model:
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        # Lyrics are tokenized up to 2048 tokens, and only go through the embedding table.
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=0,
    )
    return Qwen3Model(config)


def tiny_vae(seed: int) -> AutoencoderOobleck:
    torch.manual_seed(seed)
    return AutoencoderOobleck(
        encoder_hidden_size=2 * ACOUSTIC_DIM,  # mean and scale of each latent channel
        downsampling_ratios=list(DOWNSAMPLING_RATIOS),
        channel_multiples=[1, 1, 1, 1, 1],
        decoder_channels=4,
        decoder_input_channels=ACOUSTIC_DIM,
        audio_channels=2,
        sampling_rate=SAMPLE_RATE,
    )


def tiny_condition_encoder(seed: int, vae: AutoencoderOobleck) -> AceStepConditionEncoder:
    torch.manual_seed(seed)
    encoder = AceStepConditionEncoder(
        hidden_size=HIDDEN,
        text_hidden_dim=TEXT_DIM,
        timbre_hidden_dim=ACOUSTIC_DIM,
        num_lyric_encoder_hidden_layers=2,
        num_timbre_encoder_hidden_layers=2,
        **_ATTENTION,
    )
    # The real converter stores the VAE encoding of silence here (the timbre input when no reference audio
    # is given); zeros would be a different input from the real model's. Away from the edges every frame of
    # encoded silence is the same, so one middle frame is encoded and repeated.
    with torch.no_grad():
        silence = torch.zeros(1, 2, 2 * SAMPLE_RATE)
        frames = vae.encode(silence).latent_dist.mode().transpose(1, 2)
        middle = frames[:, frames.shape[1] // 2 : frames.shape[1] // 2 + 1]
        encoder.silence_latent.copy_(middle.expand(1, SILENCE_FRAMES, ACOUSTIC_DIM))
    return encoder


def tiny_transformer(seed: int, turbo: bool) -> AceStepTransformer1DModel:
    torch.manual_seed(seed)
    return AceStepTransformer1DModel(
        hidden_size=HIDDEN,
        num_hidden_layers=2,  # one sliding-window, one full-attention layer
        # Noisy latents + source latents + chunk mask, concatenated on channels.
        in_channels=3 * ACOUSTIC_DIM,
        audio_acoustic_hidden_dim=ACOUSTIC_DIM,
        patch_size=2,
        is_turbo=turbo,
        model_version="turbo" if turbo else "base",
        **_ATTENTION,
    )


def tiny_audio_tokenizer(seed: int) -> AceStepAudioTokenizer:
    torch.manual_seed(seed)
    return AceStepAudioTokenizer(
        hidden_size=HIDDEN,
        audio_acoustic_hidden_dim=ACOUSTIC_DIM,
        pool_window_size=POOL_WINDOW,
        fsq_dim=HIDDEN,
        fsq_input_levels=FSQ_LEVELS,
        fsq_input_num_quantizers=1,
        num_attention_pooler_hidden_layers=2,
        **_ATTENTION,
    )


def tiny_audio_token_detokenizer(seed: int) -> AceStepAudioTokenDetokenizer:
    torch.manual_seed(seed)
    return AceStepAudioTokenDetokenizer(
        hidden_size=HIDDEN,
        audio_acoustic_hidden_dim=ACOUSTIC_DIM,
        pool_window_size=POOL_WINDOW,
        num_attention_pooler_hidden_layers=2,
        **_ATTENTION,
    )


def build(folder: Path, seed: int = 0, *, turbo: bool = True) -> None:
    """Write a tiny random-weight AceStepPipeline into `folder` (which must not exist yet).

    `turbo=True` marks it as the guidance-distilled turbo variant (the pipeline then ignores `guidance_scale`);
    `turbo=False` as a base model, which runs APG guidance with the learned null condition when
    `guidance_scale > 1`.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists")
    with torch.random.fork_rng():
        tokenizer = tiny_tokenizer()
        vae = tiny_vae(seed)
        pipe = AceStepPipeline(
            vae=vae,
            text_encoder=tiny_text_encoder(seed + 1, vocab_size=len(tokenizer)),
            tokenizer=tokenizer,
            transformer=tiny_transformer(seed + 2, turbo),
            condition_encoder=tiny_condition_encoder(seed + 3, vae),
            # ACE-Step computes its own shifted sigmas in [0, 1] and passes them in; the scheduler must not
            # rescale or shift them again.
            scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
            audio_tokenizer=tiny_audio_tokenizer(seed + 4),
            audio_token_detokenizer=tiny_audio_token_detokenizer(seed + 5),
        )
        pipe.save_pretrained(folder)


def build_lora(path: Path, seed: int) -> None:
    """A random LoRA on the DiT's self- and cross-attention, as ACE-Step LoRAs are trained, in diffusers' layout."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    transformer = tiny_transformer(seed, turbo=True)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    torch.manual_seed(seed + 1)
    transformer = inject_adapter_in_model(config, transformer)
    layers = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    AceStepPipeline.save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)
