"""Tiled upscaling: a picture too big for the GPU in one pass is cut into overlapping tiles, each tile is upscaled
alone, and the tiles are put back with their seams blended.

Where two tiles overlap, each one's output is weighted by a cosine ramp across the overlap (rising from its edge
inwards), and every output pixel is the weighted mean of the tiles that cover it. A convolutional upscaler sees a
tile's border through zero padding, so its output there is wrong; the ramp gives that border the least weight, and
with an overlap wider than the model's reach the tiled result matches one pass over the whole picture (the tests
measure how closely). The output is gathered on the CPU: the GPU only ever holds one tile.

Pure functions over tensors; the model is any callable `(1, C, h, w) → (1, C, h·s, w·s)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

TileCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Tiling:
    """Tiles of `tile` input pixels a side (0: the whole picture in one pass) sharing `overlap` pixels with each
    neighbour."""

    tile: int
    overlap: int

    def fitted(self, height: int, width: int) -> "Tiling":
        """This tiling for a picture of `height` × `width`: the whole picture when one tile covers it, and an overlap
        under half a tile (so a tile always adds new pixels)."""
        if self.tile <= 0 or self.tile >= max(height, width):
            return Tiling(0, 0)
        return Tiling(self.tile, min(self.overlap, self.tile // 2 - 1))

    def count(self, height: int, width: int) -> int:
        """How many tiles cover a picture of `height` × `width`."""
        fitted = self.fitted(height, width)
        return len(tile_starts(height, fitted.tile, fitted.overlap)) * len(tile_starts(width, fitted.tile, fitted.overlap))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side of `length` pixels start: every `tile − overlap` pixels, the last one moved back
    to end at the edge (so it overlaps its neighbour more, never less)."""
    if tile <= 0 or tile >= length:
        return [0]
    stride = tile - overlap
    return list(range(0, length - tile, stride)) + [length - tile]


def ramp_weights(length: int, fade_in: int, fade_out: int) -> torch.Tensor:
    """Weights along one side of a tile's output: a cosine rise over its first `fade_in` pixels, a fall over its last
    `fade_out`, 1 between. Never 0, so a pixel only one tile covers keeps that tile's value."""
    weights = torch.ones(length, dtype=torch.float32)
    for fade, flip in ((fade_in, False), (fade_out, True)):
        fade = min(fade, length)
        if fade <= 0:
            continue
        rise = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade, dtype=torch.float32) + 0.5) / fade)
        if flip:
            weights[length - fade :] = torch.minimum(weights[length - fade :], rise.flip(0))
        else:
            weights[:fade] = torch.minimum(weights[:fade], rise)
    return weights


def upscale_tiled(
    image: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor], scale: int, tiling: Tiling,
    on_tile: TileCallback | None = None,
) -> torch.Tensor:
    """`image` (C, H, W, float in [0, 1], on the CPU) upscaled `scale`× by `run`, tile by tile: (C, H·scale, W·scale)
    float32 on the CPU. `on_tile(done, total)` hears about each finished tile (and may raise to stop)."""
    channels, height, width = image.shape
    fitted = tiling.fitted(height, width)
    rows, columns = tile_starts(height, fitted.tile, fitted.overlap), tile_starts(width, fitted.tile, fitted.overlap)
    tile_height, tile_width = min(fitted.tile or height, height), min(fitted.tile or width, width)
    total = len(rows) * len(columns)
    if total == 1:
        result = run(image[None]).float().cpu()[0]
        if on_tile is not None:
            on_tile(1, 1)
        return result
    out = torch.zeros(channels, height * scale, width * scale, dtype=torch.float32)
    weight_sum = torch.zeros(1, height * scale, width * scale, dtype=torch.float32)
    done = 0
    for top in rows:
        # A side that borders another tile fades over the part they share; the picture's own edges do not.
        fade_top = (top > 0) * fitted.overlap * scale
        fade_bottom = (top + tile_height < height) * fitted.overlap * scale
        row_weights = ramp_weights(tile_height * scale, fade_top, fade_bottom)
        for left in columns:
            fade_left = (left > 0) * fitted.overlap * scale
            fade_right = (left + tile_width < width) * fitted.overlap * scale
            weights = (row_weights[:, None] * ramp_weights(tile_width * scale, fade_left, fade_right)[None, :])[None]
            tile = image[:, top : top + tile_height, left : left + tile_width]
            upscaled = run(tile[None]).float().cpu()[0]
            region = (slice(None), slice(top * scale, (top + tile_height) * scale), slice(left * scale, (left + tile_width) * scale))
            out[region] += upscaled * weights
            weight_sum[region] += weights
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return out / weight_sum
