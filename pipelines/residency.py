"""Where a loaded model's weights live from job to job: one small interface, two ways.

- `WholeComponents`: every component placed whole by the preset (`placement.py`): resident for the job, or
  visiting the device when used. The components were sized against the preset at load, so any job is admitted.
- `StreamedDenoiser`: the denoiser's blocks placed by the memory engine (`memory/`) for each job's size, the other
  components as above. A job is admitted with a block plan that fits, or refused before anything runs.

After an out-of-memory both step down one notch, when a leaner one exists: the streamed denoiser lets a quarter of
its resident blocks stream, or, with none resident, streams through one ring slot instead of two (copies then no
longer overlap compute: slower, 0.7 GB less for Wan2.1 14B); the VAE tiles when it did not already. `step_down`
says False when nothing changed, and the manager then refuses at once instead of running the same plan again.

The streamed denoiser's budget is the preset's, capped at job start by what the device really has free minus
`ALLOCATOR_MARGIN_BYTES`: the caching allocator holds more than the plan's allocated bytes.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

import torch

from pipelines.catalog import ModelSpec, family_spec
from pipelines.errors import NotEnoughMemory
from pipelines.loading.loaders import ReadPipeline
from pipelines.memory.block_streamer import BlockStreamer
from pipelines.memory.encoder_streaming import EncoderStreamer
from pipelines.memory.chunked_blocks import LeanSettings, lean_blocks, lean_capable
from pipelines.memory.planner import ALLOCATOR_MARGIN_BYTES, MIN_RING_SLOTS, BlockPlan, DenoiserShape, Workload, denoiser_shape, plan_blocks
from pipelines.placement import AppliedPlacement, Placement, PlacementPlan, apply_placement, measure_component, plan_placement
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3
# A function telling the device memory free to this process now (None off CUDA): `hardware.free_vram_bytes`.
FreeVram = Callable[[], "int | None"]


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
        """One notch leaner after an out-of-memory; False when no leaner plan exists."""

    def after_job(self) -> None:
        """Send visiting weights back to RAM."""


@dataclass
class WholeComponents:
    model_id: str
    pipe: object
    applied: AppliedPlacement
    block_plan: BlockPlan | None = None

    @property
    def plan(self) -> PlacementPlan:
        return self.applied.plan

    def admit(self, workload: Workload | None) -> None:
        pass

    def step_down(self) -> bool:
        if not _tile_vae(self.pipe):
            return False
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
    ring_slots: int = MIN_RING_SLOTS
    # Device bytes given up for good after an out-of-memory (the ring slot dropped: not handed to resident blocks).
    given_up_bytes: int = 0
    free_vram: FreeVram = lambda: None
    # Why the host arena is not pinned, if it is not (shown with the plan).
    arena_note: str = ""
    # The lean block forward, on for the job in progress when its plan runs the blocks in token chunks.
    lean: ExitStack = field(default_factory=ExitStack)

    @property
    def plan(self) -> PlacementPlan:
        return self.components.plan

    def usable_bytes(self) -> tuple[int, str]:
        """Device bytes the denoiser may plan with now, and what limits them."""
        # Visiting components have left the device by the time the denoiser runs; resident ones have not.
        usable = self.preset.usable_vram_bytes - self.plan.resident_bytes
        free = self.free_vram()
        if free is not None and free - ALLOCATOR_MARGIN_BYTES < usable:
            return max(free - ALLOCATOR_MARGIN_BYTES, 0), (
                f"the GPU has {free / GIB:.1f} GiB free now, less {ALLOCATOR_MARGIN_BYTES / GIB:.1f} GiB the allocator "
                "needs beside the plan"
            )
        return usable, f"the {self.preset.label} preset allows {usable / GIB:.1f} GiB"

    def admit(self, workload: Workload | None) -> None:
        workload = workload or _default_workload(self.spec)
        usable, limit = self.usable_bytes()
        plan = plan_blocks(self.shape, workload, usable - self.given_up_bytes, ring_slots=self.ring_slots, demote=self.demoted)
        if not plan.fits:
            raise NotEnoughMemory(
                f"{self.spec.name} at this size needs {plan.device_bytes / GIB:.1f} GiB of GPU memory even with every "
                f"block streamed ({plan.activation_bytes / GIB:.1f} GiB of it for activations); {limit}. "
                "Use a smaller size or batch."
            )
        if self.arena_note:
            plan = replace(plan, notes=plan.notes + (self.arena_note,))
        applied = self.block_plan
        if applied is None or (applied.resident, applied.ring_slots) != (plan.resident, plan.ring_slots):
            self.streamer.place(set(plan.resident), ring_slots=max(plan.ring_slots, 1))
        self.block_plan = plan
        self.lean.close()
        if plan.chunk_tokens:
            settings = LeanSettings(plan.chunk_tokens, hints_on_host=bool(plan.host_bytes))
            self.lean.enter_context(lean_blocks(self.components.pipe.transformer, settings))

    def step_down(self) -> bool:
        resident = len(self.block_plan.resident) if self.block_plan else 0
        if resident:
            self.demoted += max(1, resident // 4)
            change = f"{self.demoted} fewer resident blocks"
        elif self.ring_slots > 1:
            self.ring_slots = 1
            self.given_up_bytes += max(self.shape.block_bytes, default=0)
            change = "one ring slot (copies no longer overlap compute)"
        else:
            change = ""
        tiled = _tile_vae(self.components.pipe)
        if not change and not tiled:
            return False
        log.warning("out of memory with %s: %s, one more try", self.spec.id, ", ".join(filter(None, [change, "tiled VAE" if tiled else ""])))
        return True

    def after_job(self) -> None:
        self.lean.close()
        # The streamer is in the placement's chain of visitors: this offloads it too.
        self.components.after_job()


def place(read: ReadPipeline, spec: ModelSpec, preset: Preset, device: str, dtype_name: str, free_vram: FreeVram = lambda: None) -> Residency:
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
    applied = apply_placement(
        read.pipe, plan, list(read.call_order), denoiser=family.denoiser, streamer=read.streamer, held=read.held,
        held_visitor=EncoderStreamer,
    )
    components = WholeComponents(spec.id, read.pipe, applied)
    if read.streamer is None:
        return components
    streamer = read.streamer
    shape = denoiser_shape(
        read.pipe.transformer, streamer.block_bytes, dtype.itemsize, scratch_bytes=streamer.scratch_bytes,
        lean=lean_capable(read.pipe.transformer), trunk_bytes=streamer.trunk_bytes,
    )
    return StreamedDenoiser(
        spec, preset, components, read.streamer, shape, free_vram=free_vram, arena_note=read.streamer.arena.note,
    )


def _default_workload(spec: ModelSpec) -> Workload:
    family = family_spec(spec.family)
    defaults = spec.defaults
    return Workload(family.denoiser_tokens(defaults.width, defaults.height), family.denoiser_batch(defaults.guidance))


def _tile_vae(pipe) -> bool:
    """Tile the VAE; False when there is none, or it tiles already."""
    vae = getattr(pipe, "vae", None)
    if vae is None or getattr(vae, "use_tiling", False):
        return False
    vae.enable_tiling()
    return True
