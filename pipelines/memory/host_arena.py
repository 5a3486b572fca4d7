"""One host buffer for streamed weights: pinned once, reused by every model that follows.

Pinning is slow (page-locking gigabytes costs seconds) and a second pinned copy of a model is what makes
other tools need 2× RAM; the arena is allocated on first need, grows only when a bigger model arrives,
and each load just lays its blocks out from offset 0 again.
"""

from __future__ import annotations

import logging
import mmap
import time

import torch

log = logging.getLogger(__name__)
PAGE = mmap.PAGESIZE
ALIGNMENT = 256  # bytes; keeps every tensor view aligned for DMA and vectorised kernels


def align(nbytes: int) -> int:
    return (nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class HostArena:
    def __init__(self, pinned: bool):
        self.pinned = pinned
        self._buffer: torch.Tensor | None = None
        self._raw: torch.Tensor | None = None
        self._used = 0

    @property
    def capacity_bytes(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel()

    @property
    def used_bytes(self) -> int:
        return self._used

    @torch.inference_mode(False)  # ordinary tensors: they are written to later, outside any inference block
    def start_model(self, total_bytes: int) -> None:
        """Make room for a model's `total_bytes` of streamed weights, reusing the buffer when it is big enough."""
        self._used = 0
        if self.capacity_bytes >= total_bytes:
            return
        self.free()  # the smaller buffer goes before the bigger one is taken
        started = time.monotonic()
        if self.pinned:
            # Not pin_memory=True: PyTorch's pinned allocator rounds each block up to a power of two, so a
            # 24 GB model would lock 32 GB. Registering our own allocation locks exactly what we use; only
            # whole pages inside it, so two arenas never register the same page.
            size = (total_bytes + PAGE - 1) // PAGE * PAGE
            self._raw = torch.empty(size + PAGE, dtype=torch.uint8)
            start = -self._raw.data_ptr() % PAGE
            self._buffer = self._raw[start : start + size]
            status = torch.cuda.cudart().cudaHostRegister(self._buffer.data_ptr(), size, 0)
            if int(status) != 0:
                self._buffer = self._raw = None
                raise MemoryError(f"could not pin {total_bytes / 1e9:.1f} GB of host memory (CUDA error {int(status)})")
        else:
            self._buffer = torch.empty(total_bytes, dtype=torch.uint8)
        log.info("host arena: %.2f GB %s in %.2f s", total_bytes / 1e9, "pinned" if self.pinned else "pageable", time.monotonic() - started)

    def take(self, nbytes: int) -> torch.Tensor:
        """The next `nbytes` (aligned) of the arena, as a uint8 view."""
        start, end = self._used, self._used + align(nbytes)
        if end > self.capacity_bytes:
            raise MemoryError(f"host arena overflow: need {end} bytes, have {self.capacity_bytes}")
        self._used = end
        return self._buffer[start : start + nbytes]

    def release(self) -> None:
        """Forget the current model's layout; the memory stays allocated (and pinned) for the next one."""
        self._used = 0

    def free(self) -> None:
        if self._buffer is not None and self.pinned:
            torch.cuda.cudart().cudaHostUnregister(self._buffer.data_ptr())
        self._buffer = self._raw = None
        self._used = 0

    def __del__(self):
        # Memory returned to malloc while still registered would make the next registration fail.
        self.free()
