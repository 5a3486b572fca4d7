"""The Fish Speech / OpenAudio S1-mini codec (fish-speech's "modded DAC"), for inference.

encode: 44.1 kHz audio -> causal conv encoder (512x fewer frames) -> two 2x downsampling stages -> windowed
transformer -> one semantic codebook, then `n_codebooks` residual codebooks on what it leaves.
decode: codes -> sum of the codebook projections -> windowed transformer -> two 2x upsampling stages -> causal
conv decoder (512x more samples) -> waveform in [-1, 1]. One code frame is `frame_length` (2048) samples.

Weights load from the official `codec.pth` (or a safetensors file with the same keys): weight norm is folded
into plain weights, and the persistent RoPE / mask buffers of the file are recomputed instead of read.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from pipelines.networks.fish_speech.codec_layers import (
    CausalConv1d,
    CausalConvTranspose1d,
    ConvNeXtBlock,
    ResidualUnit,
    Snake,
    VectorQuantizer,
    WindowLimitedTransformer,
)

# The reference hard-codes these: the encoder's transformer attends to the last 512 frames and uses
# 64-channel heads whatever `head_dim` says about the number of heads.
ENCODER_TRANSFORMER_WINDOW = 512
ENCODER_TRANSFORMER_HEAD_CHANNELS = 64
RESIDUAL_DILATIONS = (1, 3, 9)


# ----------------------------------------------------------------------------------------------- config


def _from_dict(cls, data: dict, **nested):
    """Builds a config dataclass from its JSON object; hydra's `_target_`-style keys are ignored."""
    names = {field.name for field in fields(cls)}
    unknown = sorted(key for key in data if key not in names and not key.startswith("_"))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in names}
    try:
        return cls(**{**values, **nested})
    except TypeError as error:
        raise ValueError(f"{cls.__name__}: {error}") from None


@dataclass(frozen=True)
class TransformerConfig:
    """fish-speech's `ModelArgs`. The dropout rates and `channels_first` only matter for training or are fixed
    here; they are kept so that configs keep the official structure."""

    block_size: int = 2048
    n_layer: int = 8
    n_head: int = 8
    dim: int = 512
    intermediate_size: int = 1536
    n_local_heads: int = -1
    head_dim: int = 64
    rope_base: float = 10000
    norm_eps: float = 1e-5
    dropout_rate: float = 0.1
    attn_dropout_rate: float = 0.1
    channels_first: bool = True

    def __post_init__(self):
        if self.n_local_heads not in (-1, self.n_head):
            raise ValueError("the codec's transformers have as many key/value heads as query heads")

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class WindowTransformerConfig:
    causal: bool
    window_size: int | None
    input_dim: int
    config: TransformerConfig

    def __post_init__(self):
        if not self.causal:
            raise ValueError("only the causal window-limited transformer is implemented (the official one is causal)")

    @classmethod
    def from_dict(cls, data: dict) -> WindowTransformerConfig:
        return _from_dict(cls, data, config=TransformerConfig.from_dict(data.get("config", {})))

    def build(self) -> WindowLimitedTransformer:
        c = self.config
        return WindowLimitedTransformer(
            self.input_dim, c.dim, c.n_layer, c.n_head, c.head_dim, c.intermediate_size, self.window_size,
            c.rope_base, c.norm_eps,
        )


@dataclass(frozen=True)
class QuantizerConfig:
    input_dim: int
    n_codebooks: int
    codebook_size: int
    codebook_dim: int
    quantizer_dropout: float
    downsample_factor: tuple[int, ...]
    semantic_codebook_size: int
    pre_module: WindowTransformerConfig
    post_module: WindowTransformerConfig

    @classmethod
    def from_dict(cls, data: dict) -> QuantizerConfig:
        return _from_dict(
            cls, data,
            pre_module=WindowTransformerConfig.from_dict(data.get("pre_module", {})),
            post_module=WindowTransformerConfig.from_dict(data.get("post_module", {})),
        )


@dataclass(frozen=True)
class CodecConfig:
    """Hyper-parameters in the structure of fish-speech's `modded_dac_vq.yaml`."""

    sample_rate: int
    encoder_dim: int
    encoder_rates: tuple[int, ...]
    decoder_dim: int
    decoder_rates: tuple[int, ...]
    encoder_transformer_layers: tuple[int, ...]
    # The reference accepts this but never builds the decoder transformers (they are commented out).
    decoder_transformer_layers: tuple[int, ...]
    causal: bool
    transformer_general_config: TransformerConfig
    quantizer: QuantizerConfig

    def __post_init__(self):
        if not self.causal:
            raise ValueError("only the causal codec is implemented (OpenAudio S1-mini's codec is causal)")
        if len(self.encoder_transformer_layers) != len(self.encoder_rates):
            raise ValueError("encoder_transformer_layers needs one entry per encoder rate")
        if self.quantizer.input_dim != self.latent_dim:
            raise ValueError(
                f"quantizer input_dim {self.quantizer.input_dim} must equal the encoder's latent size "
                f"encoder_dim * 2^len(encoder_rates) = {self.latent_dim}"
            )
        for module in (self.quantizer.pre_module, self.quantizer.post_module):
            if module.input_dim != self.latent_dim:
                raise ValueError(
                    f"quantizer transformers take {module.input_dim} channels, the encoder gives {self.latent_dim}"
                )

    @classmethod
    def from_dict(cls, data: dict) -> CodecConfig:
        return _from_dict(
            cls, data,
            transformer_general_config=TransformerConfig.from_dict(data.get("transformer_general_config", {})),
            quantizer=QuantizerConfig.from_dict(data.get("quantizer", {})),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> CodecConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read the codec config {path}: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def official(cls) -> CodecConfig:
        """The OpenAudio S1-mini codec (`modded_dac_vq.yaml` of fish-speech 0.1.0, which ships no config file)."""
        return cls.from_dict(OFFICIAL_CODEC_CONFIG)

    @property
    def latent_dim(self) -> int:
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop_length(self) -> int:
        """Audio samples per encoder output frame."""
        return math.prod(self.encoder_rates)

    @property
    def frame_length(self) -> int:
        """Audio samples per code frame."""
        return self.hop_length * math.prod(self.quantizer.downsample_factor)

    @property
    def num_codebooks(self) -> int:
        """Code rows per frame: the semantic codebook, then the residual ones."""
        return 1 + self.quantizer.n_codebooks


_OFFICIAL_QUANTIZER_TRANSFORMER = {
    "causal": True, "window_size": 128, "input_dim": 1024,
    "config": {
        "block_size": 4096, "n_layer": 8, "n_head": 16, "dim": 1024, "intermediate_size": 3072, "n_local_heads": -1,
        "head_dim": 64, "rope_base": 10000, "norm_eps": 1e-5, "dropout_rate": 0.1, "attn_dropout_rate": 0.1,
        "channels_first": True,
    },
}
OFFICIAL_CODEC_CONFIG = {
    "sample_rate": 44100,
    "encoder_dim": 64, "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1536, "decoder_rates": [8, 8, 4, 2],
    "encoder_transformer_layers": [0, 0, 0, 4], "decoder_transformer_layers": [4, 0, 0, 0],
    "causal": True,
    "transformer_general_config": {
        "block_size": 16384, "n_local_heads": -1, "head_dim": 64, "rope_base": 10000, "norm_eps": 1e-5,
        "dropout_rate": 0.1, "attn_dropout_rate": 0.1, "channels_first": True,
    },
    "quantizer": {
        "input_dim": 1024, "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8, "quantizer_dropout": 0.5,
        "downsample_factor": [2, 2], "semantic_codebook_size": 4096,
        "pre_module": _OFFICIAL_QUANTIZER_TRANSFORMER, "post_module": _OFFICIAL_QUANTIZER_TRANSFORMER,
    },
}


# ----------------------------------------------------------------------------------------------- model


class EncoderStage(nn.Module):
    """Three residual units at `dim / 2` channels, then a strided conv to `dim` channels (`stride`x fewer
    frames), then optionally a window-limited transformer."""

    def __init__(self, dim: int, stride: int, transformer: WindowLimitedTransformer | None):
        super().__init__()
        self.residual_units = nn.ModuleList(ResidualUnit(dim // 2, dilation) for dilation in RESIDUAL_DILATIONS)
        self.snake = Snake(dim // 2)
        self.downsample_conv = CausalConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride)
        self.transformer = transformer

    def official_names(self) -> dict[str, str]:
        units = {f"residual_units.{i}": f"block.{i}" for i in range(len(self.residual_units))}
        n = len(self.residual_units)
        return {**units, "snake": f"block.{n}", "downsample_conv": f"block.{n + 1}", "transformer": f"block.{n + 2}"}

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.residual_units:
            x = unit(x)
        x = self.downsample_conv(self.snake(x))
        return self.transformer(x) if self.transformer is not None else x


class Encoder(nn.Module):
    """(B, 1, samples) -> (B, latent_dim, samples / hop_length); channels double at every stage."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        dim = config.encoder_dim
        self.input_conv = CausalConv1d(1, dim, kernel_size=7)
        self.stages = nn.ModuleList()
        for stride, n_layer in zip(config.encoder_rates, config.encoder_transformer_layers):
            dim *= 2
            self.stages.append(EncoderStage(dim, stride, _encoder_transformer(config, dim, n_layer)))
        self.output_snake = Snake(dim)
        self.output_conv = CausalConv1d(dim, config.latent_dim, kernel_size=3)

    def official_names(self) -> dict[str, str]:
        n = len(self.stages)
        stages = {f"stages.{i}": f"block.{i + 1}" for i in range(n)}
        return {"input_conv": "block.0", **stages, "output_snake": f"block.{n + 1}", "output_conv": f"block.{n + 2}"}

    def forward(self, audio: Tensor) -> Tensor:
        x = self.input_conv(audio)
        for stage in self.stages:
            x = stage(x)
        return self.output_conv(self.output_snake(x))


def _encoder_transformer(config: CodecConfig, dim: int, n_layer: int) -> WindowLimitedTransformer | None:
    if n_layer == 0:
        return None
    general = config.transformer_general_config
    return WindowLimitedTransformer(
        input_dim=dim, dim=dim, n_layer=n_layer, n_head=dim // ENCODER_TRANSFORMER_HEAD_CHANNELS,
        head_dim=general.head_dim, hidden_dim=3 * dim, window_size=ENCODER_TRANSFORMER_WINDOW,
        rope_base=general.rope_base, norm_eps=general.norm_eps,
    )


class DecoderStage(nn.Module):
    """Snake, a transposed conv to `output_dim` channels (`stride`x more samples), three residual units."""

    def __init__(self, input_dim: int, output_dim: int, stride: int):
        super().__init__()
        self.snake = Snake(input_dim)
        self.upsample_conv = CausalConvTranspose1d(input_dim, output_dim, kernel_size=2 * stride, stride=stride)
        self.residual_units = nn.ModuleList(ResidualUnit(output_dim, dilation) for dilation in RESIDUAL_DILATIONS)

    def official_names(self) -> dict[str, str]:
        units = {f"residual_units.{i}": f"block.{i + 2}" for i in range(len(self.residual_units))}
        return {"snake": "block.0", "upsample_conv": "block.1", **units}

    def forward(self, x: Tensor) -> Tensor:
        x = self.upsample_conv(self.snake(x))
        for unit in self.residual_units:
            x = unit(x)
        return x


class Decoder(nn.Module):
    """(B, latent_dim, frames) -> (B, 1, frames * prod(decoder_rates)) in [-1, 1]; channels halve per stage."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        dim = config.decoder_dim
        self.input_conv = CausalConv1d(config.latent_dim, dim, kernel_size=7)
        self.stages = nn.ModuleList()
        for stride in config.decoder_rates:
            self.stages.append(DecoderStage(dim, dim // 2, stride))
            dim //= 2
        self.output_snake = Snake(dim)
        self.output_conv = CausalConv1d(dim, 1, kernel_size=7)

    def official_names(self) -> dict[str, str]:
        n = len(self.stages)
        stages = {f"stages.{i}": f"model.{i + 1}" for i in range(n)}
        return {"input_conv": "model.0", **stages, "output_snake": f"model.{n + 1}", "output_conv": f"model.{n + 2}"}

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_conv(x)
        for stage in self.stages:
            x = stage(x)
        return torch.tanh(self.output_conv(self.output_snake(x)))


class ResampleStage(nn.Module):
    """Changes the frame rate (a strided conv or a transposed conv), then a ConvNeXt block."""

    def __init__(self, resample: nn.Module, dim: int):
        super().__init__()
        self.resample = resample
        self.convnext = ConvNeXtBlock(dim)

    def official_names(self) -> dict[str, str]:
        return {"resample": "0", "convnext": "1"}

    def forward(self, x: Tensor) -> Tensor:
        return self.convnext(self.resample(x))


class DownsampleResidualQuantizer(nn.Module):
    """Between encoder and decoder: frame-rate reduction, transformers, and the semantic + residual codebooks."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        dim = config.input_dim
        self.semantic_codebook = VectorQuantizer(dim, config.semantic_codebook_size, config.codebook_dim)
        self.residual_codebooks = nn.ModuleList(
            VectorQuantizer(dim, config.codebook_size, config.codebook_dim) for _ in range(config.n_codebooks)
        )
        factors = config.downsample_factor
        self.downsample = nn.Sequential(
            *(ResampleStage(CausalConv1d(dim, dim, kernel_size=f, stride=f), dim) for f in factors)
        )
        self.upsample = nn.Sequential(
            *(ResampleStage(CausalConvTranspose1d(dim, dim, kernel_size=f, stride=f), dim) for f in reversed(factors))
        )
        self.pre_module = config.pre_module.build()
        self.post_module = config.post_module.build()

    def official_names(self) -> dict[str, str]:
        residual = {f"residual_codebooks.{i}": f"quantizer.quantizers.{i}" for i in range(len(self.residual_codebooks))}
        return {"semantic_codebook": "semantic_quantizer.quantizers.0", **residual}

    def encode(self, z: Tensor) -> Tensor:
        """Encoder output (B, D, T) -> codes (B, 1 + n_codebooks, T / prod(downsample_factor))."""
        return self.quantize(self.pre_module(self.downsample(z)))

    def quantize(self, z: Tensor) -> Tensor:
        semantic_codes, semantic_z = self.semantic_codebook.quantize(z)
        residual = z - semantic_z
        codes = [semantic_codes]
        for codebook in self.residual_codebooks:
            codes_i, z_i = codebook.quantize(residual)
            residual = residual - z_i
            codes.append(codes_i)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, 1 + n_codebooks, T) -> decoder input (B, D, T * prod(downsample_factor))."""
        return self.upsample(self.post_module(self.dequantize(codes)))

    def dequantize(self, codes: Tensor) -> Tensor:
        """Sum of every codebook's projected entry. Codes past a codebook's end are clamped to its last entry
        (the language model can emit them), as the reference does."""
        if codes.shape[1] != 1 + len(self.residual_codebooks):
            raise ValueError(f"expected {1 + len(self.residual_codebooks)} code rows, got {codes.shape[1]}")
        semantic = self.semantic_codebook.dequantize(codes[:, 0].clamp(max=self.semantic_codebook.codebook_size - 1))
        residual = 0.0
        for i, codebook in enumerate(self.residual_codebooks):
            residual = residual + codebook.dequantize(codes[:, i + 1].clamp(max=codebook.codebook_size - 1))
        return semantic + residual


class FishCodec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.encoder = Encoder(config)
        self.quantizer = DownsampleResidualQuantizer(config.quantizer)
        self.decoder = Decoder(config)

    @torch.no_grad()
    def encode(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """audio (B, 1, samples) at `sample_rate` -> codes (B, num_codebooks, frames) and each item's frame count.

        The batch is zero-padded to whole code frames; `audio_lengths` are the items' true sample counts.
        """
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio of shape (batch, 1, samples), got {tuple(audio.shape)}")
        frame_length = self.config.frame_length
        weight = self.encoder.input_conv.conv.weight
        audio = nn.functional.pad(audio.to(weight.dtype), (0, -audio.shape[-1] % frame_length))
        codes = self.quantizer.encode(self.encoder(audio))
        code_lengths = (audio_lengths.long() + frame_length - 1) // frame_length
        return codes, code_lengths

    @torch.no_grad()
    def decode(self, codes: Tensor, feature_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """codes (B, num_codebooks, frames) -> waveform (B, 1, frames * frame_length) and each item's sample count."""
        waveform = self.decoder(self.quantizer.decode(codes.long()))
        return waveform, feature_lengths.long() * self.config.frame_length


# ----------------------------------------------------------------------------------------------- weights

# Buffers the reference saves with the weights; we compute them (see `rope_table`, `attention_mask`).
_COMPUTED_BUFFERS = (".freqs_cis", ".causal_mask")
_PARAMETRIZED = re.compile(r"^(.*)\.parametrizations\.weight\.original([01])$")
_LEGACY_WEIGHT_NORM = re.compile(r"^(.*)\.weight_([gv])$")
# Which official weights are stored weight-normed, and how (`torch.nn.utils.parametrizations.weight_norm`
# for the causal encoder/decoder convs, the older `weight_g`/`weight_v` form for the codebook projections).
_STORED_PARAMETRIZED = re.compile(r"^(encoder|decoder)\..*\.conv\.weight$")
_STORED_LEGACY = re.compile(r"^quantizer\..*quantizers\.\d+\.(in|out)_proj\.weight$")


def official_parameter_names(module: nn.Module) -> dict[str, str]:
    """Our parameter name -> the key of the official state dict (with weight norm folded into `weight`)."""
    names = {name: name for name, _ in module.named_parameters(recurse=False)}
    for child_name, child in module.named_children():
        for ours, theirs in official_parameter_names(child).items():
            names[f"{child_name}.{ours}"] = f"{child_name}.{theirs}"
    renames = module.official_names() if hasattr(module, "official_names") else {}
    return {ours: _rename_prefix(theirs, renames) for ours, theirs in names.items()}


def _rename_prefix(path: str, renames: dict[str, str]) -> str:
    for prefix in sorted(renames, key=len, reverse=True):
        if path.startswith(prefix + "."):
            return renames[prefix] + path[len(prefix):]
    return path


def fold_weight_norm(state_dict: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Replaces each weight-norm pair (magnitude g, direction v) by the weight g * v / ||v|| it stands for,
    the norm taken over all dimensions but the first."""
    folded, pairs = {}, {}
    for key, tensor in state_dict.items():
        match = _PARAMETRIZED.match(key) or _LEGACY_WEIGHT_NORM.match(key)
        if match is None:
            folded[key] = tensor
        else:
            part = "g" if match[2] in ("0", "g") else "v"
            pairs.setdefault(f"{match[1]}.weight", {})[part] = tensor
    for key, pair in pairs.items():
        if set(pair) != {"g", "v"}:
            raise ValueError(f"{source}: weight norm of {key} has only its {'magnitude' if 'g' in pair else 'direction'}")
        compute_dtype = torch.promote_types(pair["v"].dtype, torch.float32)
        v, g = pair["v"].to(compute_dtype), pair["g"].to(compute_dtype)
        # v * (g / ||v||), the reference's operation order, so the folded weight rounds the same way.
        folded[key] = v * (g / _weight_norm_magnitude(v).view(g.shape))
    return folded


def convert_official_state_dict(state_dict: dict[str, Tensor], codec: FishCodec, source: str) -> dict[str, Tensor]:
    """An official codec state dict (any accepted layout) -> our parameter names, checked against `codec`.

    Accepts fish-speech's checkpoint variants: a `{"state_dict": ...}` wrapper, `generator.`-prefixed keys
    (training checkpoints, whose discriminator keys are dropped), and both weight-norm storages.
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if any(key.startswith("generator.") for key in state_dict):
        state_dict = {key.removeprefix("generator."): v for key, v in state_dict.items() if key.startswith("generator.")}
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f"{source}: not a codec state dict (non-tensor entries such as {not_tensors[:3]})")
    state_dict = {k: v for k, v in fold_weight_norm(state_dict, source).items() if not k.endswith(_COMPUTED_BUFFERS)}

    ours_by_official = {theirs: ours for ours, theirs in official_parameter_names(codec).items()}
    missing = sorted(set(ours_by_official) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(ours_by_official))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the codec config: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    parameters = dict(codec.named_parameters())
    converted = {ours_by_official[key]: tensor for key, tensor in state_dict.items()}
    wrong_shapes = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(parameters[ours].shape)}"
        for key, ours in ours_by_official.items() if state_dict[key].shape != parameters[ours].shape
    ]
    if wrong_shapes:
        raise ValueError(f"{source} does not match the codec config: shapes differ for {wrong_shapes[:5]}")
    return converted


def official_codec_state_dict(codec: FishCodec) -> dict[str, Tensor]:
    """Our weights under the official keys and weight-norm storage (what `torch.save` needs to write a
    `codec.pth` that fish-speech and `load_codec` both read). The computed buffers are left out."""
    state = {}
    for ours, theirs in official_parameter_names(codec).items():
        weight = codec.get_parameter(ours).detach().clone()
        base = theirs.removesuffix(".weight")
        if _STORED_PARAMETRIZED.match(theirs):
            state[f"{base}.parametrizations.weight.original0"] = _weight_norm_magnitude(weight)
            state[f"{base}.parametrizations.weight.original1"] = weight
        elif _STORED_LEGACY.match(theirs):
            state[f"{base}.weight_g"] = _weight_norm_magnitude(weight)
            state[f"{base}.weight_v"] = weight
        else:
            state[theirs] = weight
    return state


def _weight_norm_magnitude(weight: Tensor) -> Tensor:
    """||w|| over all dimensions but the first, shaped (dim0, 1, ...) like weight norm's g."""
    norm = torch.linalg.vector_norm(weight.reshape(weight.shape[0], -1), dim=1)
    return norm.view(-1, *[1] * (weight.ndim - 1))


def read_state_dict(path: Path) -> dict:
    """The raw tensors of a `.safetensors` file, or of a torch checkpoint read without unpickling code."""
    if not path.is_file():
        raise FileNotFoundError(f"codec weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_safetensors(path)
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # every reader has its own error types for truncated or foreign files
        raise ValueError(f"cannot read codec weights from {path}: {error}") from error
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a codec state dict")
    return loaded


def load_codec(weights_path: Path, config: CodecConfig, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> FishCodec:
    """The codec with the weights of `weights_path` (official `codec.pth` or a safetensors file), in eval mode."""
    weights_path = Path(weights_path)
    with torch.device("meta"):
        codec = FishCodec(config)
    state = convert_official_state_dict(read_state_dict(weights_path), codec, str(weights_path))
    codec.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, strict=True, assign=True)
    return codec.requires_grad_(False).eval()
