"""Attention backends: PyTorch's scaled dot-product attention by default; SageAttention and FlashAttention when their
packages are installed (detected, never required). Applied with diffusers' `set_attention_backend` on the denoiser.

Only denoisers whose attention goes through diffusers' dispatcher take a backend (FLUX, Wan, SkyReels V2, LTX-Video,
ACE-Step); SD3, HiDream, CogView4 and the SD1.5/SDXL UNets call PyTorch's attention themselves. There the preset's
choice falls back to PyTorch's (and the record says so); a job that names another backend is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.utils import is_flash_attn_3_available, is_flash_attn_available, is_sageattention_available

from pipelines.errors import InvalidRequest

DEFAULT_ATTENTION = "sdpa"


@dataclass(frozen=True)
class AttentionBackend:
    # diffusers' name (AttentionBackendName in diffusers/models/attention_dispatch.py).
    backend: str
    label: str
    # What to install when it is missing; empty for what comes with PyTorch.
    package: str = ""
    needs_cuda: bool = False
    installed: Callable[[], bool] = lambda: True


ATTENTION_BACKENDS: dict[str, AttentionBackend] = {
    # PyTorch picks its flash, memory-efficient or math kernel itself.
    "sdpa": AttentionBackend("native", "PyTorch scaled dot-product attention"),
    "sdpa-math": AttentionBackend("_native_math", "PyTorch's reference math kernel (slow; for checking results)"),
    "sage": AttentionBackend(
        "sage", "SageAttention (8-bit Q·K)", "sageattention (pip install sageattention)", True, is_sageattention_available
    ),
    "flash": AttentionBackend("flash", "FlashAttention 2", "flash-attn (pip install flash-attn)", True, is_flash_attn_available),
    "flash3": AttentionBackend(
        "_flash_3", "FlashAttention 3 (Hopper GPUs)", "FlashAttention 3 (flash_attn_interface, built from its hopper/ folder)",
        True, is_flash_attn_3_available,
    ),
}


def usable_attention(device: str) -> list[str]:
    """The backends this machine can run now, PyTorch's first: what the Speed section offers."""
    return [name for name, choice in ATTENTION_BACKENDS.items() if (device == "cuda" or not choice.needs_cuda) and choice.installed()]


def check_attention(name: str | None) -> str | None:
    """A request's backend name (None: the preset's); InvalidRequest for a name that is none of ours."""
    if name in (None, ""):
        return None
    if name not in ATTENTION_BACKENDS:
        raise InvalidRequest("attention", f"{name!r} is not an attention backend; choose one of {', '.join(ATTENTION_BACKENDS)}")
    return name


def _backends_set(denoiser: torch.nn.Module) -> set:
    """The backends the denoiser's attention processors hold now (None: diffusers' default); empty when none takes one."""
    return {
        module.processor._attention_backend for module in denoiser.modules()
        if hasattr(getattr(module, "processor", None), "_attention_backend")
    }


def apply_attention(denoiser: torch.nn.Module, requested: str | None, preset_choice: str, device: str) -> str:
    """Set the denoiser's attention backend for this job: the request's, else the preset's. Returns the name used."""
    name = requested or preset_choice
    choice = ATTENTION_BACKENDS[name]
    in_use = _backends_set(denoiser)
    if not in_use:
        if requested not in (None, DEFAULT_ATTENTION):
            raise InvalidRequest(
                "attention", f"{type(denoiser).__name__} computes attention with PyTorch's own kernel only; choose {DEFAULT_ATTENTION}"
            )
        return DEFAULT_ATTENTION
    if choice.needs_cuda and device != "cuda":
        raise InvalidRequest("attention", f"{choice.label} needs an NVIDIA GPU; on this device choose {DEFAULT_ATTENTION}")
    if not choice.installed():
        raise InvalidRequest("attention", f"{choice.label} is not installed: install {choice.package}, or choose {DEFAULT_ATTENTION}")
    # Setting it again would only log diffusers' "experimental" warning once more per job.
    if {getattr(backend, "value", backend) for backend in in_use} != {choice.backend}:
        denoiser.set_attention_backend(choice.backend)
    return name
