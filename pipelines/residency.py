"""Where a loaded model's weights live from job to job: one small interface, two ways.

- `WholeComponents`: every component placed whole by the preset (`placement.py`): resident for the job, or
  visiting the device when used. The components were sized against the preset at load, so any job is admitted.
- `StreamedDenoiser`: the denoiser's blocks placed by the memory engine (`memory/`) for each job's size, the other
  components as above. A job is admitted with a block plan that fits, or refused before anything runs.

Both step down one notch after an out-of-memory (the VAE tiles; the streamed denoiser also lets a quarter of its
resident blocks stream), once per loaded model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch

from pipelines.catalog import ModelSpec, family_spec
from pipelines.errors import NotEnoughMemory
from pipelines.loading.loaders import ReadPipeline
from pipelines.memory.block_streamer import BlockStreamer
from pipelines.memory.planner import BlockPlan, DenoiserShape, Workload, denoiser_shape, plan_blocks
from pipelines.placement import AppliedPlacement, Placement, PlacementPlan, apply_placement, measure_component, plan_placement
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3


class Residency(Protocol):
    """What the manager asks of a loaded model's placement."""

    @property
    def plan(self) -> PlacementPlan:
        """The components placed whole."""

    @property
    def block_plan(self) -> BlockPlan | None:
        """The denoiser's blocks for the last admitted job, when the memory engine holds them."""

    def admit(self, workload: Workload | None) -> None:
        """Make room for one job of this size (None: the model's default size); NotEnoughMemory before anything runs."""

    def step_down(self) -> bool:
        """One notch leaner after an out-of-memory; False when this model has stepped down already."""

    def after_job(self) -> None:
        """Send visiting weights back to RAM."""


@dataclass
class WholeComponents:
    model_id: str
    pipe: object
    applied: AppliedPlacement
    stepped_down: bool = False
    block_plan: BlockPlan | None = None

    @property
    def plan(self) -> PlacementPlan:
        return self.applied.plan

    def admit(self, workload: Workload | None) -> None:
        pass

    def step_down(self) -> bool:
        if self.stepped_down:
            return False
        self.stepped_down = True
        _tile_vae(self.pipe)
        log.warning("out of memory with %s: tiled VAE, one more try", self.model_id)
        return True

    def after_job(self) -> None:
        self.applied.after_job()


@dataclass
class StreamedDenoiser:
    spec: ModelSpec
    preset: Preset
    components: WholeComponents
    streamer: BlockStreamer
    shape: DenoiserShape
    block_plan: BlockPlan | None = None
    # Resident blocks given up for good after an out-of-memory.
    demoted: int = 0

    @property
    def plan(self) -> PlacementPlan:
        return self.components.plan

    def admit(self, workload: Workload | None) -> None:
        workload = workload or _default_workload(self.spec)
        # Visiting components have left the device by the time the denoiser runs; resident ones have not.
        usable = self.preset.usable_vram_bytes - self.plan.resident_bytes
        plan = plan_blocks(self.shape, workload, usable, demote=self.demoted)
        if not plan.fits:
            raise NotEnoughMemory(
                f"{self.spec.name} at this size needs {plan.device_bytes / GIB:.1f} GiB of GPU memory even with every "
                f"block streamed ({plan.activation_bytes / GIB:.1f} GiB of it for activations); the {self.preset.label} "
                f"preset allows {usable / GIB:.1f} GiB. Use a smaller size or batch."
            )
        applied = self.block_plan
        if applied is None or (applied.resident, applied.ring_slots) != (plan.resident, plan.ring_slots):
            self.streamer.place(set(plan.resident), ring_slots=max(plan.ring_slots, 1))
        self.block_plan = plan

    def step_down(self) -> bool:
        if self.demoted:
            return False
        resident = len(self.block_plan.resident) if self.block_plan else 0
        self.demoted = max(1, resident // 4)
        _tile_vae(self.components.pipe)
        log.warning("out of memory with %s: %d fewer resident blocks, tiled VAE, one more try", self.spec.id, self.demoted)
        return True

    def after_job(self) -> None:
        # The streamer is in the placement's chain of visitors: this offloads it too.
        self.components.after_job()


def place(read: ReadPipeline, spec: ModelSpec, preset: Preset, device: str, dtype_name: str) -> Residency:
    """Place a pipeline as read for `preset` on `device`: our own models stay where they read themselves, whole
    (they are small enough for every preset); diffusers pipelines as the preset's placement says, the denoiser
    by the memory engine when it holds it."""
    dtype = getattr(torch, dtype_name)
    apart = {"transformer"} if read.streamer is not None else set()
    sizes = {name: measure_component(getattr(read.pipe, name), dtype) for name in read.components if name not in apart}
    if read.on_device:
        resident_bytes = sum(size.total_bytes for size in sizes.values())
        plan = PlacementPlan(
            device=device, dtype=dtype_name, components={name: Placement.RESIDENT for name in sizes}, vae_tiling=False,
            stream_blocks_per_group=0, predicted_peak_vram_bytes=resident_bytes,
            usable_vram_bytes=preset.usable_vram_bytes, resident_bytes=resident_bytes,
        )
        return WholeComponents(spec.id, read.pipe, AppliedPlacement(plan))
    family = family_spec(spec.family)
    plan = plan_placement(family, sizes, preset, device, dtype_name)
    applied = apply_placement(read.pipe, plan, list(read.call_order), denoiser=family.denoiser, streamer=read.streamer)
    components = WholeComponents(spec.id, read.pipe, applied)
    if read.streamer is None:
        return components
    shape = denoiser_shape(read.pipe.transformer, read.streamer.block_bytes, dtype.itemsize)
    return StreamedDenoiser(spec, preset, components, read.streamer, shape)


def _default_workload(spec: ModelSpec) -> Workload:
    family = family_spec(spec.family)
    defaults = spec.defaults
    return Workload(family.denoiser_tokens(defaults.width, defaults.height), family.denoiser_batch(defaults.guidance))


def _tile_vae(pipe) -> None:
    if getattr(pipe, "vae", None) is not None:
        pipe.vae.enable_tiling()
