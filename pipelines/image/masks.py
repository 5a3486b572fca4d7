"""Masks and canvases for inpainting and outpainting. White (255) means "repaint", black (0) "keep".

A mask comes from a file: a painted layer from the browser (transparent where nothing was painted: its alpha is the
mask) or an uploaded black-and-white picture (its brightness is the mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


def read_mask(path) -> Image.Image:
    """The mask in a file as a grayscale image: the alpha of a painted layer, else the brightness."""
    with Image.open(path) as picture:
        picture.load()
        if "A" in picture.getbands():
            alpha = picture.getchannel("A")
            # A fully opaque picture is an uploaded mask saved with an alpha channel, not a painted layer.
            if alpha.getextrema()[0] < 255:
                return alpha
        return picture.convert("L")


def feathered(mask: Image.Image, radius_px: float) -> Image.Image:
    """The mask with its edge softened by a Gaussian blur of `radius_px`, so a repainted area blends into the rest."""
    if radius_px <= 0:
        return mask
    return mask.filter(ImageFilter.GaussianBlur(radius_px))


def rounded_up(pixels: int, multiple: int) -> int:
    return math.ceil(pixels / multiple) * multiple


@dataclass(frozen=True)
class Extension:
    """Pixels added on each side of an image (outpainting)."""

    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0

    def rounded_up(self, multiple: int) -> "Extension":
        return Extension(*(rounded_up(side, multiple) for side in (self.left, self.right, self.top, self.bottom)))

    @property
    def any(self) -> bool:
        return any((self.left, self.right, self.top, self.bottom))


def extended_canvas(image: Image.Image, extension: Extension) -> tuple[Image.Image, Image.Image]:
    """The image on a canvas grown by `extension`, and the mask of the new area. The new area repeats the image's
    edge pixels: a start that a fill model repaints completely, and one without a hard seam for models that blend."""
    pixels = np.asarray(image.convert("RGB"))
    padding = ((extension.top, extension.bottom), (extension.left, extension.right), (0, 0))
    canvas = Image.fromarray(np.pad(pixels, padding, mode="edge"))
    mask = Image.new("L", canvas.size, 255)
    mask.paste(0, (extension.left, extension.top, extension.left + image.width, extension.top + image.height))
    return canvas, mask


def keep_unmasked(result: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """The result inside the mask and the original outside it, blended where the mask is grey (a feathered edge):
    wherever the mask is 0 the original's pixels come back exactly."""
    return Image.composite(result.convert("RGB"), original.convert("RGB"), mask)
