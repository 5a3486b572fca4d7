"""Frame interpolation: more frames per second from the same clip, so fewer frames need full diffusion.

×2 puts one new frame between each pair of neighbours, ×4 three: n frames become (n−1)·factor + 1, played at
factor × the frame rate, so the clip spans the same time from its first frame to its last.

Methods:
- `blend`: built in, needs no weights. Each new frame is a linear cross-fade of its two neighbours (no optical
  flow, no motion estimation): cheap and never invents detail, but fast motion shows as ghosting.
- `rife`: the learned interpolator RIFE (Practical-RIFE 4.5/4.6, `pipelines/networks/rife.py`) read from a local weights file:
  it estimates the motion between the two frames and moves their pixels along it, so moving things stay sharp. Offered
  when its weights file is in the models folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from pipelines.errors import InvalidRequest
from pipelines.media import file_digest
from pipelines.networks.rife import PairCallback, interpolate_frames, load_interpolator, weights_version

# Where a learned interpolator's weights are looked for, under the models folder.
LEARNED_WEIGHTS_FOLDER = Path("interpolation") / "rife"
# Practical-RIFE's own file name, a safetensors copy of it, and ComfyUI-Frame-Interpolation's name for 4.6.
LEARNED_WEIGHTS_NAMES = ("flownet.pkl", "flownet.safetensors", "rife.safetensors", "rife46.pth")


@dataclass(frozen=True)
class InterpolationChoice:
    label: str
    method: str
    factor: int


CHOICES: Mapping[str, InterpolationChoice] = {
    "none": InterpolationChoice("Off", "none", 1),
    "blend-2x": InterpolationChoice("×2 · blend (built in)", "blend", 2),
    "blend-4x": InterpolationChoice("×4 · blend (built in)", "blend", 4),
    "rife-2x": InterpolationChoice("×2 · RIFE (learned, local weights)", "rife", 2),
    "rife-4x": InterpolationChoice("×4 · RIFE (learned, local weights)", "rife", 4),
}


def learned_weights(models_dir: Path) -> Path | None:
    """The learned interpolator's weights file in `models_dir`, if one is there."""
    folder = Path(models_dir) / LEARNED_WEIGHTS_FOLDER
    return next((folder / name for name in LEARNED_WEIGHTS_NAMES if (folder / name).is_file()), None)


def check_choice(name: str, models_dir: Path) -> InterpolationChoice:
    """The choice called `name`, usable on this machine; InvalidRequest otherwise."""
    choice = CHOICES.get(name or "none")
    if choice is None:
        raise InvalidRequest("interpolation", f"{name!r} is not offered; choose one of {', '.join(CHOICES)}")
    if choice.method == "rife":
        weights = learned_weights(models_dir)
        if weights is None:
            raise InvalidRequest(
                "interpolation",
                f"the learned interpolator needs its weights in {Path(models_dir) / LEARNED_WEIGHTS_FOLDER} "
                f"(one of {', '.join(LEARNED_WEIGHTS_NAMES)}); none was found. Use blend-2x or blend-4x.",
            )
        weights_version(weights)  # a file of another version or layout is refused before the video is made
    return choice


def offered(models_dir: Path) -> dict[str, InterpolationChoice]:
    """The choices that can run on this machine: the learned ones only when their weights file is there."""
    has_weights = learned_weights(models_dir) is not None
    return {name: choice for name, choice in CHOICES.items() if choice.method != "rife" or has_weights}


def weights_record(choice: InterpolationChoice, models_dir: Path) -> dict | None:
    """Which learned weights made the in-between frames (file, digest, RIFE version); None when none did."""
    if choice.method != "rife":
        return None
    weights = learned_weights(models_dir)
    return {"file": weights.name, "sha256": file_digest(weights), "version": weights_version(weights)}


def blend(frames: np.ndarray, factor: int) -> np.ndarray:
    """(n−1)·factor + 1 frames: the originals, with factor−1 cross-fades of each pair of neighbours between them."""
    if factor == 1 or len(frames) < 2:
        return frames
    start, end = frames[:-1].astype(np.float32), frames[1:].astype(np.float32)
    weights = np.arange(factor, dtype=np.float32)[:, None, None, None, None] / factor  # (factor, 1, 1, 1, 1)
    steps = start[None] + (end - start)[None] * weights  # (factor, n−1, h, w, c); weight 0 is the original frame
    interleaved = steps.transpose(1, 0, 2, 3, 4).reshape(-1, *frames.shape[1:])
    return np.concatenate([np.rint(interleaved).astype(np.uint8), frames[-1:]])


def interpolate(
    frames: np.ndarray, choice: InterpolationChoice, models_dir: Path, device: str = "cpu", on_pair: PairCallback | None = None
) -> np.ndarray:
    """The frames with `choice`'s in-betweens; the learned interpolator runs on `device` and reports each pair of
    neighbours done to `on_pair` (which may raise to stop)."""
    if choice.method == "blend":
        return blend(frames, choice.factor)
    if choice.method == "rife":
        return interpolate_frames(load_interpolator(learned_weights(models_dir), device), frames, choice.factor, on_pair)
    return frames
