"""Video Combine: generated frames to a video file, the way ComfyUI users know it.

`frame_rate`, `format` (H.264 MP4, WebM, GIF, animated WebP), `pingpong` (forward then back), `loop_count`
(how many times the clip repeats after its first play: GIF and WebP store it in the file, 0 meaning forever;
MP4 and WebM cannot, so their frames are repeated), `filename_prefix` (reduced to a safe name fragment) and
`save_output` (keep the file under outputs/ with its sidecar, or only hand back a temporary file).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from pipelines.errors import InvalidRequest
from pipelines.media import encode_video
from pipelines.outputs import OutputStore, SavedOutput, safe_name
from pipelines.request_values import MAX_SHORT_TEXT_CHARS, checked_text, number, whole_number

MAX_FRAME_RATE = 120.0
MAX_LOOP_COUNT = 100
MAX_PREFIX_CHARS = 40


@dataclass(frozen=True)
class VideoFormat:
    label: str
    suffix: str
    # Whether the container stores a loop count (else loops are written out as repeated frames).
    stores_loop_count: bool = False
    # What the container's loop field means relative to "repeats after the first play": GIF's Netscape count is
    # the number of repeats, WebP's the number of plays.
    loop_field_offset: int = 0


FORMATS: Mapping[str, VideoFormat] = {
    "mp4": VideoFormat("H.264 MP4", ".mp4"),
    "webm": VideoFormat("WebM (VP9)", ".webm"),
    "gif": VideoFormat("GIF", ".gif", stores_loop_count=True),
    "webp": VideoFormat("Animated WebP", ".webp", stores_loop_count=True, loop_field_offset=1),
}


@dataclass(frozen=True)
class ExportSettings:
    """Inputs as given; `frame_rate=None` means the rate the video was generated for."""

    frame_rate: float | None = None
    loop_count: int = 0
    format: str = "mp4"
    pingpong: bool = False
    filename_prefix: str = ""
    save_output: bool = True

    def check(self, default_frame_rate: float) -> "ExportSettings":
        if self.format not in FORMATS:
            raise InvalidRequest("format", f"{self.format!r} is not offered; choose one of {', '.join(FORMATS)}")
        frame_rate = number("frame_rate", self.frame_rate, default_frame_rate)
        if not 1.0 <= frame_rate <= MAX_FRAME_RATE:
            raise InvalidRequest("frame_rate", f"{frame_rate:g} is out of range; use 1 to {MAX_FRAME_RATE:g} frames per second")
        loop_count = whole_number("loop_count", self.loop_count, 0)
        if not 0 <= loop_count <= MAX_LOOP_COUNT:
            raise InvalidRequest("loop_count", f"{loop_count} is out of range; use 0 to {MAX_LOOP_COUNT}")
        given = checked_text("filename_prefix", self.filename_prefix, MAX_SHORT_TEXT_CHARS)
        prefix = safe_name(given, MAX_PREFIX_CHARS) if given else ""
        return replace(
            self, frame_rate=frame_rate, loop_count=loop_count, pingpong=bool(self.pingpong), filename_prefix=prefix,
            save_output=bool(self.save_output),
        )


@dataclass(frozen=True)
class ExportedVideo:
    path: Path
    frame_count: int
    frame_rate: float
    # What was embedded in the file (and, when saved, in its sidecar).
    parameters: dict
    # The saved output (with its sidecar) when `save_output`; None for a temporary file.
    saved: SavedOutput | None

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.frame_rate


def sequence(frames: np.ndarray, settings: ExportSettings) -> np.ndarray:
    """The frames in the order they are written: forward then back for pingpong (the turning frames once each, so
    the loop has no stutter: n frames give 2n−2), repeated for loops where the container cannot store a count."""
    if settings.pingpong and len(frames) > 2:
        frames = np.concatenate([frames, frames[-2:0:-1]])
    if not FORMATS[settings.format].stores_loop_count and settings.loop_count:
        frames = np.concatenate([frames] * (settings.loop_count + 1))
    return frames


def export_video(frames: np.ndarray, settings: ExportSettings, parameters: dict, outputs: OutputStore) -> ExportedVideo:
    """Write `frames` (n, height, width, 3 uint8) as `settings` (checked) say; `parameters` are embedded and recorded."""
    video_format = FORMATS[settings.format]
    written = sequence(frames, settings)
    loop_field = settings.loop_count + video_format.loop_field_offset if settings.loop_count else 0
    parameters = {**parameters, "export": {**settings.__dict__, "format_label": video_format.label}, "frames_written": len(written)}
    if settings.save_output:
        saved = outputs.save_video(
            written, settings.frame_rate, video_format.suffix, parameters, loop_count=loop_field, prefix=settings.filename_prefix,
        )
        return ExportedVideo(saved.path, len(written), settings.frame_rate, saved.parameters, saved)
    data = encode_video(written, settings.frame_rate, video_format.suffix, json.dumps(parameters, ensure_ascii=False), loop_field)
    # Outside outputs/: the system's temporary folder, which the UI may serve and the OS clears.
    folder = Path(tempfile.mkdtemp(prefix="atelier-video-"))
    stem = "-".join(part for part in (settings.filename_prefix, safe_name(str(parameters.get("model", "video")))) if part)
    path = folder / f"{stem}-{parameters.get('seed', 0)}{video_format.suffix}"
    path.write_bytes(data)
    return ExportedVideo(path, len(written), settings.frame_rate, parameters, None)
