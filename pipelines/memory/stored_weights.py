"""How a big weight is stored in the memory engine, and turning it back into the compute dtype.

A Linear layer's 2-D weight may be kept in one of three `StoredAs` forms:
- "as shipped": in the compute dtype, untouched (what the engine always did; bf16 output stays bit for bit).
- "int8": weight-only, symmetric, one float32 scale per output channel (row): w ≈ q * scale, q in [-127, 127].
- "fp8": float8 e4m3fn with one float32 scale per row: w ≈ q * scale. Files shipped in fp8 give their bytes as
  they are, with the file's scale (`scale_weight`, one number per layer, repeated per row) or 1.

Both quantized forms take half the bytes of bf16 plus 4 bytes a row. The weight is turned back into the compute
dtype (`dequantize_into`) just before its block runs, into a destination the caller owns (on the GPU one scratch
buffer reused by every block), so only one block's weights ever exist expanded.

Quantizing works on row chunks in float32 (`CHUNK_ELEMENTS` at a time), so quantizing a tensor costs 4 MB beyond its
source and its stored bytes, whatever its size: the bf16 model never needs to exist whole.
Pure functions on tensors: no files, no devices chosen here.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import torch

INT8_MAX = 127
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
SCALE_DTYPE = torch.float32
# Row chunks of about 1 M elements (4 MB of float32 work space) while quantizing: small beside any block, and eight
# reading threads hold eight of them.
CHUNK_ELEMENTS = 1 << 20
# A row of zeros gets this scale instead of 0, so dequantizing never divides or multiplies by nothing useful.
_TINY = 1e-12


class StoredAs(str, Enum):
    SHIPPED = "as shipped"
    INT8 = "int8"
    FP8 = "fp8"


STORAGE_DTYPES = {StoredAs.INT8: torch.int8, StoredAs.FP8: FP8_DTYPE}


class StoredTensor(NamedTuple):
    """A quantized weight: `data` (int8 or fp8, the weight's shape) and `scale` (float32, one per row)."""

    data: torch.Tensor
    scale: torch.Tensor

    @property
    def stored(self) -> StoredAs:
        return StoredAs.INT8 if self.data.dtype == torch.int8 else StoredAs.FP8


def stored_as(value: str | StoredAs | None) -> StoredAs:
    """The storage named `value` ("as shipped", "int8", "fp8"; None is as shipped); ValueError for another."""
    return StoredAs.SHIPPED if value is None else StoredAs(value)


def quantizable(shape: torch.Size | tuple[int, ...]) -> bool:
    """Whether a weight of this shape can be stored quantized: a Linear's 2-D weight."""
    return len(shape) == 2


def stored_nbytes(shape: tuple[int, ...], stored: StoredAs) -> tuple[int, int]:
    """(data bytes, scale bytes) of a weight of `shape` stored as `stored` (quantized forms only)."""
    rows, columns = shape
    return rows * columns, rows * SCALE_DTYPE.itemsize


def empty_stored(shape: tuple[int, ...], stored: StoredAs) -> StoredTensor:
    """Fresh memory for a weight of `shape` stored as `stored`."""
    return StoredTensor(torch.empty(shape, dtype=STORAGE_DTYPES[stored]), torch.empty(shape[0], dtype=SCALE_DTYPE))


def _row_step(columns: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(columns, 1))


def quantize_into(source: torch.Tensor, destination: StoredTensor, work: torch.Tensor | None = None) -> None:
    """Quantize `source` (2-D, any float dtype) into `destination` (from `empty_stored`, same shape, same device),
    row chunk by row chunk: int8 with scale = max|row| / 127, fp8 with scale = max|row| / 448. `work`, a float32
    buffer of at least `work_elements(columns)` elements, is reused for the chunks (fresh memory otherwise): reading
    threads that keep their own stop the allocator from scattering freed chunks over RAM."""
    if source.shape != destination.data.shape:
        raise ValueError(f"source {tuple(source.shape)} does not match stored {tuple(destination.data.shape)}")
    rows, columns = source.shape
    integer = destination.data.dtype == torch.int8
    limit = INT8_MAX if integer else FP8_MAX
    step = _row_step(columns)
    if work is None:
        work = torch.empty(min(step, rows) * columns, dtype=torch.float32, device=source.device)
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        chunk = work[: (stop - start) * columns].view(stop - start, columns)
        chunk.copy_(source[start:stop])  # worked on in place: never the source itself
        # max |x| per row without a temporary the chunk's size
        scale = torch.maximum(chunk.amax(dim=1), chunk.amin(dim=1).neg_()).div_(limit).clamp_(min=_TINY)
        chunk.div_(scale.unsqueeze(1))
        if integer:
            chunk.round_().clamp_(-INT8_MAX, INT8_MAX)
        else:
            chunk.clamp_(-FP8_MAX, FP8_MAX)
        destination.data[start:stop].copy_(chunk)
        destination.scale[start:stop].copy_(scale)


def work_elements(columns: int) -> int:
    """The float32 elements `quantize_into` works on at once for rows of `columns` values."""
    return _row_step(columns) * columns


def quantize(source: torch.Tensor, stored: StoredAs) -> StoredTensor:
    """`source` (2-D) stored as `stored` in fresh memory on its device."""
    destination = StoredTensor(
        torch.empty(source.shape, dtype=STORAGE_DTYPES[stored], device=source.device),
        torch.empty(source.shape[0], dtype=SCALE_DTYPE, device=source.device),
    )
    quantize_into(source, destination)
    return destination


def scale_per_row(scale: torch.Tensor, rows: int) -> torch.Tensor:
    """A file's scale (a single number, as scaled fp8 files keep it, or one per row) as one float32 per row."""
    scale = scale.to(SCALE_DTYPE).reshape(-1)
    return scale.expand(rows).contiguous() if scale.numel() == 1 else scale


def dequantize_into(data: torch.Tensor, scale: torch.Tensor, destination: torch.Tensor) -> torch.Tensor:
    """`data * scale` (per row) written into `destination` (the weight's shape, the compute dtype, same device);
    returns `destination`. The product is taken in the compute dtype, in place: no temporary of the weight's size."""
    destination.copy_(data)
    destination.mul_(scale.to(destination.dtype).unsqueeze(1))
    return destination


def dequantize(stored: StoredTensor, dtype: torch.dtype) -> torch.Tensor:
    """A quantized weight in the compute dtype, in fresh memory."""
    return dequantize_into(stored.data, stored.scale, torch.empty(stored.data.shape, dtype=dtype, device=stored.data.device))
