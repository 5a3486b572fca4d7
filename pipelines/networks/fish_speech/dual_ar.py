"""Fish Speech's text-to-semantic model (OpenAudio S1-mini's "DualAR"), for inference.

Every sequence position is a column: a token id (text, special or semantic) and `num_codebooks` codec codes.
  slow transformer  columns -> token embedding, plus the sum of the codebook embeddings at semantic positions
                    -> pre-norm blocks -> final norm -> logits over the vocabulary: the next main token.
  fast transformer  one frame at a time, `num_codebooks` positions: the slow residual stream of the frame
                    (through `fast_project_in`), then the embeddings of codes 0..n-2 -> position k gives the
                    logits of codebook k.
Both transformers keep KV caches for generation (`setup_caches`); generation.py drives them.

Loads the official checkpoint folder: `config.json` + `model.pth` (or `model.safetensors` with the same keys).
Module names are the official ones, so the state dict keys are too.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from pipelines.networks.fish_speech.layers import RMSNorm
from pipelines.networks.fish_speech.tokenizer import BPE_FILE, FishTokenizer

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.pth", "model.safetensors")
# Keys of the official config.json that only matter for training.
TRAINING_ONLY_KEYS = frozenset({"dropout", "use_gradient_checkpointing", "initializer_range", "is_reward_model"})
# Later fish-speech versions write these too; the features they switch on (audio-embedding input, a normalised fast
# input) are not implemented, so they are accepted only switched off.
SWITCHED_OFF_KEYS = {"audio_embed_dim": None, "norm_fastlayer_input": False}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class StackConfig:
    """The hyper-parameters of one of the two transformers."""

    dim: int
    n_layer: int
    n_head: int
    n_local_heads: int
    head_dim: int
    intermediate_size: int
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool
    norm_eps: float


@dataclass(frozen=True)
class DualARConfig:
    """The official `config.json` (field names and defaults of fish-speech's DualARModelArgs). Unset fast-transformer
    fields take the slow transformer's values, as in the official code. The semantic token range comes from the
    tokenizer (`load_dual_ar` fills it in); without one, the semantic tokens are the last `codebook_size` ids."""

    model_type: str = "dual_ar"
    vocab_size: int = 32000
    n_layer: int = 32
    n_head: int = 32
    dim: int = 4096
    intermediate_size: int | None = None
    n_local_heads: int = -1
    head_dim: int = 64
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 2048
    tie_word_embeddings: bool = True
    attention_qkv_bias: bool = False
    attention_o_bias: bool = False
    attention_qk_norm: bool = False
    codebook_size: int = 160
    num_codebooks: int = 4
    scale_codebook_embeddings: bool = False
    n_fast_layer: int = 4
    fast_dim: int | None = None
    fast_n_head: int | None = None
    fast_n_local_heads: int | None = None
    fast_head_dim: int | None = None
    fast_intermediate_size: int | None = None
    fast_attention_qkv_bias: bool | None = None
    fast_attention_qk_norm: bool | None = None
    fast_attention_o_bias: bool | None = None
    semantic_begin_id: int | None = None
    semantic_end_id: int | None = None

    def __post_init__(self):
        if self.model_type != "dual_ar":
            raise ValueError(f"model_type {self.model_type!r} is not supported; only 'dual_ar' is")
        # A frozen dataclass: the official defaults are filled in here, the slow fields first since unset fast
        # fields copy them. A semantic id of 0 is what later fish-speech versions write for "unset".
        self._fill(
            n_local_heads=self.n_head if self.n_local_heads == -1 else self.n_local_heads,
            intermediate_size=self.intermediate_size or _round_up(int(2 * 4 * self.dim / 3), 256),
            semantic_begin_id=self.semantic_begin_id or self.vocab_size - self.codebook_size,
            semantic_end_id=self.semantic_end_id or self.vocab_size - 1,
        )
        self._fill(
            fast_dim=self.fast_dim or self.dim,
            fast_n_head=self.fast_n_head or self.n_head,
            fast_n_local_heads=self.fast_n_local_heads or self.n_local_heads,
            fast_head_dim=self.fast_head_dim or self.head_dim,
            fast_intermediate_size=self.fast_intermediate_size or self.intermediate_size,
            **{
                f"fast_attention_{name}": getattr(self, f"attention_{name}")
                for name in ("qkv_bias", "qk_norm", "o_bias")
                if getattr(self, f"fast_attention_{name}") is None
            },
        )
        self._check()

    def _fill(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _check(self) -> None:
        if self.n_head % self.n_local_heads or self.fast_n_head % self.fast_n_local_heads:
            raise ValueError("the number of attention heads must be a multiple of the number of key/value heads")
        if not 0 <= self.semantic_begin_id <= self.semantic_end_id < self.vocab_size:
            raise ValueError(
                f"semantic tokens {self.semantic_begin_id}..{self.semantic_end_id} are not inside the vocabulary "
                f"of {self.vocab_size}"
            )

    @classmethod
    def from_dict(cls, data: Mapping) -> DualARConfig:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known - TRAINING_ONLY_KEYS - SWITCHED_OFF_KEYS.keys())
        if unknown:
            raise ValueError(f"DualARConfig: unknown keys {unknown}")
        switched_on = [key for key, off in SWITCHED_OFF_KEYS.items() if data.get(key, off) != off]
        if data.get("is_reward_model") or switched_on:
            raise ValueError(f"DualARConfig: {switched_on or ['is_reward_model']} not supported")
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_json(cls, path: str | Path) -> DualARConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the model config {path}: {error}") from None
        return cls.from_dict(data)

    def slow_stack(self) -> StackConfig:
        return StackConfig(
            self.dim, self.n_layer, self.n_head, self.n_local_heads, self.head_dim, self.intermediate_size,
            self.attention_qkv_bias, self.attention_o_bias, self.attention_qk_norm, self.norm_eps,
        )

    def fast_stack(self) -> StackConfig:
        return StackConfig(
            self.fast_dim, self.n_fast_layer, self.fast_n_head, self.fast_n_local_heads, self.fast_head_dim,
            self.fast_intermediate_size, self.fast_attention_qkv_bias, self.fast_attention_o_bias,
            self.fast_attention_qk_norm, self.norm_eps,
        )


class RotaryTable(nn.Module):
    """cos and sin of `position * base^(-2j / head_dim)` for each position and pair j, rounded to bfloat16 like the
    official table (whatever dtype the model runs in), then applied in float32."""

    def __init__(self, positions: int, head_dim: int, base: float):
        super().__init__()
        # Built on the CPU even when the model is built on the meta device: it is not in the checkpoint.
        exponents = torch.arange(0, head_dim, 2, device="cpu")[: head_dim // 2].float() / head_dim
        angles = torch.outer(torch.arange(positions, device="cpu"), 1.0 / (base**exponents))
        rotation = torch.polar(torch.ones_like(angles), angles)
        table = torch.stack([rotation.real, rotation.imag], dim=-1).to(torch.bfloat16).float()
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """(len(positions), head_dim / 2, 2): the (cos, sin) of each pair."""
        return self.table[positions]


def apply_rotary(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate the interleaved pairs (x[2j], x[2j + 1]) of x (batch, length, heads, head_dim)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos = rotation[None, :, None, :, 0].float()
    sin = rotation[None, :, None, :, 1].float()
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imag * sin, imag * cos + real * sin], dim=-1)
    return rotated.flatten(3).type_as(x)


class KVCache(nn.Module):
    """Keys and values of one attention layer for `length` positions of a batch of one."""

    def __init__(self, n_local_heads: int, length: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.length = length
        shape = (1, n_local_heads, length, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, positions: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k.index_copy_(2, positions, k)
        self.v.index_copy_(2, positions, v)
        return self.k, self.v


class Attention(nn.Module):
    """Grouped-query attention with fused q/k/v, optional per-head qk-norm before RoPE, causal."""

    def __init__(self, stack: StackConfig):
        super().__init__()
        self.n_head, self.n_local_heads, self.head_dim = stack.n_head, stack.n_local_heads, stack.head_dim
        self.wqkv = nn.Linear(stack.dim, (stack.n_head + 2 * stack.n_local_heads) * stack.head_dim, bias=stack.qkv_bias)
        self.wo = nn.Linear(stack.n_head * stack.head_dim, stack.dim, bias=stack.o_bias)
        self.qk_norm = stack.qk_norm
        if stack.qk_norm:
            self.q_norm = RMSNorm(stack.head_dim, stack.norm_eps)
            self.k_norm = RMSNorm(stack.head_dim, stack.norm_eps)
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, rotation: Tensor, mask: Tensor, cache_positions: Tensor | None) -> Tensor:
        batch, length, _ = x.shape
        q_size, kv_size = self.n_head * self.head_dim, self.n_local_heads * self.head_dim
        q, k, v = self.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(batch, length, self.n_head, self.head_dim)
        k = k.view(batch, length, self.n_local_heads, self.head_dim)
        v = v.view(batch, length, self.n_local_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, rotation), apply_rotary(k, rotation)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache_positions is not None:
            k, v = self.kv_cache.update(cache_positions, k, v)
        # enable_gqa repeats each key/value head for its group of query heads (repeat_interleave order).
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_head != self.n_local_heads)
        return self.wo(y.transpose(1, 2).reshape(batch, length, q_size))


class FeedForward(nn.Module):
    def __init__(self, dim: int, intermediate_size: int):
        super().__init__()
        self.w1 = nn.Linear(dim, intermediate_size, bias=False)
        self.w3 = nn.Linear(dim, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, stack: StackConfig):
        super().__init__()
        self.attention = Attention(stack)
        self.feed_forward = FeedForward(stack.dim, stack.intermediate_size)
        self.attention_norm = RMSNorm(stack.dim, stack.norm_eps)
        self.ffn_norm = RMSNorm(stack.dim, stack.norm_eps)

    def forward(self, x: Tensor, rotation: Tensor, mask: Tensor, cache_positions: Tensor | None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), rotation, mask, cache_positions)
        return h + self.feed_forward(self.ffn_norm(h))


class DualARTransformer(nn.Module):
    """The slow and fast transformers. Each pass takes `positions=None` (the whole sequence from position 0, no
    cache) or the positions of its inputs (written to the KV caches, attending to everything cached before)."""

    def __init__(self, config: DualARConfig):
        super().__init__()
        self.config = config
        slow, fast = config.slow_stack(), config.fast_stack()
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.codebook_embeddings = nn.Embedding(config.codebook_size * config.num_codebooks, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(slow) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        if not config.tie_word_embeddings:
            self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.rotary = RotaryTable(config.max_seq_len, config.head_dim, config.rope_base)

        same_width = config.fast_dim == config.dim
        self.fast_project_in = nn.Identity() if same_width else nn.Linear(config.dim, config.fast_dim)
        self.fast_embeddings = nn.Embedding(config.codebook_size, config.fast_dim)
        self.fast_layers = nn.ModuleList(TransformerBlock(fast) for _ in range(config.n_fast_layer))
        self.fast_norm = RMSNorm(config.fast_dim, config.norm_eps)
        self.fast_output = nn.Linear(config.fast_dim, config.codebook_size, bias=False)
        # The fast transformer's positions restart at 0 for every frame.
        self.fast_rotary = RotaryTable(config.num_codebooks, config.fast_head_dim, config.rope_base)

    def embed(self, columns: Tensor) -> Tensor:
        """(batch, 1 + num_codebooks, length) columns -> (batch, length, dim), the input of the first layer."""
        config = self.config
        tokens, codes = columns[:, 0], columns[:, 1:]
        offsets = torch.arange(config.num_codebooks, device=columns.device)[:, None] * config.codebook_size
        codebook_sum = self.codebook_embeddings(codes + offsets).sum(dim=1)
        is_semantic = ((tokens >= config.semantic_begin_id) & (tokens <= config.semantic_end_id))[..., None]
        x = self.embeddings(tokens)
        x = torch.where(is_semantic, x + codebook_sum, x)
        if config.scale_codebook_embeddings:
            # The whole input of a semantic position is scaled, its token embedding included.
            x = torch.where(is_semantic, x / math.sqrt(config.num_codebooks + 1), x)
        return x

    def slow_hidden(self, columns: Tensor, positions: Tensor | None = None) -> Tensor:
        """The residual stream after the last slow layer (before the final norm), (batch, length, dim)."""
        return _run_layers(self.layers, self.rotary, self.embed(columns), positions)

    def slow_logits(self, hidden: Tensor) -> Tensor:
        normed = self.norm(hidden)
        if self.config.tie_word_embeddings:
            return F.linear(normed, self.embeddings.weight)
        return self.output(normed)

    def fast_hidden(self, inputs: Tensor, positions: Tensor | None = None) -> Tensor:
        """Fast-transformer pass over (batch, length, fast_dim) inputs: position 0 is `fast_project_in` of the
        frame's slow hidden state, position k >= 1 the fast embedding of code k - 1."""
        return _run_layers(self.fast_layers, self.fast_rotary, inputs, positions)

    def fast_logits(self, hidden: Tensor) -> Tensor:
        return self.fast_output(self.fast_norm(hidden))

    def setup_caches(self, length: int) -> None:
        """KV caches for at least `length` slow positions, on the model's device and in its dtype. They only grow,
        in powers of two (up to max_seq_len), so a compiled decode step sees few shapes; masked-out slots cost
        attention work, so they are not simply max_seq_len long."""
        if length > self.config.max_seq_len:
            raise ValueError(f"{length} positions do not fit in max_seq_len {self.config.max_seq_len}")
        weight = self.embeddings.weight
        cache = self.layers[0].attention.kv_cache
        placed = cache is not None and (cache.k.device, cache.k.dtype) == (weight.device, weight.dtype)
        if placed and cache.length >= length:
            return
        length = min(1 << (length - 1).bit_length(), self.config.max_seq_len)
        for blocks, stack, cache_length in (
            (self.layers, self.config.slow_stack(), length),
            (self.fast_layers, self.config.fast_stack(), self.config.num_codebooks),
        ):
            for block in blocks:
                block.attention.kv_cache = KVCache(
                    stack.n_local_heads, cache_length, stack.head_dim, weight.dtype, weight.device
                )


def _run_layers(blocks: nn.ModuleList, rotary: RotaryTable, x: Tensor, cache_positions: Tensor | None) -> Tensor:
    if cache_positions is None:
        positions = torch.arange(x.shape[1], device=x.device)
        keys = positions
    else:
        cache = blocks[0].attention.kv_cache
        if cache is None:
            raise RuntimeError("call setup_caches before a cached pass")
        if x.shape[0] != 1:
            raise ValueError("the KV caches hold a batch of one")
        positions = cache_positions
        keys = torch.arange(cache.length, device=x.device)
    mask = keys[None, :] <= positions[:, None]
    rotation = rotary(positions)
    for block in blocks:
        x = block(x, rotation, mask, cache_positions)
    return x


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The layouts the official loader accepts, in the current one: a training checkpoint's {"state_dict": ...}
    wrapper and "model." key prefix, audio-projector keys (dropped: this model has no audio input), and separate
    attention wq/wk/wv weights and biases (concatenated into wqkv)."""
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    converted = {key.removeprefix("model."): value for key, value in state_dict.items() if "audio_" not in key}
    split_prefixes = {key.removesuffix("wq.weight") for key in converted if key.endswith("attention.wq.weight")}
    for prefix in sorted(split_prefixes):
        for kind in ("weight", "bias"):
            names = [f"{prefix}{projection}.{kind}" for projection in ("wq", "wk", "wv")]
            if all(name in converted for name in names):
                converted[f"{prefix}wqkv.{kind}"] = torch.cat([converted.pop(name) for name in names])
    return converted


def official_dual_ar_state_dict(model: DualARTransformer) -> dict[str, Tensor]:
    """The weights under the official key names (the module names are the official ones), ready for model.pth."""
    return dict(model.state_dict())


def load_dual_ar(
    folder: Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tokenizer_folder: Path | None = None,
) -> DualARTransformer:
    """The model of an official folder: `config.json` and `model.pth` (or `model.safetensors`). The semantic token
    range is read from the tokenizer in `tokenizer_folder` (default: the same folder) when it has one."""
    folder = Path(folder)
    config = DualARConfig.from_json(folder / CONFIG_FILE)
    config = _with_tokenizer_semantic_range(config, Path(tokenizer_folder or folder))
    path, state_dict = _read_state_dict(folder)
    state_dict = convert_official_state_dict(state_dict)
    with torch.device("meta"):
        model = DualARTransformer(config)
    _check_keys(path, model, state_dict)
    model.load_state_dict(state_dict, assign=True)
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def _with_tokenizer_semantic_range(config: DualARConfig, tokenizer_folder: Path) -> DualARConfig:
    # A folder without `special_tokens.json` numbers its special tokens as the official loader does.
    if not (tokenizer_folder / BPE_FILE).is_file():
        log.info("no tokenizer in %s: semantic tokens %d..%d from the config", tokenizer_folder,
                 config.semantic_begin_id, config.semantic_end_id)
        return config
    tokenizer = FishTokenizer.from_folder(tokenizer_folder)
    return replace(config, semantic_begin_id=tokenizer.semantic_begin_id, semantic_end_id=tokenizer.semantic_end_id)


def _read_state_dict(folder: Path) -> tuple[Path, Mapping[str, Tensor]]:
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                return path, load_safetensors(path)
            weights = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(f"cannot read the weights {path}: {error}") from None
        if not isinstance(weights, Mapping):
            raise ValueError(f"{path} holds a {type(weights).__name__}, not a state dict")
        return path, weights
    raise ValueError(f"{folder} has none of the weight files {', '.join(WEIGHT_FILES)}")


def _check_keys(path: Path, model: DualARTransformer, state_dict: Mapping[str, Tensor]) -> None:
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    misshaped = [
        f"{key} {tuple(state_dict[key].shape)} (the config needs {expected[key]})"
        for key in sorted(expected.keys() & state_dict.keys())
        if tuple(state_dict[key].shape) != expected[key]
    ]
    found = (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
    problems = [f"{label} {_few(keys)}" for label, keys in found if keys]
    if problems:
        raise ValueError(f"{path} does not fit its config.json: " + "; ".join(problems))


def _few(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
