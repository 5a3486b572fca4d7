"""Text encoders read tensor by tensor into the storage the plan chose: as shipped, int8 or fp8.

transformers' `from_pretrained` followed by torchao holds the whole encoder in the compute dtype before quantizing
it (UMT5-XXL: 11.4 GB); here the model is built on the meta device from its config, then each tensor is read from
its source (a safetensors folder, or a GGUF file through `gguf_encoder.py`), and a Linear weight inside the
encoder's blocks is quantized at once (`stored_weights.quantize_into`): the RAM holds the stored encoder plus one
tensor in flight, never the bf16 encoder. Embeddings, norms, biases and everything outside the blocks stay in the
compute dtype.

A quantized Linear becomes a `StoredLinear`: its weight (`stored`, int8 or fp8) and per-row `scale` are ordinary
parameters, so the encoder moves to the GPU whole or block by block (`encoder_streaming.py`) like any module, and
its weight is expanded into the compute dtype only while its layer runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch
import transformers
from accelerate import init_empty_weights

from pipelines.memory.block_streamer import find_blocks, replace_parameter, set_buffer
from pipelines.memory.stored_weights import StoredAs, StoredTensor, dequantize, empty_stored, quantize_into
from pipelines.memory.weights_file import WeightsFile

log = logging.getLogger(__name__)


class TensorSource(Protocol):
    """Where an encoder's tensors come from, by their transformers names."""

    def __contains__(self, name: str) -> bool: ...

    def read(self, name: str) -> torch.Tensor: ...


class StoredLinear(torch.nn.Module):
    """A Linear whose weight is kept int8 or fp8 with one float32 scale per output row; computes in `compute_dtype`.

    It has no `weight` attribute on purpose: T5's feed-forward casts its input to `wo.weight.dtype` when that is
    not int8, which for an fp8 weight would run the layer on fp8 activations."""

    def __init__(self, in_features: int, out_features: int, stored: StoredTensor, bias: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.stored = torch.nn.Parameter(stored.data, requires_grad=False)
        self.scale = torch.nn.Parameter(stored.scale, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    @property
    def weight(self) -> None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = dequantize(StoredTensor(self.stored, self.scale), self.compute_dtype)
        return torch.nn.functional.linear(x.to(self.compute_dtype), weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, stored={self.stored.dtype}"


def encoder_class(folder: Path, class_name: str | None = None) -> type:
    """The transformers class of an encoder folder: `class_name`, or the one its config names."""
    if class_name is None:
        config = transformers.AutoConfig.from_pretrained(folder)
        class_name = config.architectures[0]
    return getattr(transformers, class_name)


def build_empty(model_class: type, folder: Path) -> torch.nn.Module:
    """The model of `folder`'s config on the meta device: no memory, every weight still to be read."""
    config = model_class.config_class.from_pretrained(folder)
    with init_empty_weights():
        model = model_class(config)
    # Tied weights share one parameter (T5's `shared` and `encoder.embed_tokens`): the file holds it once.
    model.tie_weights()
    return model.eval()


def dtype_rule(model: torch.nn.Module, dtype: torch.dtype) -> Callable[[str], torch.dtype]:
    """transformers' rule: modules named in `_keep_in_fp32_modules` stay float32 when computing in float16 (T5's `wo`)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or []) if dtype == torch.float16 else set()
    keep |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or [])

    def dtype_for(name: str) -> torch.dtype:
        return torch.float32 if keep & set(name.split(".")) else dtype

    return dtype_for


def _parameter_names(model: torch.nn.Module) -> dict[int, list[str]]:
    """Every name of every parameter, tied ones together (T5's `shared` is also `encoder.embed_tokens`)."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return names


def _first_in(source: TensorSource, names: Iterable[str]) -> str:
    names = list(names)
    for name in names:
        if name in source:
            return name
    raise KeyError(f"{names[0]} is missing from the encoder's weights")


def _linears_in_blocks(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    found = {}
    for prefix, block in find_blocks(model):
        for name, module in block.named_modules():
            if isinstance(module, torch.nn.Linear):
                found[f"{prefix}{name}"] = module
    return found


def _set_module(model: torch.nn.Module, dotted: str, module: torch.nn.Module) -> None:
    owner_path, _, name = dotted.rpartition(".")
    setattr(model.get_submodule(owner_path) if owner_path else model, name, module)


@torch.inference_mode(False)  # ordinary tensors: they are moved and rebound later, outside any inference block
def read_encoder(model: torch.nn.Module, source: TensorSource, dtype: torch.dtype, stored: StoredAs) -> torch.nn.Module:
    """Fill `model` (from `build_empty`) from `source`: Linear weights in its blocks stored as `stored`, every other
    tensor in the compute dtype (or float32 where transformers keeps it so). One tensor is read at a time."""
    dtype_for = dtype_rule(model, dtype)
    quantized = _linears_in_blocks(model) if stored is not StoredAs.SHIPPED else {}
    for name, linear in quantized.items():
        weight = source.read(_first_in(source, [f"{name}.weight"]))
        data = empty_stored(tuple(weight.shape), stored)
        quantize_into(weight, data)
        del weight
        bias = None
        if linear.bias is not None:
            bias = source.read(_first_in(source, [f"{name}.bias"])).to(dtype_for(f"{name}.bias"))
        _set_module(model, name, StoredLinear(linear.in_features, linear.out_features, data, bias, dtype_for(f"{name}.weight")))
    for names in _parameter_names(model).values():
        parameter = model.get_parameter(names[0])
        if not parameter.is_meta:
            continue  # a StoredLinear's, filled above
        value = source.read(_first_in(source, names))
        target = dtype_for(names[0]) if value.is_floating_point() else value.dtype
        new = torch.nn.Parameter(value.to(target), requires_grad=False)
        del value  # before the next read: one source tensor alive at a time
        for name in names:
            replace_parameter(model, name, new)
    for name, buffer in list(model.named_buffers()):
        if name in source:
            value = source.read(name)
            set_buffer(model, name, value.to(dtype_for(name) if value.is_floating_point() else buffer.dtype))
    return model


def weights_stem(folder: Path, variant: str | None = None) -> str:
    """The stem of a transformers folder's weights: `model`, or `model.<variant>` where that variant is there (SDXL's
    `model.fp16.safetensors`, as diffusers' `variant` selects)."""
    if variant and any((Path(folder) / f"model.{variant}.safetensors{index}").is_file() for index in ("", ".index.json")):
        return f"model.{variant}"
    return "model"


def read_encoder_folder(
    folder: Path, dtype: torch.dtype, stored: StoredAs, class_name: str | None = None, variant: str | None = None
) -> torch.nn.Module:
    """An encoder from a transformers folder (`model.safetensors`, or shards with their index) in `stored`."""
    folder = Path(folder)
    model = build_empty(encoder_class(folder, class_name), folder)
    weights = WeightsFile(folder, stem=weights_stem(folder, variant))
    try:
        read_encoder(model, weights, dtype, stored)
    finally:
        weights.close()
    log.info("%s read as %s (%.2f GB)", folder.name, stored.value, stored_bytes(model) / 1e9)
    return model


def stored_bytes(model: torch.nn.Module) -> int:
    """The bytes a model's weights take as stored (int8/fp8 data and scales included)."""
    return sum(parameter.nbytes for parameter in model.parameters())

