"""Safetensors files written tensor by tensor, never whole in RAM: full-size random-weight checkpoints for the
memory bench, and the fp8 single files people download for ComfyUI (`*_fp8_e4m3fn.safetensors`, and "scaled" fp8
with a `scale_weight` per layer and a `scaled_fp8` marker) made from a diffusers-layout file for the tests.

The header is written first from the shapes alone, then each tensor's bytes are made and appended one at a time.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from accelerate import init_empty_weights

from pipelines.memory.weights_file import _DTYPES, WeightsFile

_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
# The marker ComfyUI's scaled fp8 files carry (an empty fp8 tensor), and the suffix of each weight's scale.
SCALED_FP8_MARKER = "scaled_fp8"


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[[], torch.Tensor]  # the tensor's values, made when its turn comes

    @property
    def nbytes(self) -> int:
        return int(torch.Size(self.shape).numel()) * self.dtype.itemsize


def write_safetensors(path: Path, entries: Iterable[TensorEntry], metadata: dict | None = None) -> int:
    """Write `entries` to `path` one tensor at a time; returns the bytes written."""
    entries = list(entries)
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for entry in entries:
        header[entry.name] = {"dtype": _NAMES[entry.dtype], "shape": list(entry.shape), "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for entry in entries:
            tensor = entry.make().to(entry.dtype).contiguous()
            if tuple(tensor.shape) != tuple(entry.shape):
                raise ValueError(f"{entry.name}: made {tuple(tensor.shape)}, header says {entry.shape}")
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
            del tensor
    return 8 + len(encoded) + offset


def model_shapes(model_class, config: dict) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, floating) of every parameter of a model built from `config` on the meta device (no memory)."""
    with init_empty_weights():
        model = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class._from_config(config)
    return [(name, tuple(p.shape), p.is_floating_point()) for name, p in model.named_parameters()]


def random_entries(shapes: list[tuple[str, tuple[int, ...], bool]], dtype: torch.dtype, seed: int, std: float = 0.02) -> list[TensorEntry]:
    """Random weights for `shapes` in `dtype`: normal(0, std) for matrices, 1 for norms' 1-D weights, small for biases."""
    entries = []
    for index, (name, shape, floating) in enumerate(shapes):
        def make(shape=shape, index=index, name=name):
            generator = torch.Generator().manual_seed(seed * 100_003 + index)
            if len(shape) == 1 and name.endswith("weight"):
                return torch.ones(shape)
            return torch.randn(shape, generator=generator).mul_(std)
        entries.append(TensorEntry(name, shape, dtype if floating else torch.int64, make))
    return entries


def write_random_checkpoint(model_class, config: dict, path: Path, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> int:
    """A full-size random-weight safetensors file for `model_class(config)`, written tensor by tensor."""
    return write_safetensors(path, random_entries(model_shapes(model_class, config), dtype, seed))


def write_fp8_file(source: WeightsFile, path: Path, scaled: bool, fp8_names: Callable[[str], bool]) -> int:
    """The tensors of `source` in a ComfyUI-style fp8 single file: the weights `fp8_names` picks in float8 e4m3fn, the
    rest as they are. `scaled` adds a float32 `scale_weight` per fp8 weight (its largest value / 448) and the marker."""
    entries = []
    for name, location in source.locations.items():
        if not fp8_names(name):
            entries.append(TensorEntry(name, location.shape, location.dtype, lambda name=name: source.read(name)))
            continue
        if scaled:
            def scale(name=name):
                return (source.read(name).float().abs().amax() / torch.finfo(torch.float8_e4m3fn).max).clamp(min=1e-12).reshape(())
            entries.append(TensorEntry(name.removesuffix("weight") + "scale_weight", (), torch.float32, scale))
            entries.append(TensorEntry(name, location.shape, torch.float8_e4m3fn, lambda name=name, scale=scale: source.read(name).float() / scale()))
        else:
            entries.append(TensorEntry(name, location.shape, torch.float8_e4m3fn, lambda name=name: source.read(name).float().clamp(-448, 448)))
    if scaled:
        entries.append(TensorEntry(SCALED_FP8_MARKER, (0,), torch.float8_e4m3fn, lambda: torch.empty(0)))
    return write_safetensors(path, entries)
