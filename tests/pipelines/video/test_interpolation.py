"""Frame interpolation: the built-in blend, and RIFE read from a random-weight flownet in Practical-RIFE's file layout."""

import numpy as np
import pytest
import torch

from pipelines.errors import InvalidRequest, ModelLoadFailed
from pipelines.video.interpolation import CHOICES, LEARNED_WEIGHTS_FOLDER, blend, check_choice, interpolate, offered, weights_record
from pipelines.networks.rife import load_interpolator
from pipelines.tiny import rife as tiny_rife


@pytest.fixture
def clip():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models_with_rife(tmp_path_factory):
    """A models folder holding a random RIFE 4.6 flownet.pkl where the app looks for it."""
    models = tmp_path_factory.mktemp("models")
    tiny_rife.build(models / LEARNED_WEIGHTS_FOLDER / "flownet.pkl")
    return models


@pytest.fixture(scope="module")
def odd_clip():
    """Four frames of 50×38: neither side a multiple of the network's 32."""
    return np.random.default_rng(1).integers(0, 256, size=(4, 38, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize("factor", [2, 4])
def test_blend_keeps_every_frame_and_puts_in_betweens_between_their_neighbours(clip, factor):
    made = blend(clip, factor)
    assert len(made) == (len(clip) - 1) * factor + 1  # 2n−1 for ×2, 4n−3 for ×4
    assert np.array_equal(made[::factor], clip)
    for index in range(len(clip) - 1):
        low = np.minimum(clip[index], clip[index + 1])
        high = np.maximum(clip[index], clip[index + 1])
        between = made[index * factor + 1 : (index + 1) * factor]
        assert ((between >= low) & (between <= high)).all()
        # Not a copy of either neighbour: the middle frame is their average, to rounding.
        middle = made[index * factor + factor // 2].astype(int)
        assert np.abs(middle - (clip[index].astype(int) + clip[index + 1]) / 2).max() <= 0.5


def test_the_learned_interpolator_names_the_folder_for_its_weights(tmp_path):
    with pytest.raises(InvalidRequest, match=f"weights in {tmp_path / LEARNED_WEIGHTS_FOLDER}"):
        check_choice("rife-2x", tmp_path)


def test_an_unknown_interpolation_is_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="interpolation: 'magic' is not offered"):
        check_choice("magic", tmp_path)


def test_rife_is_offered_only_when_its_weights_file_is_there(tmp_path, models_with_rife):
    assert list(offered(tmp_path)) == ["none", "blend-2x", "blend-4x"]
    assert list(offered(models_with_rife)) == list(CHOICES)
    assert check_choice("rife-4x", models_with_rife) is CHOICES["rife-4x"]


@pytest.mark.parametrize("factor", [2, 4])
def test_rife_keeps_every_frame_and_makes_factor_minus_one_new_ones_between_each_pair_at_the_same_size(
    models_with_rife, odd_clip, factor
):
    made = interpolate(odd_clip, CHOICES[f"rife-{factor}x"], models_with_rife)
    assert made.shape == ((len(odd_clip) - 1) * factor + 1, 38, 50, 3)  # 2n−1 for ×2, 4n−3 for ×4; padding cropped
    assert np.array_equal(made[::factor], odd_clip)
    in_betweens = np.delete(made, np.s_[::factor], axis=0)
    # Made by the network: no in-between is a copy of a neighbour.
    for index, frame in enumerate(in_betweens):
        pair = index // (factor - 1)
        assert not np.array_equal(frame, odd_clip[pair]) and not np.array_equal(frame, odd_clip[pair + 1])
    assert weights_record(CHOICES[f"rife-{factor}x"], models_with_rife)["version"] == "4.6"


def test_rife_between_two_flat_frames_stays_between_their_colours_up_to_the_edges(models_with_rife):
    """Whatever flow the network guesses, warping a flat frame leaves it flat, and the mask mixes the two: every pixel,
    edges included (where the padding is), lies between the two colours."""
    dark = np.full((2, 38, 50, 3), 40, dtype=np.uint8)
    dark[1] = 200
    made = interpolate(dark, CHOICES["rife-4x"], models_with_rife)
    assert made[1:4].min() >= 40 and made[1:4].max() <= 200


def test_rifes_network_output_is_finite_and_in_range(models_with_rife):
    net = load_interpolator(models_with_rife / LEARNED_WEIGHTS_FOLDER / "flownet.pkl").net
    first, second = torch.rand(2, 3, 64, 64).chunk(2)
    with torch.inference_mode():
        middle = net(first, second, torch.full((1, 1, 1, 1), 0.5))
    assert middle.shape == (1, 3, 64, 64) and torch.isfinite(middle).all()
    assert middle.min() >= 0 and middle.max() <= 1


@pytest.mark.parametrize(
    "name, version, key_prefix",
    [("rife46.pth", "4.6", ""), ("flownet.safetensors", "4.6", "module."), ("flownet.pkl", "4.5", "module.")],
)
def test_comfyuis_unprefixed_copy_a_safetensors_copy_and_version_4_5_load_too(tmp_path, name, version, key_prefix):
    tiny_rife.build(tmp_path / LEARNED_WEIGHTS_FOLDER / name, version=version, key_prefix=key_prefix)
    assert load_interpolator(tmp_path / LEARNED_WEIGHTS_FOLDER / name).version == version
    made = interpolate(np.zeros((2, 32, 32, 3), np.uint8), CHOICES["rife-2x"], tmp_path)
    assert made.shape == (3, 32, 32, 3)


def _save_state(path, state):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


@pytest.mark.parametrize(
    "contents, message",
    [
        (b"<html>Google Drive: virus scan warning</html>", "not a readable weights file"),
        ({"model.conv.weight": torch.zeros(1)}, "not a RIFE 4.5, 4.6 flownet"),
        ({"module.encode.0.weight": torch.zeros(1)}, "looks like RIFE 4.7 to 4.24"),
        ({"module.block4.conv0.0.0.weight": torch.zeros(1)}, "looks like RIFE 4.25 or later"),
        ({"module.block0.lastconv.weight": torch.zeros(1)}, "looks like RIFE 4.0 to 4.4"),
    ],
)
def test_a_file_of_another_layout_is_refused_naming_the_file_before_the_video_is_made(tmp_path, contents, message):
    weights = tmp_path / LEARNED_WEIGHTS_FOLDER / "flownet.pkl"
    if isinstance(contents, bytes):
        weights.parent.mkdir(parents=True)
        weights.write_bytes(contents)
    else:
        _save_state(weights, contents)
    with pytest.raises(ModelLoadFailed) as error:
        check_choice("rife-2x", tmp_path)
    # The file by its name: the folder (the models folder, often a home directory) stays out of the message.
    assert str(error.value).startswith("flownet.pkl: ") and str(tmp_path) not in str(error.value) and message in str(error.value)


def test_a_flownet_missing_a_key_is_refused_naming_the_key(tmp_path):
    weights = tmp_path / "flownet.pkl"
    tiny_rife.build(weights)
    state = torch.load(weights, weights_only=True)
    del state["module.block3.convblock.7.beta"]
    torch.save(state, weights)
    with pytest.raises(ModelLoadFailed, match=r"flownet.pkl: the RIFE 4.6 weights do not fit .*block3.convblock.7.beta"):
        load_interpolator(weights)


def test_a_flownet_saved_in_torchs_legacy_format_loads_without_a_memory_map(tmp_path):
    weights = tmp_path / "flownet.pkl"
    tiny_rife.build(weights)
    torch.save(torch.load(weights, weights_only=True), weights, _use_new_zipfile_serialization=False)
    assert load_interpolator(weights).version == "4.6"
