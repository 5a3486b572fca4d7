"""Residency without a GPU: admission, the step down after an out-of-memory and the end of a job, with a fake
streamer and a fake pipeline."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from pipelines.catalog import Catalog
from pipelines.errors import NotEnoughMemory
from pipelines.memory.planner import GIB, DenoiserShape, Workload
from pipelines.placement import AppliedPlacement, PlacementPlan
from pipelines.residency import ALLOCATOR_MARGIN_BYTES, StreamedDenoiser, WholeComponents

# FLUX as the planner sees it: 19 double blocks of 0.68 GB, 38 single blocks of 0.28 GB.
FLUX = DenoiserShape(tuple([680_000_000] * 19 + [283_000_000] * 38), 128_000_000, 3072, 12288)
# Wan2.1-14B: 40 blocks of 0.70 GB, 0.47 GB of trunk, width 5120, FFN 13824.
WAN14B = DenoiserShape(tuple([702_000_000] * 40), 465_000_000, 5120, 13824)


class FakeStreamer:
    def __init__(self):
        self.placed = []

    def place(self, resident, ring_slots=None):
        self.placed.append(frozenset(resident))


class FakeVae:
    use_tiling = False

    def enable_tiling(self):
        self.use_tiling = True


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
    assert components.step_down() and components.pipe.vae.use_tiling
    assert not components.step_down(), "a VAE that tiles already is no leaner step"
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


def test_a_streamed_denoiser_steps_down_a_quarter_of_its_resident_blocks_at_a_time(presets):
    residency, streamer = streamed(presets, 12)
    residency.admit(Workload(4096))
    before = len(residency.block_plan.resident)
    assert residency.step_down() and residency.components.pipe.vae.use_tiling
    residency.admit(Workload(4096))
    assert len(residency.block_plan.resident) == before - max(1, before // 4)
    assert len(streamer.placed) == 2
    steps = 1
    while residency.block_plan.resident:
        assert residency.step_down()
        residency.admit(Workload(4096))
        steps += 1
    assert steps <= 12, "a quarter at a time reaches none resident in a few steps"


def test_with_no_resident_block_the_step_down_streams_through_one_slot_then_says_nothing_leaner_exists(presets):
    # Wan2.1 14B at 832×480×81 on a small budget: every block streams already and the VAE tiles already.
    residency, streamer = streamed(presets, 7)
    residency.shape = WAN14B
    residency.components.pipe.vae.use_tiling = True
    residency.admit(Workload(21 * 30 * 52))
    assert not residency.block_plan.resident and residency.block_plan.ring_slots == 2
    assert residency.step_down(), "one slot fewer is leaner: 0.7 GB less on the device"
    residency.admit(Workload(21 * 30 * 52))
    assert residency.block_plan.ring_slots == 1 and residency.block_plan.ring_bytes == 702_000_000
    assert not residency.step_down(), "nothing leaner left: the manager refuses at once"


def test_the_denoiser_plans_with_what_the_gpu_has_free_at_job_start_minus_the_allocator_margin(presets):
    residency, _ = streamed(presets, 12)
    residency.free_vram = lambda: 5 * GIB  # the desktop and another program hold the rest of the card
    residency.admit(Workload(4096))
    plan = residency.block_plan
    assert plan.usable_bytes == 5 * GIB - ALLOCATOR_MARGIN_BYTES and plan.device_bytes <= plan.usable_bytes
    residency.free_vram = lambda: 40 * GIB  # a big card: the preset's budget caps the plan
    residency.admit(Workload(4096))
    assert residency.block_plan.usable_bytes == 12 * GIB
    residency.free_vram = lambda: int(1.5 * GIB)
    with pytest.raises(NotEnoughMemory, match=r"the GPU has 1\.5 GiB free now"):
        residency.admit(Workload(4096))


# -- the lean block forward, on for a job whose plan runs the blocks in token chunks ---------------------------------

def test_a_job_too_big_for_whole_blocks_runs_them_lean_and_the_blocks_come_back_after_the_job(presets):
    from pipelines.tiny import wan

    transformer = wan.tiny_transformer(1, image_to_video=False)
    preset = replace(presets["8gb-laptop"], vram_budget_gb=6.8, vram_reserve_gb=0.0)
    pipe = SimpleNamespace(vae=FakeVae(), transformer=transformer)
    components = WholeComponents("demo-wan", pipe, AppliedPlacement(PlacementPlan("cuda", "bfloat16", {}, False, 1, 0, 0, resident_bytes=0)))
    residency = StreamedDenoiser(Catalog().spec("demo-wan"), preset, components, FakeStreamer(), replace(WAN14B, lean=True))
    # 832×480×81: 32,760 tokens (+512 text): whole blocks need 7.0 GiB, more than the 5.7 GiB left.
    residency.admit(Workload(33_272))
    assert residency.block_plan.fits and residency.block_plan.chunk_tokens == 8192
    assert all("forward" in vars(block) for block in transformer.blocks)
    residency.after_job()
    assert not any("forward" in vars(block) for block in transformer.blocks)
    residency.admit(Workload(4096))
    assert residency.block_plan.chunk_tokens == 0 and not any("forward" in vars(block) for block in transformer.blocks)


def test_skyreels_v2_runs_its_whole_model_lean_for_a_chunked_job_and_gets_its_own_forward_back(presets):
    from pipelines.memory.planner import skyreels_lean_held
    from pipelines.tiny import skyreels_v2

    transformer = skyreels_v2.tiny_transformer(1)
    preset = replace(presets["8gb-laptop"], vram_budget_gb=6.8, vram_reserve_gb=0.0)
    pipe = SimpleNamespace(vae=FakeVae(), transformer=transformer)
    components = WholeComponents("demo-skyreels-v2", pipe, AppliedPlacement(PlacementPlan("cuda", "bfloat16", {}, False, 1, 0, 0, resident_bytes=0)))
    # SkyReels V2 DF 14B stored in int8 (0.35 GB blocks, a 0.70 GB scratch), as the catalog plans it.
    shape = DenoiserShape(tuple([354_000_000] * 40), 572_000_000, 5120, 13824, scratch_bytes=702_000_000, lean=True,
                          model_held_width=7 * 5120, lean_model_held=skyreels_lean_held(5120))
    residency = StreamedDenoiser(Catalog().spec("demo-skyreels-v2"), preset, components, FakeStreamer(), shape)
    residency.admit(Workload(51_512))  # 960×544×97 and the text
    assert residency.block_plan.fits and residency.block_plan.chunk_tokens == 8192
    assert "forward" in vars(transformer) and all("forward" in vars(block) for block in transformer.blocks)
    residency.after_job()
    assert "forward" not in vars(transformer) and not any("forward" in vars(block) for block in transformer.blocks)
