"""Building a denoiser whose blocks are placed by a `BlockStreamer`, reading each weight once.

The model is built on the meta device from its config (no memory), then every block tensor is read from
the safetensors file straight into the host arena and every other tensor into host memory; nothing reaches the
device before the denoiser's first forward of a job.

With int8 or fp8 storage (`stored_weights.py`) the blocks' Linear weights are quantized while reading, one tensor at a
time: each reading thread reads one tensor into a temporary of the file's dtype and writes its quantized bytes and
scale into the arena, so the model never exists whole in the compute dtype. Files shipped in fp8 (F8_E4M3 weights,
with or without a `scale_weight` per layer, as ComfyUI's "scaled fp8" files carry) are read as they are into fp8
storage, the file's scale becoming the per-row scale; read into another storage, their weights are scaled first.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import init_empty_weights

from pipelines.memory.block_streamer import BlockStreamer, find_blocks, replace_parameter, set_buffer
from pipelines.memory.host_arena import HostArena
from pipelines.memory.stored_weights import StoredAs, StoredTensor, quantize_into, scale_per_row
from pipelines.memory.weights_file import WeightsFile

FP8_FILE_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def dtype_rule(model: torch.nn.Module, dtype: torch.dtype):
    """The dtype a weight is kept in: the compute dtype, except the modules the model keeps in fp32
    (diffusers' `_keep_in_fp32_modules`, matched as diffusers matches them)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []

    def dtype_for(name: str) -> torch.dtype:
        return torch.float32 if any(part in name.split(".") for part in keep) else dtype

    return dtype_for


def stored_rule(model: torch.nn.Module, stored: StoredAs):
    """How a block's Linear weight is stored: `stored`, except in the modules the model keeps in fp32; None (the
    streamer's own layout, unchanged) for weights as shipped."""
    if stored is StoredAs.SHIPPED:
        return None
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    return lambda name: StoredAs.SHIPPED if any(part in name.split(".") for part in keep) else stored


def scale_name(name: str) -> str:
    """The key of a weight's scale in a scaled fp8 file (`x.weight` -> `x.scale_weight`)."""
    return f"{name.removesuffix('weight')}scale_weight"


def read_real(weights: WeightsFile, name: str) -> torch.Tensor:
    """Tensor `name` as the values it stands for: an fp8 weight of a scaled file times its scale (in float32)."""
    tensor = weights.read(name)
    if tensor.dtype in FP8_FILE_DTYPES and scale_name(name) in weights:
        return tensor.to(torch.float32).mul_(scale_per_row(weights.read(scale_name(name)), tensor.shape[0]).unsqueeze(1))
    return tensor


def _store_from_file(weights: WeightsFile, name: str, destination: StoredTensor) -> None:
    if weights.locations[name].dtype == destination.data.dtype:
        # Shipped in the storage's own format: the bytes as they are, the file's scale (or none: 1) per row.
        weights.read_into(name, destination.data)
        rows = destination.data.shape[0]
        scale = weights.read(scale_name(name)) if scale_name(name) in weights else torch.ones(1)
        destination.scale.copy_(scale_per_row(scale, rows))
    else:
        # One tensor in the file's dtype at a time per reading thread: the only full-precision copy there is.
        quantize_into(read_real(weights, name), destination)


def _fill_from(weights: WeightsFile):
    def fill(name: str, destination: torch.Tensor | StoredTensor) -> None:
        if name not in weights:
            raise KeyError(f"{name} is missing from the weights file")
        if isinstance(destination, StoredTensor):
            _store_from_file(weights, name, destination)
        elif weights.locations[name].dtype == destination.dtype:
            weights.read_into(name, destination)
        else:
            destination.copy_(read_real(weights, name))

    return fill


def _fill_from_module(model: torch.nn.Module):
    parameters = dict(model.named_parameters())

    def fill(name: str, destination: torch.Tensor | StoredTensor) -> None:
        if isinstance(destination, StoredTensor):
            quantize_into(parameters[name].data, destination)
        else:
            destination.copy_(parameters[name].data)

    return fill


def _place_trunk(model: torch.nn.Module, device: torch.device, dtype_for, read, saved) -> None:
    """Everything outside the block lists (embeddings, norms, projections) goes to `device`: the host, from where the
    streamer takes it to the GPU at the denoiser's first forward of each job.
    Buffers saved in the checkpoint are loaded and cast like weights, as diffusers does; the others
    (computed at construction, such as rotary tables) keep their dtype."""
    in_blocks = {id(p) for _, block in find_blocks(model) for p in block.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) not in in_blocks:
            value = read(name).to(device=device, dtype=dtype_for(name) if parameter.is_floating_point() else parameter.dtype)
            replace_parameter(model, name, torch.nn.Parameter(value, requires_grad=False))
    for name, buffer in model.named_buffers():
        if saved(name):
            buffer = read(name).to(dtype_for(name) if buffer.is_floating_point() else buffer.dtype)
        set_buffer(model, name, buffer.to(device))


@torch.inference_mode(False)  # weights are ordinary tensors wherever the load is called from
def load_streamed(
    model_class, folder: Path, device: torch.device, dtype: torch.dtype, arena: HostArena, ring_slots: int = 2,
    stored: StoredAs = StoredAs.SHIPPED, weights: WeightsFile | None = None,
):
    """A `model_class` from a diffusers component folder, blocks in the arena, their Linear weights stored as `stored`;
    returns (model, streamer). `weights` reads the tensors from elsewhere than the folder's safetensors (a single
    file with diffusers' keys); the folder still gives the config. The weights file is closed when done."""
    config = model_class.load_config(folder)
    with init_empty_weights():
        model = model_class.from_config(config)
    dtype_for = dtype_rule(model, dtype)
    weights = weights if weights is not None else WeightsFile(folder)
    try:
        streamer = BlockStreamer(model, arena, device, dtype_for, ring_slots, stored_for=stored_rule(model, stored))
        streamer.fill_host(_fill_from(weights))
        _place_trunk(model, torch.device("cpu"), dtype_for, lambda name: read_real(weights, name), weights.__contains__)
        streamer.hold_outside_blocks()
    finally:
        weights.close()
    model.eval()
    return model, streamer


@torch.inference_mode(False)
def stream_loaded(
    model: torch.nn.Module, device: torch.device, dtype: torch.dtype, arena: HostArena, ring_slots: int = 2,
    stored: StoredAs = StoredAs.SHIPPED,
):
    """Put an already loaded model (e.g. with a LoRA fused in) under a streamer; returns the streamer."""
    dtype_for = dtype_rule(model, dtype)
    parameters = dict(model.named_parameters())
    streamer = BlockStreamer(model, arena, device, dtype_for, ring_slots, stored_for=stored_rule(model, stored))
    streamer.fill_host(_fill_from_module(model))
    # Loaded by diffusers already: buffers are as they should be, only their device changes.
    _place_trunk(model, torch.device("cpu"), dtype_for, lambda name: parameters[name].data, lambda name: False)
    streamer.hold_outside_blocks()
    return streamer
