"""Weights the CPU computes with, aligned as the memory engine aligns its own.

diffusers leaves a CPU weight that needs no dtype conversion as a view into the memory-mapped safetensors file,
wherever the file's header put it: in some files every tensor starts 8 bytes past a 64-byte boundary. MKL's
matrix products round differently when an operand is not 16-byte aligned (measured with torch 2.14's MKL 2024.2:
a 1×256 by 256×32 product changes in its last bit with the weight 4, 8 or 24 bytes past a 64-byte boundary, not
16, 32 or 48), so the same weights gave CPU results that depended on the file's byte layout and differed from the
memory engine's, whose arena and device slots keep every tensor 256-byte aligned. Copied into memory of our own
(torch's allocator aligns to 64 bytes), the misaligned weights make a CPU result depend on the weights alone.
"""

from __future__ import annotations

import torch

from pipelines.memory.block_streamer import set_buffer

CPU_ALIGNMENT = 64  # bytes: a cache line, and the widest vector (AVX-512) a CPU kernel loads


def _misaligned(tensor: torch.Tensor) -> bool:
    # Quantized weights (GGUF, torchao) are tensor subclasses, dequantized into fresh memory when used.
    return type(tensor) is torch.Tensor and tensor.device.type == "cpu" and tensor.data_ptr() % CPU_ALIGNMENT != 0


@torch.inference_mode(False)  # ordinary tensors, used later outside any inference block
def align_cpu_weights(module: torch.nn.Module) -> int:
    """Copy every CPU parameter and buffer of `module` that is not `CPU_ALIGNMENT`-aligned into a fresh
    tensor (shared parameters stay shared); returns the bytes copied."""
    copied = 0
    for parameter in module.parameters():
        if _misaligned(parameter.data):
            parameter.data = parameter.data.clone()
            copied += parameter.nbytes
    for name, buffer in list(module.named_buffers()):
        if _misaligned(buffer):
            set_buffer(module, name, buffer.clone())
            copied += buffer.nbytes
    return copied
