"""Building a denoiser whose blocks are placed by a `BlockStreamer`, reading each weight once.

The model is built on the meta device from its config (no memory), then every block tensor is read from
the safetensors file straight into the host arena and every other tensor into host memory; nothing reaches the
device before the denoiser's first forward of a job.

With int8 or fp8 storage (`stored_weights.py`) the blocks' Linear weights are quantized while reading, one tensor at a
time: each reading thread reads one tensor into a temporary of the file's dtype and writes its quantized bytes and
scale into the arena, so the model never exists whole in the compute dtype. Files shipped in fp8 (F8_E4M3 weights,
with or without a `scale_weight` per layer, as ComfyUI's "scaled fp8" files carry) are read as they are into fp8
storage, the file's scale becoming the per-row scale; read into another storage, their weights are scaled first.
Files in the original FLUX / Wan layouts are read the same way, each tensor from its rows of the file
(`original_layouts.LayoutWeights`): a fused `qkv` is never read whole.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from accelerate import init_empty_weights

from pipelines.memory.block_streamer import BlockStreamer, find_blocks, fresh_parameter, replace_parameter, set_buffer
from pipelines.memory.host_arena import HostArena
from pipelines.memory.original_layouts import LayoutWeights, scale_name
from pipelines.memory.stored_weights import StoredAs, StoredTensor, quantize_into, scale_per_row, work_elements
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


def read_real(weights: WeightsFile | LayoutWeights, name: str) -> torch.Tensor:
    """Tensor `name` as the values it stands for: an fp8 weight of a scaled file times its scale (in float32; the scale
    one number, or one per row, whatever the tensor's rank)."""
    tensor = weights.read(name)
    if tensor.dtype in FP8_FILE_DTYPES and scale_name(name) in weights:
        rows = tensor.shape[0] if tensor.dim() else 1
        scale = scale_per_row(weights.read(scale_name(name)), rows)
        return tensor.to(torch.float32).mul_(scale.view(tensor.shape[:1] + (1,) * (tensor.dim() - 1)) if tensor.dim() else scale.view(()))
    return tensor


class _Staging(threading.local):
    """Each reading thread's own buffers, grown to the largest tensor it reads and then reused: a fresh tensor per read
    left freed memory scattered over the allocator's per-thread arenas (a 505 MB bf16 model read into 260 MB of int8
    raised the peak RSS by 820 MB that way, by 560 MB with these buffers and 16 MB chunks)."""

    def __init__(self):
        self.bytes = torch.empty(0, dtype=torch.uint8)
        self.work = torch.empty(0, dtype=torch.float32)

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        if self.bytes.numel() < nbytes:
            self.bytes = torch.empty(nbytes, dtype=torch.uint8)
        return self.bytes[:nbytes].view(dtype).view(shape)

    def floats(self, elements: int) -> torch.Tensor:
        if self.work.numel() < elements:
            self.work = torch.empty(elements, dtype=torch.float32)
        return self.work


def _read_staged(weights: WeightsFile, name: str, staging: _Staging) -> torch.Tensor:
    """Tensor `name` in the file's dtype, in this thread's staging buffer (valid until its next read)."""
    location = weights.locations[name]
    tensor = staging.tensor(location.shape, location.dtype)
    weights.read_into(name, tensor)
    return tensor


def _store_from_file(weights: WeightsFile, name: str, destination: StoredTensor, staging: _Staging) -> None:
    if weights.locations[name].dtype == destination.data.dtype:
        # Shipped in the storage's own format: the bytes as they are, the file's scale (or none: 1) per row.
        weights.read_into(name, destination.data)
        rows = destination.data.shape[0]
        scale = weights.read(scale_name(name)) if scale_name(name) in weights else torch.ones(1)
        destination.scale.copy_(scale_per_row(scale, rows))
    elif weights.locations[name].dtype in FP8_FILE_DTYPES:
        quantize_into(read_real(weights, name), destination)
    else:
        # One tensor in the file's dtype at a time per reading thread: the only full-precision copy there is.
        columns = destination.data.shape[1]
        quantize_into(_read_staged(weights, name, staging), destination, staging.floats(work_elements(columns)))


def state_shapes(model_class, folder: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of `model_class`'s state dict (configured from `folder`), by diffusers' name, from a
    model built on the meta device (no memory)."""
    with init_empty_weights():
        model = model_class.from_config(model_class.load_config(folder))
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


@torch.inference_mode(False)
def read_state_dict(model_class, folder: Path, weights: WeightsFile | LayoutWeights, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict of a `model_class` (configured from `folder`) read from `weights` one tensor at a time, each as
    the values it stands for (a scaled fp8 weight times its scale) in the dtype the model keeps it in: for readers that
    need the whole model in RAM anyway (the CPU, NF4), never with a scale dropped."""
    with init_empty_weights():
        model = model_class.from_config(model_class.load_config(folder))
    dtype_for = dtype_rule(model, dtype)
    return {
        name: read_real(weights, name).to(dtype_for(name) if tensor.is_floating_point() else tensor.dtype)
        for name, tensor in model.state_dict().items()
    }


def _fill_from(weights: WeightsFile):
    staging = _Staging()

    def fill(name: str, destination: torch.Tensor | StoredTensor) -> None:
        if name not in weights:
            raise KeyError(f"{name} is missing from the weights file")
        if isinstance(destination, StoredTensor):
            _store_from_file(weights, name, destination, staging)
        elif weights.locations[name].dtype == destination.dtype:
            weights.read_into(name, destination)
        elif weights.locations[name].dtype in FP8_FILE_DTYPES:
            destination.copy_(read_real(weights, name))
        else:
            destination.copy_(_read_staged(weights, name, staging))

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
            replace_parameter(model, name, fresh_parameter(parameter, value))
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
    file, under diffusers' names: `original_layouts.open_layout`); the folder still gives the config. The weights file
    is closed when done."""
    config = model_class.load_config(folder)
    with init_empty_weights():
        model = model_class.from_config(config)
    weights = weights if weights is not None else WeightsFile(folder)
    try:
        streamer = stream_from_file(model, weights, device, dtype_rule(model, dtype), stored_rule(model, stored), arena, ring_slots=ring_slots)
    finally:
        weights.close()
    model.eval()
    return model, streamer


@torch.inference_mode(False)
def stream_from_file(
    model: torch.nn.Module, weights: WeightsFile, device: torch.device, dtype_for, stored_for, arena: HostArena,
    key=lambda name: name, ring_slots: int = 2,
) -> BlockStreamer:
    """Put `model` (built on the meta device) under a streamer, its tensors read from `weights` one at a time:
    `key(name)` is the file's name for the model's tensor `name` (a submodule's names under the whole model's)."""
    streamer = BlockStreamer(model, arena, device, dtype_for, ring_slots, stored_for=stored_for)
    fill = _fill_from(weights)
    streamer.fill_host(lambda name, destination: fill(key(name), destination))
    _place_trunk(model, torch.device("cpu"), dtype_for, lambda name: read_real(weights, key(name)), lambda name: key(name) in weights)
    streamer.hold_outside_blocks()
    return streamer


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
