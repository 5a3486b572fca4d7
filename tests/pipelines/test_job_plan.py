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


def test_wan_14b_at_480p_fits_the_8gb_laptop_with_its_blocks_run_in_token_chunks(presets):
    plan = plan_job(CATALOG.spec("wan21-t2v-14b"), presets["8gb-laptop"], 64 * GB, 832, 480, 81)
    assert plan.fits and plan.peak_vram_gb <= 6.8, plan.reason
    assert "blocks run in chunks of 8192 tokens" in plan.components[0].tier
    assert any(n.startswith("blocks run in token chunks of 8192 tokens") and "not measured on a GPU" in n for n in plan.notes)


def test_a_size_too_big_even_for_token_chunks_is_refused_naming_the_lean_plan(presets):
    plan = plan_job(CATALOG.spec("wan21-t2v-14b"), presets["8gb-laptop"], 64 * GB, 1920, 1088, 161)
    assert not plan.fits and "even with every block streamed and run in token chunks" in plan.reason


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


# -- the RAM plan: tiers and storages chosen against the machine ---------------------------------------------------

def _targets():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "plan_targets.py"
    module_spec = importlib.util.spec_from_file_location("plan_targets", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


TARGETS = _targets()
# At their default sizes one block's activations need more GPU memory than an 8 GB card has: these fit because their
# blocks run in token chunks (memory/chunked_blocks.py); SkyReels V2 runs its whole model lean then, its modulation held
# per latent frame instead of per token.
LEAN = {"wan21-t2v-14b", "wan21-i2v-14b-480p", "wan21-vace-14b", "hunyuanvideo-t2v", "skyreels-v2-df-14b-540p"}


@pytest.mark.parametrize("ram_gb, model", [(32, m) for m in TARGETS.TARGETS_32GB] + [(16, m) for m in TARGETS.TARGETS_16GB])
def test_every_target_model_has_a_plan_inside_the_reference_laptops_ram_and_vram(presets, ram_gb, model):
    plan = plan_job(CATALOG.spec(model), presets["8gb-laptop"], ram_gb * GB)
    assert plan.ram_fits and plan.peak_ram_gb <= 0.9 * ram_gb, plan.ram_reason
    assert plan.fits and plan.peak_vram_gb <= 8 and plan.reason.startswith("fits"), plan.reason
    assert ("blocks run in chunks" in plan.components[0].tier) == (model in LEAN), plan.components[0].tier


def test_skyreels_v2_df_14b_fits_at_its_default_size_because_its_lean_model_holds_its_modulation_per_frame(presets):
    """960×544×97 on the 8 GB laptop: 8.81 GiB when its modulation was counted per token (7 widths), inside the card now."""
    plan = plan_job(CATALOG.spec("skyreels-v2-df-14b-540p"), presets["8gb-laptop"], 32 * GB)
    assert plan.fits and plan.peak_vram_gb == pytest.approx(6.48, abs=0.02)
    assert any(note.startswith("blocks run in token chunks of 8192 tokens") for note in plan.notes), plan.notes


def test_vaces_hints_wait_in_host_ram_when_its_blocks_run_lean_and_the_ram_plan_counts_them(presets):
    spec, laptop = CATALOG.spec("wan21-vace-14b"), presets["8gb-laptop"]
    plan = plan_job(spec, laptop, 32 * GB)
    # 8 hints of 76,112 tokens × 5,120 × 2 bytes.
    hints = 8 * 76_112 * 5120 * 2 / GB
    assert plan.fits and any(f"VACE's hints wait in host RAM ({hints:.1f} GB)" in note for note in plan.notes)
    small = plan_job(spec, laptop, 32 * GB, 480, 272, 17)
    assert plan.components[0].ram_gb == pytest.approx(small.components[0].ram_gb + hints, abs=0.02)


def test_the_documented_targets_table_is_what_plan_gives(presets):
    text = (TARGETS.DOC).read_text()
    assert TARGETS.markdown() in text, "run `python bench/plan_targets.py --write`"


def test_flux_falls_from_pinned_as_shipped_to_int8_as_the_ram_shrinks_and_says_what_it_costs(presets):
    spec, laptop = CATALOG.spec("flux1-dev"), presets["8gb-laptop"]
    roomy, middling, small = (plan_job(spec, laptop, ram * GB) for ram in (64, 30, 16))
    tiers = [{c.name: (c.tier.split(",")[0], c.stored) for c in plan.components} for plan in (roomy, middling, small)]
    assert tiers[0]["transformer"] == ("pinned arena", "as shipped") and tiers[0]["text_encoder"][0] == "pageable RAM"
    assert tiers[1]["transformer"] == ("pageable RAM (pinning would not fit)", "as shipped")
    assert tiers[2]["transformer"] == ("pageable RAM (pinning would not fit)", "int8")
    assert tiers[2]["text_encoder"][0].startswith("disk") and tiers[2]["text_encoder_2"][0].startswith("disk")
    assert all(plan.fits for plan in (roomy, middling, small)) and not [n for n in roomy.notes if "int8" in n or "fit" in n]
    # T5 (9.52 GB) runs once a job: it is read from disk even where RAM could hold it.
    assert roomy.disk_gb_per_job == pytest.approx(9.52, abs=0.01) and tiers[0]["text_encoder_2"][0].startswith("disk")
    # int8 streams half the bytes; the notes say why and what it costs.
    assert small.streamed_gb_per_step < middling.streamed_gb_per_step / 2
    assert any("transformer is stored in int8" in note for note in small.notes)
    assert any("does not fit" in note and "GB of RAM" in note for note in small.notes)
    assert any("text_encoder_2 is read from disk as it runs: 9.5 GB per job" in note for note in small.notes)


def test_a_format_the_user_chose_is_kept(presets):
    plan = plan_job(CATALOG.spec("flux1-dev"), presets["8gb-laptop"], 64 * GB, weights="fp8")
    stored = {c.name: c.stored for c in plan.components}
    assert stored["transformer"] == "fp8" and stored["text_encoder"] == "as shipped"


@pytest.mark.parametrize("model, ram_gb, needs", [("hidream-i1-full", 8, "needs 19.8 GB of RAM"), ("flux1-dev", 12, "needs 14.3 GB")])
def test_when_no_plan_fits_the_leanest_one_is_refused_naming_its_numbers(presets, model, ram_gb, needs):
    plan = plan_job(CATALOG.spec(model), presets["8gb-laptop"], ram_gb * GB)
    assert not plan.fits and not plan.ram_fits
    assert needs in plan.reason and f"this machine's {ram_gb} GB leaves {0.9 * ram_gb:.1f} GB" in plan.reason
    assert {c.stored for c in plan.components if c.name == "transformer"} == {"int8"}


def test_a_quantized_denoiser_streams_half_the_bytes_and_holds_one_bf16_block_to_expand_them(presets):
    from pipelines.memory.planner import Workload, plan_blocks

    spec = CATALOG.spec("flux1-dev")
    shipped, int8 = denoiser_shape_from_catalog(spec), denoiser_shape_from_catalog(spec, 0.505)
    assert int8.scratch_bytes == max(shipped.block_bytes) and shipped.scratch_bytes == 0
    assert sum(int8.block_bytes) == pytest.approx(0.505 * sum(shipped.block_bytes), rel=1e-6)
    plan = plan_blocks(int8, Workload(4096), 4 * 1024**3)
    assert plan.device_bytes == plan.trunk_bytes + plan.resident_bytes + plan.ring_bytes + plan.activation_bytes + int8.scratch_bytes
    assert plan.device_bytes <= 4 * 1024**3


def test_read_choices_give_the_readers_each_components_storage_and_the_disk_tier(presets):
    from pipelines.memory.job_plan import read_choices

    plan = plan_job(CATALOG.spec("hidream-i1-full"), presets["8gb-laptop"], 32 * GB)
    stored, on_disk = read_choices(plan)
    assert stored["transformer"] == "int8" and "text_encoder_4" not in stored  # on disk: used as its file stores it
    assert on_disk == {"text_encoder_2", "text_encoder_3", "text_encoder_4"}
