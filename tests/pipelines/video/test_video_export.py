"""Video Combine on a synthetic clip: every format round-trips, loops and pingpong show in the file, names stay inside."""

import json

import numpy as np
import pytest

from pipelines.errors import InvalidRequest
from pipelines.media import read_video
from pipelines.outputs import read_parameters
from pipelines.video.video_export import FORMATS, ExportSettings, export_video

# Five frames of clearly different grey levels: order survives any of the lossy codecs.
LEVELS = [0, 60, 120, 180, 240]
PARAMETERS = {"model": "demo-wan", "seed": 3, "prompt": "grey ramp"}


@pytest.fixture
def clip():
    return np.stack([np.full((32, 48, 3), level, np.uint8) for level in LEVELS])


def levels(video) -> list[int]:
    """Each frame's grey level, snapped to the nearest level of the clip."""
    means = video.frames.reshape(len(video.frames), -1).mean(axis=1)
    return [min(LEVELS, key=lambda level: abs(level - mean)) for mean in means]


@pytest.mark.parametrize("video_format", list(FORMATS))
def test_each_format_is_written_readable_and_carries_its_parameters(clip, outputs, video_format):
    exported = export_video(clip, ExportSettings(frame_rate=10, format=video_format).check(16), PARAMETERS, outputs)
    video = read_video(exported.path)
    assert exported.path.suffix == FORMATS[video_format].suffix and exported.path.is_relative_to(outputs.root / "videos")
    assert video.frames.shape == (5, 32, 48, 3) and levels(video) == LEVELS
    assert video.fps == pytest.approx(10, rel=0.02)  # GIF stores delays in 1/100 s
    embedded = read_parameters(exported.path.rename(exported.path.with_name("moved" + exported.path.suffix)))
    assert embedded["prompt"] == "grey ramp" and embedded["export"]["format"] == video_format
    assert json.loads(exported.saved.sidecar.read_text())["frames_written"] == 5


@pytest.mark.parametrize("video_format, stored_loop", [("gif", 2), ("webp", 3)])
def test_gif_and_webp_store_the_loop_count(clip, outputs, video_format, stored_loop):
    repeating = export_video(clip, ExportSettings(format=video_format, loop_count=2).check(16), PARAMETERS, outputs)
    forever = export_video(clip, ExportSettings(format=video_format, loop_count=0).check(16), PARAMETERS, outputs)
    # GIF's field counts repeats after the first play, WebP's counts plays; 0 is forever in both.
    assert read_video(repeating.path).loop_count == stored_loop and read_video(forever.path).loop_count == 0
    assert len(read_video(repeating.path).frames) == 5


@pytest.mark.parametrize("video_format", ["mp4", "webm"])
def test_mp4_and_webm_write_loops_out_as_repeated_frames(clip, outputs, video_format):
    exported = export_video(clip, ExportSettings(format=video_format, loop_count=2).check(16), PARAMETERS, outputs)
    assert levels(read_video(exported.path)) == LEVELS * 3 and exported.frame_count == 15


def test_pingpong_plays_forward_then_back_without_repeating_the_turning_frames(clip, outputs):
    exported = export_video(clip, ExportSettings(format="mp4", pingpong=True).check(16), PARAMETERS, outputs)
    assert levels(read_video(exported.path)) == [0, 60, 120, 180, 240, 180, 120, 60]


@pytest.mark.parametrize(
    "prefix, name_start", [("../../x", "x-"), ("/etc/passwd", "etc-passwd-"), ("..", "output-"), ("my clip", "my-clip-")]
)
def test_the_filename_prefix_cannot_leave_the_outputs_folder(clip, outputs, prefix, name_start):
    exported = export_video(clip, ExportSettings(filename_prefix=prefix).check(16), PARAMETERS, outputs)
    assert exported.path.parent.parent == outputs.root / "videos"
    assert exported.path.name[len("00001-"):].startswith(name_start + "demo-wan-3")


def test_save_output_false_leaves_nothing_under_outputs(clip, outputs):
    exported = export_video(clip, ExportSettings(save_output=False, format="gif").check(16), PARAMETERS, outputs)
    assert exported.saved is None and not outputs.root.exists()
    assert len(read_video(exported.path).frames) == 5 and read_parameters(exported.path)["seed"] == 3


@pytest.mark.parametrize(
    "settings, message",
    [
        (ExportSettings(format="avi"), "format: 'avi' is not offered"),
        (ExportSettings(loop_count=-1), "loop_count: -1 is out of range"),
        (ExportSettings(frame_rate=0), "frame_rate: 0 is out of range"),
    ],
)
def test_bad_export_settings_are_clear_errors(settings, message):
    with pytest.raises(InvalidRequest, match=message):
        settings.check(16)
