import json

import pytest

from presets import GIB, PRESETS_DIR, PresetError, choose_preset, load_presets

REQUIRED = {"cpu", "6gb", "8gb-laptop", "12gb", "16gb", "24gb"}


def test_required_presets_exist_and_validate(presets):
    assert REQUIRED <= set(presets)
    for preset in presets.values():
        assert preset.description and preset.label
        assert preset.vram_reserve_gb <= preset.vram_budget_gb


@pytest.mark.parametrize(
    "vram_gb, ram_gb, expected",
    [
        (0, 16, "cpu"),
        (4, 16, "cpu"),
        (6, 16, "6gb"),
        (7.6, 16, "8gb-laptop"),  # an RTX 3070 laptop reports a little under 8 GiB
        (8, 32, "8gb-laptop"),
        (11.6, 32, "12gb"),
        (15.7, 32, "16gb"),
        (23.6, 64, "24gb"),
        (80, 128, "24gb"),
    ],
)
def test_preset_is_chosen_from_vram(presets, vram_gb, ram_gb, expected):
    preset, _ = choose_preset(presets, int(vram_gb * GIB), int(ram_gb * GIB))
    assert preset.id == expected


def test_low_ram_is_reported_not_ignored(presets):
    preset, warnings = choose_preset(presets, 8 * GIB, 8 * GIB)
    assert preset.id == "8gb-laptop"
    assert any("RAM" in warning for warning in warnings)
    _, no_warnings = choose_preset(presets, 8 * GIB, 32 * GIB)
    assert no_warnings == []


def test_a_gpu_below_every_gpu_preset_falls_back_to_cpu_with_a_reason(presets):
    preset, warnings = choose_preset(presets, 2 * GIB, 16 * GIB)
    assert preset.id == "cpu" and "GPU" in warnings[0]


def test_a_broken_preset_file_is_refused_with_its_name(tmp_path, presets):
    good = json.loads((PRESETS_DIR / "8gb-laptop.json").read_text())
    good["placement"]["denoiser"] = "everywhere"
    (tmp_path / "bad.json").write_text(json.dumps(good))
    with pytest.raises(PresetError, match="bad.json"):
        load_presets(tmp_path)
