"""Context windows: denoise a video longer than the transformer was trained on by running it on overlapping windows
of latent frames at every step and blending the overlaps, so each window sees a length it knows and neighbouring
windows agree on the frames they share.

diffusers 0.42.1 ships no context-window support for Wan (its `hooks/context_parallel.py` splits attention over
several GPUs, which is another thing), so this wraps the transformer's forward for one job and puts it back after.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from pipelines.errors import InvalidRequest

# How much a window's frame counts in the blend, by its position in the ramp at the window's overlapping edges.
BLENDS = {
    "linear": lambda position: position,
    "cosine": lambda position: 0.5 - 0.5 * math.cos(math.pi * position),
}


@dataclass(frozen=True)
class ContextWindows:
    """Windows over `latent_frames` latent frames: `length` frames each, sharing `overlap` with the next, taking every
    `stride`-th frame (stride 2 makes windows of the even and of the odd frames, so distant frames meet in one window)."""

    latent_frames: int
    length: int
    overlap: int
    stride: int = 1
    blend: str = "linear"

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise InvalidRequest("context_blend", f"{self.blend!r} is not a blend; choose one of {', '.join(BLENDS)}")
        if self.length < 1:
            raise InvalidRequest("context_frames", f"a window of {self.length} latent frames is empty")
        if not 0 <= self.overlap < self.length:
            raise InvalidRequest(
                "context_overlap", f"{self.overlap} latent frames of overlap must be fewer than the window's {self.length}"
            )
        if self.stride < 1:
            raise InvalidRequest("context_stride", f"{self.stride} is out of range; use 1 (neighbouring frames) or more")
        if self.stride > 1 and (self.length - 1) * self.stride + 1 > self.latent_frames:
            widest = max((self.latent_frames - 1) // max(self.length - 1, 1), 1)
            raise InvalidRequest(
                "context_stride",
                f"windows of {self.length} latent frames taken every {self.stride} frames span "
                f"{(self.length - 1) * self.stride + 1}, more than the video's {self.latent_frames}; use a stride up to {widest}",
            )

    def windows(self) -> list[list[int]]:
        """The latent frame indices of each window, in the order they run."""
        found = []
        for phase in range(self.stride):
            frames = list(range(phase, self.latent_frames, self.stride))
            if len(frames) <= self.length:
                found.append(frames)
                continue
            step = self.length - self.overlap
            starts = list(range(0, len(frames) - self.length, step)) + [len(frames) - self.length]
            found.extend(frames[start:start + self.length] for start in starts)
        return found

    def covers_all_at_once(self) -> bool:
        return self.windows() == [list(range(self.latent_frames))]

    def weights(self, window: list[int]) -> torch.Tensor:
        """Per frame of `window`: 1 inside, ramping up over the overlap at an edge another window shares (never 0)."""
        ramp = BLENDS[self.blend]
        count = len(window)
        weights = torch.ones(count)
        edge = min(self.overlap, count // 2)
        if edge == 0:
            return weights
        for position in range(edge):
            value = ramp((position + 1) / (edge + 1))
            if window[0] >= self.stride:  # an earlier window of the same frames shares this edge
                weights[position] = min(weights[position], value)
            if window[-1] + self.stride < self.latent_frames:
                weights[count - 1 - position] = min(weights[count - 1 - position], value)
        return weights


@contextmanager
def windowed_transformer(transformer, windows: ContextWindows | None):
    """`transformer` runs on each window and blends them for the length of the block; as it was afterwards.
    Takes Wan's layout: hidden states (batch, channels, frames, height, width), one timestep per batch item."""
    if windows is None or windows.covers_all_at_once():
        yield
        return
    had_own_forward = "forward" in transformer.__dict__
    forward = transformer.forward
    plan = [(torch.tensor(window), windows.weights(window)) for window in windows.windows()]

    def windowed_forward(hidden_states, *args, return_dict=True, **kwargs):
        blended = None
        total = torch.zeros(hidden_states.shape[2], dtype=torch.float32, device=hidden_states.device)
        for frames, weights in plan:
            frames = frames.to(hidden_states.device)
            weights = weights.to(hidden_states.device)
            out = forward(hidden_states.index_select(2, frames), *args, return_dict=False, **kwargs)[0]
            if blended is None:
                shape = (out.shape[0], out.shape[1], hidden_states.shape[2], *out.shape[3:])
                blended = torch.zeros(shape, dtype=torch.float32, device=out.device)
            blended.index_add_(2, frames, out.float() * weights.view(1, 1, -1, 1, 1))
            total.index_add_(0, frames, weights)
        sample = (blended / total.view(1, 1, -1, 1, 1)).to(out.dtype)
        return Transformer2DModelOutput(sample=sample) if return_dict else (sample,)

    transformer.forward = windowed_forward
    try:
        yield
    finally:
        if had_own_forward:
            transformer.forward = forward
        else:
            del transformer.forward
