"""The job plan from the catalog's sizes alone: tiers for given budgets, RAM plans, and the refusal that names them."""

from dataclasses import replace

import pytest

from pipelines.catalog import Catalog
from pipelines.errors import NotEnoughMemory
from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.memory.host_arena import pinned_chunk_sizes
from pipelines.memory.job_plan import denoiser_shape_from_catalog, plan_job

GB = 10**9
CATALOG = Catalog()


def test_every_catalog_model_has_a_plan_on_every_preset_whether_on_disk_or_not(presets):
    for spec in CATALOG.all():
        for preset in presets.values():
            plan = plan_job(spec, preset, 32 * GB)
            assert plan.components and plan.reason and plan.peak_ram_gb > 0


def test_block_sizes_come_from_the_catalogs_bytes():
    shape = denoiser_shape_from_catalog(CATALOG.spec("flux1-dev"))
    assert len(shape.block_bytes) == 57 and shape.block_bytes[0] > 2 * shape.block_bytes[-1]
    assert sum(shape.block_bytes) + shape.trunk_bytes == 23_800_000_000


def test_a_big_card_keeps_the_flux_transformer_mostly_resident_and_a_small_one_streams_it(presets):
    big = plan_job(CATALOG.spec("flux1-dev"), presets["24gb"], 64 * GB)
    small = plan_job(CATALOG.spec("flux1-dev"), presets["8gb-laptop"], 96 * GB)
    assert big.components[0].name == "transformer" and "pinned arena" in big.components[0].tier
    assert big.streamed_gb_per_step < small.streamed_gb_per_step
    assert small.peak_vram_gb <= 8 and small.fits
    # A lower bound from the laptop's PCIe 4.0 ×8 (13 GB/s).
    assert small.seconds_per_step_estimate == pytest.approx(small.streamed_gb_per_step / 13, abs=0.02)


def test_when_pinning_would_not_fit_the_arena_is_pageable_and_a_step_is_slower(presets):
    spec, preset = CATALOG.spec("flux1-dev"), presets["24gb"]
    shape = denoiser_shape_from_catalog(spec)
    pinned = plan_job(spec, preset, 64 * GB)
    # RAM between the pageable and the pinned arena (power-of-two chunks lock more than the weights).
    overhead = sum(pinned_chunk_sizes(list(shape.block_bytes))) - sum(shape.block_bytes)
    ram = int((pinned.peak_ram_gb * GB - overhead / 2) / 0.9)
    tight = plan_job(spec, preset, ram)
    assert pinned.pinned and not tight.pinned and tight.fits
    assert "pageable RAM" in tight.components[0].tier
    assert tight.seconds_per_step_estimate > pinned.seconds_per_step_estimate


def test_the_cpu_preset_keeps_everything_in_ram_in_float32(presets):
    plan = plan_job(CATALOG.spec("wan21-t2v-1.3b"), presets["cpu"], 64 * GB)
    assert {component.tier for component in plan.components} == {"RAM (CPU)"} and plan.peak_vram_gb == 0
    assert plan.seconds_per_step_estimate is None


def test_wan_14b_at_480p_does_not_fit_the_8gb_laptop_even_fully_streamed(presets):
    plan = plan_job(CATALOG.spec("wan21-t2v-14b"), presets["8gb-laptop"], 64 * GB, 832, 480, 81)
    assert not plan.fits and "7.04 GiB of GPU memory even with every block streamed" in plan.reason


def test_a_load_that_no_ram_plan_fits_is_refused_naming_the_numbers(demo_models_dir, presets):
    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["8gb-laptop"], ram_bytes=GB)
    with pytest.raises(NotEnoughMemory, match=r"needs 2\.0 GB of RAM .*this machine's 1 GB leaves 0\.9 GB"):
        with manager.use("demo-sd3"):
            pass
    assert manager.status().model_id is None
    roomy = ModelManager(ModelStore(demo_models_dir, offline=True), replace(presets["8gb-laptop"]), ram_bytes=32 * GB)
    with roomy.use("demo-sd3"):
        pass


def test_weights_on_disk_are_planned_by_what_the_loader_reads_not_by_the_catalogs_sizes(presets):
    """A smaller file than the catalog's (a demo model saved in SD3's real layout, a pruned fine-tune) fits where the
    full model would not."""
    spec, cpu = CATALOG.spec("sd3-medium"), presets["cpu"]
    assert not plan_job(spec, cpu, 24 * GB).ram_fits, "15.5 GB in float32 on a 24 GB machine"
    small = plan_job(spec, cpu, 24 * GB, bytes_on_disk=2 * GB)
    assert small.ram_fits and small.peak_ram_gb < plan_job(spec, cpu, 24 * GB).peak_ram_gb
