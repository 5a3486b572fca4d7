"""Reading a diffusers component's safetensors straight into memory we own.

`safetensors.safe_open` maps the whole file and hands out fresh tensors: for a 28 GB transformer that is
a second copy in RAM while the weights are moved to their place. Here the header says where each tensor's
bytes are, and they are read with `readinto` into the destination (a pinned arena slice, or a staging
buffer on the way to the GPU), so the only copy on the host is the one we keep.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorLocation:
    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _read_header(path: Path) -> dict[str, TensorLocation]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    start = 8 + length
    locations = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        locations[name] = TensorLocation(path, _DTYPES[entry["dtype"]], tuple(entry["shape"]), start + begin, end - begin)
    return locations


class WeightsFile:
    """All tensors of one component folder (a single file, or shards listed in an index)."""

    def __init__(self, folder: Path, stem: str = "diffusion_pytorch_model"):
        folder = Path(folder)
        index = folder / f"{stem}.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            paths = [folder / shard for shard in shards]
        else:
            paths = [folder / f"{stem}.safetensors"]
        self.locations: dict[str, TensorLocation] = {}
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"missing weights file {path}")
            self.locations.update(_read_header(path))
        self._handles: dict[Path, int] = {}
        self._lock = threading.Lock()
        # Without positional reads (Windows), each reading thread seeks its own handle: one shared handle would
        # serialise the reads.
        self._own: dict[tuple[int, Path], int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.locations

    def read_into(self, name: str, destination: torch.Tensor) -> None:
        """Fill `destination` (a contiguous CPU tensor of the file's dtype and shape) with tensor `name`."""
        location = self.locations[name]
        if destination.dtype != location.dtype or tuple(destination.shape) != location.shape:
            raise ValueError(f"{name}: file has {location.dtype} {location.shape}, destination {destination.dtype} {tuple(destination.shape)}")
        view = memoryview(destination.reshape(-1).view(torch.uint8).numpy())  # reshaped first: a 0-d tensor has no byte view
        got = self._read_at(location.path, location.offset, view)
        if got != location.nbytes:
            raise OSError(f"{location.path} is truncated: {name} needs {location.nbytes} bytes, read {got}")

    def read_part(self, location: TensorLocation, destination: torch.Tensor, what: str) -> None:
        """Fill `destination` (contiguous CPU bytes, `location.nbytes` of them) with the bytes at `location`: a part of a
        tensor (some of its rows), as a file in another key layout splits a fused tensor."""
        view = memoryview(destination.numpy())
        got = self._read_at(location.path, location.offset, view)
        if got != location.nbytes:
            raise OSError(f"{location.path} is truncated: {what} needs {location.nbytes} bytes, read {got}")

    def read(self, name: str) -> torch.Tensor:
        location = self.locations[name]
        tensor = torch.empty(location.shape, dtype=location.dtype)
        self.read_into(name, tensor)
        return tensor

    def _read_at(self, path: Path, offset: int, view: memoryview) -> int:
        """Positional reads, so several threads can fill different tensors from one file at once."""
        if hasattr(os, "preadv"):
            fd = self._handle(self._handles, path, path)
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if got == 0:
                    break
                done += got
            return done
        # No positional read on this OS: a handle per thread, each seeking on its own.
        fd = self._handle(self._own, (threading.get_ident(), path), path)
        os.lseek(fd, offset, os.SEEK_SET)
        with open(fd, "rb", buffering=0, closefd=False) as handle:
            done = 0
            while done < len(view):
                got = handle.readinto(view[done:])
                if not got:
                    break
                done += got
            return done

    def _handle(self, handles: dict, key, path: Path) -> int:
        with self._lock:
            if key not in handles:
                handles[key] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            return handles[key]

    def close(self) -> None:
        for fd in [*self._handles.values(), *self._own.values()]:
            os.close(fd)
        self._handles.clear()
        self._own.clear()
