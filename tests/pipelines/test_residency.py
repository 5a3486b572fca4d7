"""Residency without a GPU: admission, the step down after an out-of-memory and the end of a job, with a fake
streamer and a fake pipeline."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from pipelines.catalog import Catalog
from pipelines.errors import NotEnoughMemory
from pipelines.memory.planner import GIB, DenoiserShape, Workload
from pipelines.placement import AppliedPlacement, PlacementPlan
from pipelines.residency import StreamedDenoiser, WholeComponents

# FLUX as the planner sees it: 19 double blocks of 0.68 GB, 38 single blocks of 0.28 GB.
FLUX = DenoiserShape(tuple([680_000_000] * 19 + [283_000_000] * 38), 128_000_000, 3072, 12288)


class FakeStreamer:
    def __init__(self):
        self.placed = []

    def place(self, resident, ring_slots=None):
        self.placed.append(frozenset(resident))


class FakeVae:
    tiled = False

    def enable_tiling(self):
        self.tiled = True


class FakeHook:
    offloads = 0

    def offload(self):
        self.offloads += 1


def whole(hooks=()) -> WholeComponents:
    plan = PlacementPlan("cuda", "bfloat16", {}, False, 1, 0, 0, resident_bytes=0)
    return WholeComponents("demo-flux", SimpleNamespace(vae=FakeVae()), AppliedPlacement(plan, list(hooks)))


def streamed(presets, usable_gib: float) -> tuple[StreamedDenoiser, FakeStreamer]:
    preset = replace(presets["8gb-laptop"], vram_budget_gb=usable_gib, vram_reserve_gb=0.0)
    streamer = FakeStreamer()
    return StreamedDenoiser(Catalog().spec("demo-flux"), preset, whole(), streamer, FLUX), streamer


def test_whole_components_admit_any_job_and_step_down_once_by_tiling_the_vae():
    components = whole()
    components.admit(Workload(10**9))
    assert components.step_down() and components.pipe.vae.tiled
    assert not components.step_down(), "one notch per loaded model"
    assert components.block_plan is None


def test_after_a_job_visiting_components_go_back_to_ram():
    hook = FakeHook()
    components = whole([hook])
    components.after_job()
    assert hook.offloads == 1


def test_a_streamed_denoiser_places_its_blocks_once_per_plan_and_refuses_what_cannot_fit(presets):
    residency, streamer = streamed(presets, 12)
    residency.admit(Workload(4096))
    residency.admit(Workload(4096))
    assert len(streamer.placed) == 1 and residency.block_plan.fits
    with pytest.raises(NotEnoughMemory, match=r"needs .* GiB of GPU memory even with every block streamed.*allows 12.0 GiB"):
        residency.admit(Workload(4096 * 64, batch=2))


def test_a_streamed_denoiser_steps_down_a_quarter_of_its_resident_blocks_once(presets):
    residency, streamer = streamed(presets, 12)
    residency.admit(Workload(4096))
    before = len(residency.block_plan.resident)
    assert residency.step_down() and residency.components.pipe.vae.tiled
    residency.admit(Workload(4096))
    assert len(residency.block_plan.resident) == before - max(1, before // 4)
    assert len(streamer.placed) == 2
    assert not residency.step_down()
