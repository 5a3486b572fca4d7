"""What the machine has and what is in use now. Probing happens only when these functions are called."""

from __future__ import annotations

import ctypes
import gc
import sys
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class Hardware:
    gpu_name: str | None
    vram_total_bytes: int
    ram_total_bytes: int
    bf16_supported: bool


@dataclass(frozen=True)
class MemoryReading:
    vram_allocated_bytes: int
    vram_reserved_bytes: int
    vram_free_bytes: int
    vram_total_bytes: int
    process_rss_bytes: int
    ram_available_bytes: int
    ram_total_bytes: int


def detect_hardware() -> Hardware:
    ram_total = psutil.virtual_memory().total
    if not torch.cuda.is_available():
        return Hardware(gpu_name=None, vram_total_bytes=0, ram_total_bytes=ram_total, bf16_supported=False)
    _, vram_total = torch.cuda.mem_get_info()
    return Hardware(
        gpu_name=torch.cuda.get_device_name(),
        vram_total_bytes=vram_total,
        ram_total_bytes=ram_total,
        bf16_supported=torch.cuda.is_bf16_supported(),
    )


def process_rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def read_memory() -> MemoryReading:
    ram = psutil.virtual_memory()
    allocated = reserved = free = total = 0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        free, total = torch.cuda.mem_get_info()
    return MemoryReading(allocated, reserved, free, total, process_rss_bytes(), ram.available, ram.total)


def release_freed_memory() -> None:
    """Give memory that Python no longer references back to the GPU driver and to the OS."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    # glibc keeps freed heap pages; without trimming, RSS stays high after a model is released.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
