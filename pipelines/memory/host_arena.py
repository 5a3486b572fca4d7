"""One host store for streamed weights: pinned once, reused by every model that follows.

Pinning is slow (page-locking gigabytes costs seconds) and a second pinned copy of a model is what makes
other tools need 2× RAM; the arena is allocated on first need, grows only when a bigger model arrives,
and each load lays its blocks out again from the start.

PyTorch's pinned allocator rounds every allocation up to a power of two (one 24 GB buffer would lock
32 GB), and memory pinned any other way is not seen as pinned by `copy_`, which then blocks the host on
every copy. So the arena is a few pinned chunks whose sizes are exact powers of two, each a multiple of
the largest block, and blocks are laid out so that none straddles two chunks.

That allocator also keeps freed pinned blocks cached until its host cache is emptied: without
`release_pinned_memory()` an unloaded model's RAM stayed locked, and a growing arena stranded its old chunks.
Pinning can fail near the RAM limit (or where the OS limits locked memory); the arena then falls back to
pageable memory with a note, and the streamer's copies are synchronous from there on — slower, never a crash.
"""

from __future__ import annotations

import gc
import logging
import time

import torch

log = logging.getLogger(__name__)
ALIGNMENT = 256  # bytes; keeps every tensor view aligned for DMA and vectorised kernels


def align(nbytes: int) -> int:
    return (nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _layout_fits(chunk_sizes: list[int], block_sizes: list[int]) -> bool:
    chunk, used = 0, 0
    for size in block_sizes:
        size = align(size)
        while chunk < len(chunk_sizes) and used + size > chunk_sizes[chunk]:
            chunk, used = chunk + 1, 0
        if chunk == len(chunk_sizes):
            return False
        used += size
    return True


def pinned_chunk_sizes(block_sizes: list[int]) -> list[int]:
    """Power-of-two chunk sizes, largest first, that hold `block_sizes` laid out in order."""
    if not block_sizes:
        return []
    unit = _power_of_two_at_least(max(align(size) for size in block_sizes))
    units = -(-sum(align(size) for size in block_sizes) // unit)
    chunks = [unit << bit for bit in range(units.bit_length()) if units >> bit & 1][::-1]
    while not _layout_fits(chunks, block_sizes):
        chunks.append(unit)
    return chunks


def _allocate(nbytes: int, pinned: bool) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)


def release_pinned_memory() -> None:
    """Hand pinned host memory no tensor uses any more back to the OS (PyTorch's host allocator caches it)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.accelerator.empty_host_cache()


class HostArena:
    def __init__(self, pinned: bool):
        self.pinned = pinned
        self._chunks: list[torch.Tensor] = []
        self._chunk = 0
        self._offset = 0
        # Why the arena is pageable although pinned was asked for ("" while it is as asked).
        self.note = ""

    @property
    def capacity_bytes(self) -> int:
        return sum(chunk.numel() for chunk in self._chunks)

    @property
    def used_bytes(self) -> int:
        return sum(chunk.numel() for chunk in self._chunks[: self._chunk]) + self._offset

    @torch.inference_mode(False)  # ordinary tensors: they are written to later, outside any inference block
    def start_model(self, block_sizes: list[int]) -> None:
        """Make room for a model's blocks, in order, reusing the chunks already there when they suffice."""
        self._chunk = self._offset = 0
        if _layout_fits([chunk.numel() for chunk in self._chunks], block_sizes):
            return
        self.free()  # the smaller arena goes before the bigger one is taken, its pinned RAM back to the OS
        started = time.monotonic()
        if self.pinned:
            try:
                sizes = pinned_chunk_sizes(block_sizes)
                self._chunks = [_allocate(size, True) for size in sizes]
            except RuntimeError as error:  # cudaHostAlloc failed: RAM nearly full, or locked memory limited
                self.free()
                self.pinned = False
                self.note = (
                    f"Could not pin {sum(sizes) / 1e9:.1f} GB of RAM ({str(error).splitlines()[0][:120]}); the streamed "
                    "weights wait in ordinary RAM instead, and each step copies them more slowly."
                )
                log.warning("host arena: %s", self.note)
        if not self.pinned:
            sizes = [sum(align(size) for size in block_sizes)]
            self._chunks = [_allocate(sizes[0], False)]
        log.info(
            "host arena: %.2f GB in %d %s chunk(s) in %.2f s",
            sum(sizes) / 1e9, len(sizes), "pinned" if self.pinned else "pageable", time.monotonic() - started,
        )

    def take(self, nbytes: int) -> torch.Tensor:
        """The next `nbytes` of the arena as a uint8 view, never straddling two chunks."""
        size = align(nbytes)
        while self._chunk < len(self._chunks) and self._offset + size > self._chunks[self._chunk].numel():
            self._chunk, self._offset = self._chunk + 1, 0
        if self._chunk == len(self._chunks):
            raise MemoryError(f"host arena overflow: no room for {nbytes} bytes in {self.capacity_bytes} bytes")
        view = self._chunks[self._chunk][self._offset : self._offset + nbytes]
        self._offset += size
        return view

    def free(self) -> None:
        had_pinned = self.pinned and bool(self._chunks)
        self._chunks = []
        self._chunk = self._offset = 0
        if had_pinned:
            release_pinned_memory()
