"""A tiny random-weight Fish Speech model in the official checkpoint folder layout: `config.json`,
`model.pth`, `tokenizer.tiktoken`, `special_tokens.json`, `codec.pth` — plus `codec_config.json`, because
its codec is not the official one whose hyper-parameters the loader knows.

The codec keeps the real model's frame rate (512× downsampling in the encoder, 2×2 more in the quantizer:
2048 samples, ~21.5 frames per second at 44.1 kHz) so the demo's durations and progress read like the real
model's; every width is tiny.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import torch

from pipelines.networks.fish_speech.codec import CodecConfig, FishCodec, official_codec_state_dict
from pipelines.networks.fish_speech.dual_ar import DualARConfig, DualARTransformer, official_dual_ar_state_dict
from pipelines.networks.fish_speech.model import CODEC_CONFIG_FILE, CODEC_WEIGHTS_FILE

NAMED_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<|phoneme_start|>",
    "<|phoneme_end|>", "<|tool_call_start|>", "<|tool_call_end|>", "<|text|>", "<|voice|>", "<|interleave|>",
    "<|audio_start|>", "<|audio_end|>", "<|audio|>",
)
# A few English merges on top of the 256 byte tokens, so text takes fewer tokens than bytes.
MERGES = ("th", "he", "in", "er", "an", " t", " a", "re", "on", "at", "en", "nd", "ou", "ed", "the", " the", "ing", " s", " w", "ll")
CODEBOOK_SIZE = 64
NUM_CODEBOOKS = 4

DUAL_AR_CONFIG = {
    "model_type": "dual_ar",
    "dim": 64, "n_layer": 2, "n_head": 4, "n_local_heads": 2, "head_dim": 16, "intermediate_size": 128,
    "fast_dim": 48, "n_fast_layer": 1, "fast_n_head": 4, "fast_n_local_heads": 1, "fast_head_dim": 12,
    "fast_intermediate_size": 96,
    "codebook_size": CODEBOOK_SIZE, "num_codebooks": NUM_CODEBOOKS, "max_seq_len": 2048,
    "rope_base": 10000.0, "norm_eps": 1e-6, "dropout": 0.0,
    "attention_qkv_bias": False, "attention_o_bias": False, "attention_qk_norm": True,
    "fast_attention_qkv_bias": False, "fast_attention_o_bias": False, "fast_attention_qk_norm": False,
    "tie_word_embeddings": True, "scale_codebook_embeddings": True,
}

_TINY_TRANSFORMER = {
    "block_size": 64, "n_layer": 1, "n_head": 2, "dim": 32, "intermediate_size": 64, "n_local_heads": -1,
    "head_dim": 16, "rope_base": 10000, "norm_eps": 1e-5, "dropout_rate": 0.0, "attn_dropout_rate": 0.0,
    "channels_first": True,
}
CODEC_CONFIG = {
    "sample_rate": 44100,
    "encoder_dim": 2, "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 16, "decoder_rates": [8, 8, 4, 2],
    "encoder_transformer_layers": [0, 0, 0, 0], "decoder_transformer_layers": [0, 0, 0, 0],
    "causal": True,
    "transformer_general_config": {**_TINY_TRANSFORMER, "head_dim": 16},
    "quantizer": {
        "input_dim": 32, "n_codebooks": NUM_CODEBOOKS - 1, "codebook_size": 16, "codebook_dim": 4,
        "quantizer_dropout": 0.0, "downsample_factor": [2, 2], "semantic_codebook_size": CODEBOOK_SIZE,
        "pre_module": {"causal": True, "window_size": 8, "input_dim": 32, "config": _TINY_TRANSFORMER},
        "post_module": {"causal": True, "window_size": 8, "input_dim": 32, "config": _TINY_TRANSFORMER},
    },
}


def build(folder: Path, seed: int = 0) -> None:
    folder.mkdir(parents=True)
    vocab_size = _write_tokenizer(folder)
    config = {**DUAL_AR_CONFIG, "vocab_size": vocab_size}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dual_ar = DualARTransformer(DualARConfig.from_dict(config))
        _spread_weights(dual_ar)
        torch.save(official_dual_ar_state_dict(dual_ar), folder / "model.pth")
        codec = FishCodec(CodecConfig.from_dict(CODEC_CONFIG))
        torch.save(official_codec_state_dict(codec), folder / CODEC_WEIGHTS_FILE)
    (folder / CODEC_CONFIG_FILE).write_text(json.dumps(CODEC_CONFIG, indent=2))


def _spread_weights(model: torch.nn.Module) -> None:
    """Weights of unit-variance outputs, not the training init's 0.02: logits that small give a flat
    distribution, and then the sampler's noise alone picks every token, whatever the text or the voice."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                fan_in = 1 if "embeddings" in name else parameter.shape[1]
                parameter.normal_(0.0, fan_in**-0.5)


def _write_tokenizer(folder: Path) -> int:
    """The official formats: `base64(token) rank` lines, and special tokens numbered after the ranks."""
    ranks = [bytes([value]) for value in range(256)] + [merge.encode() for merge in MERGES]
    (folder / "tokenizer.tiktoken").write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks))
    )
    special = list(NAMED_SPECIAL_TOKENS) + [f"<|semantic:{index}|>" for index in range(CODEBOOK_SIZE)]
    (folder / "special_tokens.json").write_text(
        json.dumps({token: len(ranks) + index for index, token in enumerate(special)}, indent=2)
    )
    return len(ranks) + len(special)
