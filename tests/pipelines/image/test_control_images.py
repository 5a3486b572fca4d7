"""Control pictures for FLUX.1 Canny and Depth: edges from OpenCV, depth from a supplied map or an installed model."""

import numpy as np
import pytest
from PIL import Image

from pipelines.image import control_images
from pipelines.errors import InvalidRequest, ModelNotAvailable
from pipelines.tiny import depth_anything


def square(size=64, inside=255, outside=0) -> Image.Image:
    pixels = np.full((size, size), outside, np.uint8)
    pixels[16:48, 16:48] = inside
    return Image.fromarray(pixels).convert("RGB")


def test_canny_edges_lie_on_the_border_of_a_square_and_nowhere_else():
    edges = control_images.canny_edges(square(), 50, 200)
    assert edges.mode == "RGB" and edges.size == (64, 64)
    lit = np.asarray(edges)[..., 0] > 0
    border = np.zeros_like(lit)
    border[15:49, 15:49] = True
    border[18:46, 18:46] = False
    assert lit.sum() > 100, "the square's outline is traced"
    assert not (lit & ~border).any(), "no edge away from the border"
    assert set(np.unique(np.asarray(edges))) <= {0, 255}


def test_higher_thresholds_drop_a_faint_edge_that_lower_ones_keep():
    faint = square(inside=30)
    assert np.asarray(control_images.canny_edges(faint, 20, 60)).any()
    assert not np.asarray(control_images.canny_edges(faint, 100, 200)).any()


@pytest.mark.parametrize("low, high, field", [(0, 100, "canny_low"), (50, 300, "canny_high"), (150, 100, "canny_low")])
def test_bad_canny_thresholds_name_their_field(low, high, field):
    with pytest.raises(InvalidRequest) as error:
        control_images.canny_edges(square(), low, high)
    assert error.value.field == field


def test_a_supplied_depth_map_becomes_grayscale_rgb_at_the_output_size(tmp_path):
    path = tmp_path / "depth.png"
    Image.new("RGB", (40, 30), (200, 40, 10)).save(path)
    depth = control_images.fit(control_images.depth_from_map(path), 64, 48)
    pixels = np.asarray(depth)
    assert depth.size == (64, 48)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert pixels[..., 0].min() > 0, "the map's values are kept, as gray"


def test_without_a_depth_model_the_error_says_what_to_install_where(tmp_path):
    with pytest.raises(ModelNotAvailable) as error:
        control_images.estimate_depth(square(), tmp_path)
    message = str(error.value)
    assert "depth map" in message and "depth-anything/Depth-Anything-V2-Small-hf" in message
    assert str(tmp_path / "depth-anything-v2-small") in message


def test_an_installed_depth_model_estimates_depth_at_the_picture_size(tmp_path):
    depth_anything.build(tmp_path / "depth-anything-v2-small")
    depth, estimator = control_images.estimate_depth(square(64).resize((64, 48)), tmp_path)
    pixels = np.asarray(depth)
    assert estimator.folder == "depth-anything-v2-small" and depth.size == (64, 48)
    assert (pixels[..., 0] == pixels[..., 2]).all()
