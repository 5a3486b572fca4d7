"""Tiled upscaling: every pixel covered, seams blended, and the tiled result the same as one pass over the whole
picture (within a stated tolerance) for a real convolutional upscaler."""

from __future__ import annotations

import pytest
import torch

from pipelines.image.tiling import Tiling, ramp_weights, tile_starts, upscale_tiled
from pipelines.tiny.upscalers import build_compact, build_esrgan
from pipelines.image.upscale import read_upscaler


def nearest(scale: int):
    return lambda tile: torch.nn.functional.interpolate(tile, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("length, tile, overlap", [(100, 32, 8), (97, 40, 12), (64, 64, 8), (65, 64, 8), (30, 64, 8)])
def test_tiles_cover_every_pixel_and_overlap_by_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = torch.zeros(length, dtype=torch.bool)
    for start in starts:
        covered[start : start + min(tile, length)] = True
    assert covered.all() and starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_ramp_rises_over_the_overlap_and_is_never_zero():
    weights = ramp_weights(40, 8, 8)
    assert weights[8:32].eq(1).all()
    assert (weights > 0).all() and (weights[:8].diff() > 0).all() and (weights[32:].diff() < 0).all()


@pytest.mark.parametrize("height, width, scale", [(37, 29, 2), (64, 48, 4), (50, 50, 3)])
def test_size_is_scale_times_the_input_also_for_sizes_no_tile_divides(height, width, scale):
    image = torch.rand(3, height, width)
    out = upscale_tiled(image, nearest(scale), scale, Tiling(16, 4))
    assert out.shape == (3, height * scale, width * scale)


def test_a_model_that_sees_only_its_pixel_gives_exactly_the_whole_picture_result():
    image = torch.rand(3, 45, 37)
    whole = nearest(2)(image[None])[0]
    tiled = upscale_tiled(image, nearest(2), 2, Tiling(16, 6))
    assert torch.allclose(tiled, whole, atol=1e-6)


# Measured with the tiny random-weight models below (their 3×3 convolutions reach a few pixels past a tile's edge): the
# largest difference between tiled and whole is under 1/255 of the range (one step of an 8-bit pixel).
TILED_TOLERANCE = 1.0 / 255


@pytest.mark.parametrize("build, suffix", [(build_esrgan, ".pth"), (build_compact, ".safetensors")])
def test_overlapping_tiles_match_one_tile_over_the_whole_small_image(tmp_path, build, suffix):
    build(tmp_path / f"model{suffix}")
    model = read_upscaler(tmp_path / f"model{suffix}")
    torch.manual_seed(1)
    image = torch.rand(3, 70, 61)
    whole = model(image[None])[0]
    tiled = upscale_tiled(image, model, model.scale, Tiling(32, 16))
    assert tiled.shape == whole.shape == (3, 70 * model.scale, 61 * model.scale)
    assert (tiled - whole).abs().max().item() < TILED_TOLERANCE
    # Without overlap the seams show: the tolerance is not trivially met.
    seams = upscale_tiled(image, model, model.scale, Tiling(32, 0))
    assert (seams - whole).abs().max().item() > TILED_TOLERANCE


def test_each_tile_is_reported():
    reports = []
    upscale_tiled(torch.rand(3, 40, 40), nearest(2), 2, Tiling(16, 4), on_tile=lambda done, total: reports.append((done, total)))
    assert reports == [(n, 9) for n in range(1, 10)]
