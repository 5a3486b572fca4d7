"""The placement planner's decisions for given budgets, from component sizes alone (no GPU needed)."""

import pytest

from pipelines.catalog import FAMILIES, MODELS_BY_ID
from pipelines.placement import ComponentSize, Placement, plan_placement, predicted_peak

GB = 1_000_000_000


def sizes_of(model_id: str) -> dict[str, ComponentSize]:
    # Real component sizes from the catalog; blocks as in the real transformers (SD3 24, FLUX 57, HiDream 16 + 32,
    # CogView4 28).
    blocks = {"sd3-medium": 24, "flux1-dev": 57, "hidream-i1-full": 48, "cogview4-6b": 28}[model_id]
    sizes = {}
    for name, total in MODELS_BY_ID[model_id].component_bytes.items():
        block = total // blocks if name == "transformer" else total // 24
        sizes[name] = ComponentSize(total, block, block // 8)
    return sizes


def plan(model_id, preset, device="cuda"):
    family = FAMILIES[MODELS_BY_ID[model_id].family]
    return plan_placement(family, sizes_of(model_id), preset, device, "bfloat16")


def test_cpu_preset_keeps_everything_resident_on_the_cpu(presets):
    result = plan("flux1-dev", presets["cpu"], device="cpu")
    assert set(result.components.values()) == {Placement.RESIDENT}
    assert result.device == "cpu"


def test_24gb_keeps_sd3_medium_resident_except_what_does_not_fit(presets):
    result = plan("sd3-medium", presets["24gb"])
    # 15.5 GB in all fits 24 GB minus the reserve: nothing needs to move.
    assert set(result.components.values()) == {Placement.RESIDENT}
    assert result.predicted_peak_vram_bytes <= result.usable_vram_bytes


def test_24gb_cannot_hold_flux_whole_and_offloads_the_largest_first(presets):
    result = plan("flux1-dev", presets["24gb"])
    # 33.7 GB in all: the 23.8 GB transformer streams, the 9.5 GB T5 still fits beside its blocks.
    assert result.components["transformer"] is Placement.STREAM
    assert result.components["text_encoder_2"] is Placement.RESIDENT
    assert result.predicted_peak_vram_bytes <= result.usable_vram_bytes


@pytest.mark.parametrize("preset_id", ["6gb", "8gb-laptop", "12gb", "16gb"])
@pytest.mark.parametrize("model_id", ["sd3-medium", "flux1-dev", "hidream-i1-full", "cogview4-6b"])
def test_every_gpu_preset_finds_a_plan_within_its_budget(presets, preset_id, model_id):
    result = plan(model_id, presets[preset_id])
    assert result.predicted_peak_vram_bytes <= presets[preset_id].usable_vram_bytes


def test_8gb_laptop_streams_flux_but_lets_sd3_medium_visit_whole(presets):
    flux = plan("flux1-dev", presets["8gb-laptop"])
    sd3 = plan("sd3-medium", presets["8gb-laptop"])
    assert flux.components["transformer"] is Placement.STREAM  # 23.8 GB cannot visit an 8 GB GPU whole
    assert sd3.components["transformer"] is Placement.OFFLOAD  # 4.2 GB can
    assert flux.components["text_encoder_2"] in (Placement.STREAM, Placement.SEQUENTIAL)  # T5-XXL is 9.5 GB


def test_a_bigger_gpu_never_keeps_less_resident(presets):
    order = ["6gb", "8gb-laptop", "12gb", "16gb", "24gb"]
    for model_id in ("sd3-medium", "flux1-dev"):
        resident = [
            sum(sizes_of(model_id)[n].total_bytes for n, p in plan(model_id, presets[i]).components.items() if p is Placement.RESIDENT)
            for i in order
        ]
        assert resident == sorted(resident)


def test_predicted_peak_counts_resident_plus_the_largest_visitor():
    sizes = {"a": ComponentSize(4 * GB, 0, 0), "b": ComponentSize(3 * GB, 0, 0), "c": ComponentSize(2 * GB, 0, 0)}
    components = {"a": Placement.RESIDENT, "b": Placement.OFFLOAD, "c": Placement.OFFLOAD}
    assert predicted_peak(components, sizes, 1) == 7 * GB


def test_8gb_laptop_runs_hidreams_four_encoders_and_cogview4s_glm_in_turn_streaming_the_big_ones(presets):
    hidream = plan("hidream-i1-full", presets["8gb-laptop"])
    cogview4 = plan("cogview4-6b", presets["8gb-laptop"])
    encoders = {**{f"hidream {n}": p for n, p in hidream.components.items() if n.startswith("text_encoder")},
                **{f"cogview4 {n}": p for n, p in cogview4.components.items() if n.startswith("text_encoder")}}
    assert len(encoders) == 5
    assert Placement.RESIDENT not in encoders.values(), "no encoder stays on the GPU while the transformer runs"
    # The 16 GB Llama, the 9.5 GB T5 and the 17.6 GB GLM cannot visit 8 GB whole: they stream from RAM.
    for name in ("hidream text_encoder_4", "hidream text_encoder_3", "cogview4 text_encoder"):
        assert encoders[name] in (Placement.STREAM, Placement.SEQUENTIAL)
    assert hidream.predicted_peak_vram_bytes <= hidream.usable_vram_bytes


def test_the_family_roles_cover_every_component_of_the_real_models():
    for model_id in ("sd3-medium", "flux1-dev", "hidream-i1-full", "cogview4-6b"):
        family = FAMILIES[MODELS_BY_ID[model_id].family]
        assert set(sizes_of(model_id)) <= set(family.component_roles)
