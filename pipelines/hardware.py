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
    # CUDA compute capability (major, minor); None without a GPU. Decides bf16 (8.0+) and fp8 compute (8.9+).
    compute_capability: tuple[int, int] | None = None


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
        # Without including emulation: Turing (7.5) "supports" bf16 only by emulating it, slowly.
        bf16_supported=torch.cuda.is_bf16_supported(including_emulation=False),
        compute_capability=torch.cuda.get_device_capability(),
    )


# The first compute capabilities with bf16 tensor cores (Ampere) and with fp8 tensor cores (Ada, Hopper).
BF16_CAPABILITY = (8, 0)
FP8_CAPABILITY = (8, 9)


def compute_dtype_for(preset_dtype: str, device: str, capability: tuple[int, int] | None) -> str:
    """The dtype the denoiser computes in: float32 on the CPU; the preset's on a GPU, except bf16 on a GPU older than
    Ampere, which computes in float16 instead (same bytes, native speed)."""
    if device != "cuda":
        return "float32"
    if preset_dtype == "bfloat16" and (capability is None or capability < BF16_CAPABILITY):
        return "float16"
    return preset_dtype


def fp8_compute_problem(device: str, capability: tuple[int, int] | None) -> str | None:
    """Why fp8 compute cannot run here (None when it can): it needs fp8 tensor cores, compute capability 8.9+."""
    if device != "cuda" or capability is None:
        return "fp8 compute needs an NVIDIA GPU with fp8 tensor cores (RTX 40xx, L4, H100: compute capability 8.9+); this machine runs on the CPU"
    if capability < FP8_CAPABILITY:
        return (
            f"fp8 compute needs fp8 tensor cores (compute capability 8.9+: RTX 40xx, L4, H100); this GPU has "
            f"{capability[0]}.{capability[1]}"
        )
    return None


def process_rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def read_memory() -> MemoryReading:
    ram = psutil.virtual_memory()
    allocated = reserved = free = total = 0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        free, total = torch.cuda.mem_get_info()
    return MemoryReading(allocated, reserved, free, total, process_rss_bytes(), ram.available, ram.total)


def free_vram_bytes(device: str) -> int | None:
    """Device memory this process could allocate now: the driver's free memory plus what PyTorch holds cached but
    unused. None off CUDA. (Other programs' use and, on Windows, the desktop's are already taken out by the driver.)"""
    if device != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()


def release_freed_memory() -> None:
    """Give memory that Python no longer references back to the GPU driver and to the OS: the device cache, and the
    pinned host cache (PyTorch keeps freed pinned blocks until it is emptied; `empty_cache` leaves it alone)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.accelerator.empty_host_cache()
    # glibc keeps freed heap pages; without trimming, RSS stays high after a model is released.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
