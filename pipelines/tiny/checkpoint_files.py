"""Safetensors files written tensor by tensor, never whole in RAM: full-size random-weight checkpoints for the
memory bench, and the fp8 single files people download for ComfyUI (`*_fp8_e4m3fn.safetensors`, and "scaled" fp8
with a `scale_weight` per layer and a `scaled_fp8` marker) made from a diffusers-layout file or written in the original
FLUX / Wan key layouts (`pipelines/memory/original_layouts.py`) for the tests.

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

from pipelines.memory.original_layouts import SCALED_FP8_MARKER, Layout, original_tensors
from pipelines.memory.weights_file import _DTYPES, WeightsFile

_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


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


# How a test file stores its fp8 weights: plain (`*_fp8_e4m3fn`), scaled with one `scale_weight` per layer (ComfyUI's
# and Kijai's "scaled" files), or scaled per output row.
PLAIN_FP8, SCALED_FP8, SCALED_PER_ROW = "fp8", "scaled fp8", "scaled fp8 per row"
_FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def _fp8_entries(name: str, shape: tuple[int, ...], make: Callable[[], torch.Tensor], how: str) -> list[TensorEntry]:
    """Weight `name` in float8 e4m3fn, with its `scale_weight` (its largest value / 448) when `how` scales it."""
    if how == PLAIN_FP8:
        return [TensorEntry(name, shape, torch.float8_e4m3fn, lambda: make().float().clamp(-_FP8_MAX, _FP8_MAX))]
    per_row = how == SCALED_PER_ROW
    held = {}  # the scale is written just before its weight: the weight is made once for both

    def scale():
        held["values"] = make().float()
        magnitude = held["values"].abs()
        largest = magnitude.amax(dim=tuple(range(1, magnitude.dim()))) if per_row else magnitude.amax().reshape(())
        held["scale"] = (largest / _FP8_MAX).clamp(min=1e-12)
        return held["scale"]

    def scaled():
        if "scale" not in held:
            scale()
        values, factor = held.pop("values"), held.pop("scale")
        return values.div_(factor.view(-1, *[1] * (values.dim() - 1)) if per_row else factor)

    return [
        TensorEntry(name.removesuffix("weight") + "scale_weight", (shape[0],) if per_row else (), torch.float32, scale),
        TensorEntry(name, shape, torch.float8_e4m3fn, scaled),
    ]


def _is_matrix_weight(name: str, shape: tuple[int, ...]) -> bool:
    return name.endswith("weight") and len(shape) == 2


def write_fp8_file(source: WeightsFile, path: Path, scaled: bool, fp8_names: Callable[[str], bool]) -> int:
    """The tensors of `source` in a ComfyUI-style fp8 single file: the weights `fp8_names` picks in float8 e4m3fn, the
    rest as they are. `scaled` adds a float32 `scale_weight` per fp8 weight (its largest value / 448) and the marker."""
    entries = []
    for name, location in source.locations.items():
        make = lambda name=name: source.read(name)
        if fp8_names(name):
            entries += _fp8_entries(name, location.shape, make, SCALED_FP8 if scaled else PLAIN_FP8)
        else:
            entries.append(TensorEntry(name, location.shape, location.dtype, make))
    if scaled:
        entries.append(TensorEntry(SCALED_FP8_MARKER, (0,), torch.float8_e4m3fn, lambda: torch.empty(0)))
    return write_safetensors(path, entries)


def write_original_layout_file(
    path: Path, layout: Layout, shapes: dict[str, tuple[int, ...]], read: Callable[[str], torch.Tensor],
    fp8: str | None = None, dtype: torch.dtype = torch.bfloat16,
) -> int:
    """A denoiser (its tensors by diffusers' name: `shapes`, `read`) written as a single file in `layout` (FLUX's or
    Wan's original keys: fused qkv, `linear1`, swapped halves), one file tensor at a time. `fp8` (PLAIN_FP8,
    SCALED_FP8, SCALED_PER_ROW) stores every 2-D weight in fp8 as those downloads do; `dtype` the other tensors."""
    entries = []
    for key, (shape, make) in original_tensors(layout, shapes, read).items():
        if fp8 is not None and _is_matrix_weight(key, shape):
            entries += _fp8_entries(key, shape, make, fp8)
        else:
            entries.append(TensorEntry(key, shape, dtype, make))
    if fp8 in (SCALED_FP8, SCALED_PER_ROW):
        entries.append(TensorEntry(SCALED_FP8_MARKER, (0,), torch.float8_e4m3fn, lambda: torch.empty(0)))
    return write_safetensors(path, entries)
