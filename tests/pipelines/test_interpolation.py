"""Frame interpolation: the built-in blend, and the learned interpolator's honest refusal."""

import numpy as np
import pytest

from pipelines.errors import InvalidRequest
from pipelines.interpolation import LEARNED_WEIGHTS_FOLDER, blend, check_choice


@pytest.fixture
def clip():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)


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


def test_the_learned_interpolator_says_it_cannot_run_yet_when_its_weights_are_there(tmp_path):
    (tmp_path / LEARNED_WEIGHTS_FOLDER).mkdir(parents=True)
    (tmp_path / LEARNED_WEIGHTS_FOLDER / "flownet.pkl").write_bytes(b"weights")
    with pytest.raises(InvalidRequest, match="found flownet.pkl, but this version cannot run the learned interpolator"):
        check_choice("rife-4x", tmp_path)


def test_an_unknown_interpolation_is_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="interpolation: 'magic' is not offered"):
        check_choice("magic", tmp_path)
