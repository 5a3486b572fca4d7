"""Control images for FLUX.1 Canny and Depth: what the control transformer sees beside the noise.

Canny: edges computed here with OpenCV from the input picture, at the output size, as white lines on black (the
way FLUX.1 Canny was trained). Depth: a depth map the person supplies (any image: it is read as grayscale, near =
bright), or one estimated from the input picture by a depth model installed in the models folder. Nothing is ever
downloaded here: with no map and no depth model, the error says what to install where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.errors import InvalidRequest, ModelNotAvailable

log = logging.getLogger(__name__)

# diffusers' FLUX.1 Canny example: 50 and 200 on OpenCV's gradient scale.
DEFAULT_CANNY_LOW = 50
DEFAULT_CANNY_HIGH = 200
CANNY_LIMITS = (1, 255)


@dataclass(frozen=True)
class DepthEstimator:
    """A depth model transformers' `depth-estimation` pipeline runs, found in `<models_dir>/<folder>/`."""

    folder: str
    repo: str
    name: str


# In the order they are preferred when several are installed.
DEPTH_ESTIMATORS = (
    DepthEstimator("depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf", "Depth Anything V2 Small"),
    DepthEstimator("dpt-hybrid-midas", "Intel/dpt-hybrid-midas", "DPT-Hybrid MiDaS"),
)


def check_canny_thresholds(low: int, high: int) -> None:
    for name, value in (("canny_low", low), ("canny_high", high)):
        if not CANNY_LIMITS[0] <= value <= CANNY_LIMITS[1]:
            raise InvalidRequest(name, f"{value} is out of range; use {CANNY_LIMITS[0]} to {CANNY_LIMITS[1]}")
    if low > high:
        raise InvalidRequest("canny_low", f"{low} is above canny_high ({high}); the low threshold must not exceed the high one")


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` as RGB at exactly the output size (control images must match the latents pixel for pixel)."""
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def canny_edges(image: Image.Image, low: int, high: int) -> Image.Image:
    """OpenCV's Canny edges of `image` as an RGB picture: white edge pixels on black. Gradients above `high` start
    an edge; it is followed through pixels above `low`."""
    import cv2

    check_canny_thresholds(low, high)
    gray = np.asarray(image.convert("L"))
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(edges).convert("RGB")


def installed_depth_estimator(models_dir: Path) -> DepthEstimator | None:
    for estimator in DEPTH_ESTIMATORS:
        if (Path(models_dir) / estimator.folder / "config.json").is_file():
            return estimator
    return None


def missing_depth_message(models_dir: Path) -> str:
    preferred = DEPTH_ESTIMATORS[0]
    return (
        "Depth needs a depth map: upload one (any image; near is bright), or install a depth model to compute it from "
        f"the input picture, e.g. {preferred.name}: hf download {preferred.repo} --local-dir "
        f"{Path(models_dir) / preferred.folder}"
    )


def depth_from_map(path: Path) -> Image.Image:
    """A supplied depth map as the control transformer wants it: grayscale, repeated in R, G and B."""
    with Image.open(path) as supplied:
        return supplied.convert("L").convert("RGB")


def estimate_depth(image: Image.Image, models_dir: Path) -> tuple[Image.Image, DepthEstimator]:
    """The depth of `image` from the installed depth model, as a grayscale RGB picture of the same size.

    It runs on the CPU: these models are small (25–125 M parameters, a second or two per picture), and the GPU
    stays with the one model the manager keeps resident."""
    from transformers import pipeline

    estimator = installed_depth_estimator(models_dir)
    if estimator is None:
        raise ModelNotAvailable(missing_depth_message(models_dir))
    estimate = pipeline("depth-estimation", model=str(Path(models_dir) / estimator.folder), device="cpu")
    depth = estimate(image.convert("RGB"))["depth"]
    log.info("estimated depth with %s", estimator.folder)
    return depth.resize(image.size, Image.Resampling.BICUBIC).convert("RGB"), estimator
