"""Uploads through the real app: a file that is no picture answers with the slot and the file's name (never Gradio's
"Could not preprocess input component…"), and a picture or clip too big is refused from its header before anything
decodes it — measured as the app process's peak memory (VmHWM), which a decode of the file would raise by hundreds
of MB."""

import subprocess
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.media import ffmpeg_exe

MB = 1024**2
# What checking a header costs the app, with room for Python's own allocations while it answers; a decode of the
# files below costs 400–800 MB.
HEADER_CHECK_BUDGET_BYTES = 150 * MB


@pytest.fixture(scope="module")
def not_a_picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("uploads") / "holiday.png"
    path.write_bytes(b"this is a text file with a picture's name\n" * 50)
    return path


@pytest.fixture(scope="module")
def huge_bilevel_png(tmp_path_factory) -> Path:
    """13000×13000 pixels (169 megapixels) of 1-bit PNG: about 20 KB on disk, 507 MB once Gradio makes it RGB."""
    path = tmp_path_factory.mktemp("uploads") / "poster.png"
    Image.new("1", (13_000, 13_000)).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def hour_long_clip(tmp_path_factory) -> Path:
    """60 minutes of quiet, 3.6 MB as 8 kbit/s MP3; ten minutes of it decoded at 48 kHz stereo are 230 MB."""
    path = tmp_path_factory.mktemp("uploads") / "concert.mp3"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3600", "-c:a", "libmp3lame",
         "-b:a", "8k", str(path)],
        check=True, timeout=300,
    )
    return path


class PeakMemory:
    """The app process's peak resident memory over a block: the kernel's high-water mark, reset first."""

    def __init__(self, pid: int):
        self.status = Path(f"/proc/{pid}/status")
        self.clear_refs = Path(f"/proc/{pid}/clear_refs")

    def _field(self, name: str) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    def __enter__(self):
        self.clear_refs.write_text("5")  # resets VmHWM to the current resident size
        self.before = self._field("VmRSS")
        return self

    def __exit__(self, *exc):
        self.rise = self._field("VmHWM") - self.before
        print(f"peak resident memory of the app rose by {self.rise / MB:.1f} MB")
        return False


def _refusal(client, **call) -> str:
    with pytest.raises(Exception) as refused:
        client.predict(**call)
    assert type(refused.value).__name__ == "AppError"
    return str(refused.value)


def test_a_file_that_is_no_picture_is_refused_naming_the_slot_and_the_file_in_every_image_slot(client, not_a_picture):
    upload = handle_file(str(not_a_picture))
    calls = {
        "Start image": dict(prompt="a fox", init_image=upload, steps=2, api_name="/generate_image"),
        "Input image": dict(prompt="a fox", image=upload, model="demo-wan-i2v", steps=2, api_name="/generate_video"),
        "Depth map": dict(instruction="a fox", images=[upload], mode="depth", depth_map=upload, api_name="/edit_image"),
        "images": dict(instruction="a fox", images=[upload], api_name="/edit_image"),
    }
    for slot, call in calls.items():
        message = _refusal(client, **call)
        assert "holiday.png is not a readable image" in message and slot in message, message
        assert "preprocess" not in message and "Unidentified" not in message and "/tmp" not in message


def test_a_picture_too_big_is_refused_from_its_header_before_gradio_decodes_it(app, client, huge_bilevel_png):
    with PeakMemory(app.process.pid) as memory:
        message = _refusal(client, prompt="a fox", init_image=handle_file(str(huge_bilevel_png)), steps=2, api_name="/generate_image")
    assert memory.rise < HEADER_CHECK_BUDGET_BYTES, f"the app's memory rose by {memory.rise / MB:.0f} MB"
    assert "Start image: poster.png is 13000×13000 pixels; images up to 64 megapixels are accepted" in message


def test_an_hour_long_clip_for_a_cover_is_refused_from_its_header_before_it_is_decoded(app, client, hour_long_clip):
    with PeakMemory(app.process.pid) as memory:
        message = _refusal(
            client, tags="jazz piano", task="cover", audio=handle_file(str(hour_long_clip)), steps=2, api_name="/generate_music",
        )
    assert memory.rise < HEADER_CHECK_BUDGET_BYTES, f"the app's memory rose by {memory.rise / MB:.0f} MB"
    assert "concert.mp3 is 60.0 minutes long; at most 10 minutes are read" in message


def test_a_file_that_is_no_audio_is_named_plainly_without_ffmpeg_or_a_path(client, not_a_picture):
    message = _refusal(client, tags="jazz", task="cover", audio=handle_file(str(not_a_picture)), api_name="/generate_music")
    assert "holiday.png is not readable audio" in message
    assert "ffmpeg" not in message and "/tmp" not in message
