"""Building a denoiser whose blocks are placed by a `BlockStreamer`, reading each weight once.

The model is built on the meta device from its config (no memory), then every block tensor is read from
the safetensors file straight into the host arena and every other tensor into host memory; nothing reaches the
device before the denoiser's first forward of a job.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import init_empty_weights

from pipelines.memory.block_streamer import BlockStreamer, find_blocks, replace_parameter, set_buffer
from pipelines.memory.host_arena import HostArena
from pipelines.memory.weights_file import WeightsFile


def dtype_rule(model: torch.nn.Module, dtype: torch.dtype):
    """The dtype a weight is kept in: the compute dtype, except the modules the model keeps in fp32
    (diffusers' `_keep_in_fp32_modules`, matched as diffusers matches them)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []

    def dtype_for(name: str) -> torch.dtype:
        return torch.float32 if any(part in name.split(".") for part in keep) else dtype

    return dtype_for


def _fill_from(weights: WeightsFile):
    def fill(name: str, destination: torch.Tensor) -> None:
        if name not in weights:
            raise KeyError(f"{name} is missing from the weights file")
        if weights.locations[name].dtype == destination.dtype:
            weights.read_into(name, destination)
        else:
            destination.copy_(weights.read(name))

    return fill


def _fill_from_module(model: torch.nn.Module):
    parameters = dict(model.named_parameters())

    def fill(name: str, destination: torch.Tensor) -> None:
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
def load_streamed(model_class, folder: Path, device: torch.device, dtype: torch.dtype, arena: HostArena, ring_slots: int = 2):
    """A `model_class` from a diffusers component folder, blocks in the arena; returns (model, streamer)."""
    config = model_class.load_config(folder)
    with init_empty_weights():
        model = model_class.from_config(config)
    dtype_for = dtype_rule(model, dtype)
    weights = WeightsFile(folder)
    try:
        streamer = BlockStreamer(model, arena, device, dtype_for, ring_slots)
        streamer.fill_host(_fill_from(weights))
        _place_trunk(model, torch.device("cpu"), dtype_for, weights.read, weights.__contains__)
        streamer.hold_outside_blocks()
    finally:
        weights.close()
    model.eval()
    return model, streamer


@torch.inference_mode(False)
def stream_loaded(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, arena: HostArena, ring_slots: int = 2):
    """Put an already loaded model (e.g. with a LoRA fused in) under a streamer; returns the streamer."""
    dtype_for = dtype_rule(model, dtype)
    parameters = dict(model.named_parameters())
    streamer = BlockStreamer(model, arena, device, dtype_for, ring_slots)
    streamer.fill_host(_fill_from_module(model))
    # Loaded by diffusers already: buffers are as they should be, only their device changes.
    _place_trunk(model, torch.device("cpu"), dtype_for, lambda name: parameters[name].data, lambda name: False)
    streamer.hold_outside_blocks()
    return streamer
