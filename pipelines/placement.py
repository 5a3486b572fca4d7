"""Where each pipeline component lives during a job, decided from the preset and applied with diffusers'
and accelerate's offloading. (The memory engine replaces the mechanism behind this interface.)

Placements, from fastest to leanest:
- resident: on the execution device for the whole job.
- offload: moved whole to the device when used, back to RAM when the next component runs.
- stream: kept in RAM, copied to the device block by block (diffusers group offload, block level).
- sequential: kept in RAM, copied layer by layer (group offload, leaf level).

A text encoder the memory engine holds (stored int8/fp8, or read from its memory-mapped file: `ReadPipeline.held`)
visits through the engine's visitor instead (`memory/encoder_streaming.EncoderStreamer`, handed in by the residency,
so that this room stays below the memory engine whose planner reads it): whole for offload, block by block for stream
and sequential. Its host weights are never replaced, so going back allocates nothing (accelerate would copy a mapped
encoder into RAM).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Mapping

import torch
from accelerate import cpu_offload_with_hook
from diffusers.hooks import apply_group_offloading

from pipelines.catalog import FamilySpec
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3


class Placement(str, Enum):
    RESIDENT = "resident"
    OFFLOAD = "offload"
    STREAM = "stream"
    SEQUENTIAL = "sequential"

    def leaner(self) -> "Placement | None":
        order = list(Placement)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


@dataclass(frozen=True)
class ComponentSize:
    total_bytes: int
    # Bytes of the largest repeated block (0 when the module has no block list) and of one leaf layer.
    largest_block_bytes: int
    largest_leaf_bytes: int


@dataclass(frozen=True)
class PlacementPlan:
    device: str
    dtype: str
    components: Mapping[str, Placement]
    vae_tiling: bool
    stream_blocks_per_group: int
    predicted_peak_vram_bytes: int
    usable_vram_bytes: int
    resident_bytes: int = 0

    def describe(self) -> str:
        parts = [f"{name}: {placement.value}" for name, placement in self.components.items()]
        return (
            f"{self.device} · {self.dtype} · "
            + ", ".join(parts)
            + f" · VAE tiling {'on' if self.vae_tiling else 'off'}"
            + f" · predicted weights on device ≤ {self.predicted_peak_vram_bytes / GIB:.2f} GiB"
        )


def measure_component(module: torch.nn.Module, dtype: torch.dtype) -> ComponentSize:
    element = torch.empty((), dtype=dtype).element_size()

    def stored(p: torch.Tensor) -> int:
        # torchao's quantized weights report the compute dtype; their bytes are in their parts (int8/fp8 data, scales).
        parts = getattr(p, "tensor_data_names", None)
        if parts:
            return sum(getattr(p, name).nbytes for name in parts)
        # One-byte weights (int8, fp8 stored by the memory engine) count as they are stored.
        return p.numel() * (element if p.is_floating_point() and p.element_size() > 1 else p.element_size())

    def size(m: torch.nn.Module) -> int:
        return sum(stored(p) for p in m.parameters())

    blocks = [child for child in module.modules() if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential))]
    largest_block = max((size(block) for blocks_ in blocks for block in blocks_), default=0)
    leaves = [m for m in module.modules() if not list(m.children())]
    largest_leaf = max((size(leaf) for leaf in leaves), default=0)
    return ComponentSize(size(module), largest_block, largest_leaf)


def _on_device_bytes(placement: Placement, size: ComponentSize, blocks_per_group: int) -> int:
    if placement in (Placement.RESIDENT, Placement.OFFLOAD):
        return size.total_bytes
    if placement is Placement.STREAM and size.largest_block_bytes:
        # The running group plus the one prefetched behind it.
        return 2 * blocks_per_group * size.largest_block_bytes
    return 2 * size.largest_leaf_bytes


def predicted_peak(components: Mapping[str, Placement], sizes: Mapping[str, ComponentSize], blocks_per_group: int) -> int:
    """Weights on the device at the worst moment: all resident ones, plus the largest visiting component."""
    resident = sum(sizes[n].total_bytes for n, p in components.items() if p is Placement.RESIDENT)
    visiting = [_on_device_bytes(p, sizes[n], blocks_per_group) for n, p in components.items() if p is not Placement.RESIDENT]
    return resident + max(visiting, default=0)


def plan_placement(
    family: FamilySpec, sizes: Mapping[str, ComponentSize], preset: Preset, device: str, dtype: str
) -> PlacementPlan:
    """Start from the preset's placement per role and step the largest component down until the weights fit."""
    if device == "cpu" and preset.device == "cpu":
        components = {name: Placement.RESIDENT for name in sizes}
        return PlacementPlan(device, dtype, components, False, preset.stream_blocks_per_group, 0, 0, 0)

    components = {name: Placement(preset.placement[family.component_roles[name].value]) for name in sizes}
    usable = preset.usable_vram_bytes
    blocks = preset.stream_blocks_per_group
    while predicted_peak(components, sizes, blocks) > usable:
        candidates = [n for n, p in components.items() if p.leaner() is not None]
        if not candidates:
            break
        heaviest = max(candidates, key=lambda n: _on_device_bytes(components[n], sizes[n], blocks))
        components[heaviest] = components[heaviest].leaner()
    resident = sum(sizes[n].total_bytes for n, p in components.items() if p is Placement.RESIDENT)
    return PlacementPlan(
        device, dtype, components, preset.vae_tiling, blocks, predicted_peak(components, sizes, blocks), usable, resident
    )


@dataclass
class AppliedPlacement:
    """The hooks a plan installed; `after_job` returns visiting components to RAM."""

    plan: PlacementPlan
    offload_hooks: list = field(default_factory=list)

    def after_job(self) -> None:
        for hook in self.offload_hooks:
            hook.offload()


# Makes a held component visit the device: (module, device, whole) -> a hook with `offload()`.
HeldVisitor = Callable[..., object]


def apply_placement(
    pipe, plan: PlacementPlan, order: list[str], denoiser: str | None = None, streamer=None, held: frozenset[str] = frozenset(),
    held_visitor: HeldVisitor | None = None,
) -> AppliedPlacement:
    """Install `plan` on a pipeline loaded on the CPU. `order` is the pipeline's component call order.

    With a `streamer`, the component called `denoiser` is placed by the memory engine instead: it joins
    the chain of visiting components, so whatever visited before it leaves when it starts, and it gives
    its device memory back when the next component (the VAE) starts. Components in `held` that are not resident
    visit through `held_visitor(module, device, whole=...)` in the same chain.
    """
    device = torch.device(plan.device)
    applied = AppliedPlacement(plan)
    previous_hook = None
    use_stream = device.type == "cuda"
    for name in order:
        if name == denoiser and streamer is not None:
            visitor = previous_hook
            if visitor is not None:
                getattr(pipe, name).register_forward_pre_hook(lambda module, args, visitor=visitor: visitor.offload())
            previous_hook = streamer
            applied.offload_hooks.append(streamer)
            continue
        module = getattr(pipe, name, None)
        placement = plan.components.get(name)
        if module is None or placement is None:
            continue
        if placement is Placement.RESIDENT:
            module.to(device)
        elif name in held:
            visitor = previous_hook
            if visitor is not None:
                module.register_forward_pre_hook(lambda module, args, visitor=visitor: visitor.offload())
            previous_hook = held_visitor(module, device, whole=placement is Placement.OFFLOAD)
            applied.offload_hooks.append(previous_hook)
        elif placement is Placement.OFFLOAD:
            _, previous_hook = cpu_offload_with_hook(module, device, prev_module_hook=previous_hook)
            applied.offload_hooks.append(previous_hook)
        else:
            level = "block_level" if placement is Placement.STREAM else "leaf_level"
            kwargs = dict(onload_device=device, offload_device=torch.device("cpu"), offload_type=level, use_stream=use_stream)
            if level == "block_level":
                kwargs["num_blocks_per_group"] = plan.stream_blocks_per_group
            if hasattr(module, "enable_group_offload"):
                module.enable_group_offload(**kwargs)
            else:
                apply_group_offloading(module, **kwargs)
    if plan.vae_tiling and getattr(pipe, "vae", None) is not None:
        pipe.vae.enable_tiling()
    return applied
