"""FramePack's sections as they finish: the video so far, for the person waiting on a long video.

diffusers' `HunyuanVideoFramepackPipeline` makes every section in one call, and its step callback sees only the latents
of the section being denoised. After each section the pipeline decodes it: the first section's decode is the video so
far, and every later section is blended onto the video so far by `_soft_append`, whose result is the new video so far.
`watched_sections` listens to those two calls for one job, so the pipeline's own loop runs unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pipelines.outputs import OutputStore


@contextmanager
def watched_sections(pipe, on_section: Callable[[int, np.ndarray], None]):
    """For one pipeline call: `on_section(number, frames)` after each section, counted from 1, with the video so far
    as (frames, height, width, 3) floats in 0..1."""
    vae = pipe.vae
    decode, soft_append = vae.decode, pipe._soft_append
    finished = 0

    def report(video) -> None:
        nonlocal finished
        finished += 1
        on_section(finished, pipe.video_processor.postprocess_video(video, output_type="np")[0])

    def first_section_decode(*args, **kwargs):
        output = decode(*args, **kwargs)
        if finished == 0:
            report(output[0])
        return output

    def appended_section(history, current, overlap=0):
        video = soft_append(history, current, overlap)
        report(video)
        return video

    vae.decode = first_section_decode
    pipe._soft_append = appended_section
    try:
        yield
    finally:
        # The instance attributes go; the classes' methods are back.
        del vae.decode
        del pipe._soft_append


@dataclass
class PartialVideo:
    """The video so far of one job made in sections: after each section a playable MP4 (replaced whole, so a player
    never reads half a file; removed when the job ends) and its newest frame as a preview."""

    outputs: OutputStore
    stem: str
    fps: int
    sections: int
    # FramePack's anti-drifting order makes the end of the video first: the newest frames are at the start.
    newest_first: bool
    on_partial: Callable[[Path, str], None] | None = None
    on_preview: Callable[[Image.Image, str], None] | None = None
    path: Path | None = None

    def add_section(self, number: int, video: np.ndarray) -> None:
        frames = (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
        self.path = self.outputs.write_partial_video(frames, self.fps, self.stem)
        text = f"Section {number}/{self.sections} done: {len(frames)} frames so far"
        if self.on_partial is not None:
            self.on_partial(self.path, text)
        if self.on_preview is not None:
            self.on_preview(Image.fromarray(frames[0 if self.newest_first else -1]), text)

    @contextmanager
    def watching(self, pipe):
        """For one pipeline call: a section at a time into the partial video, which is gone afterwards, whatever
        happened (the finished video is saved the usual way)."""
        try:
            with watched_sections(pipe, self.add_section):
                yield
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)
                self.path = None
