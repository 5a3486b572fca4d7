"""Media errors say which file by its name, never the folder it was uploaded to, and leave ffmpeg's words to the log."""

import logging

import numpy as np
import pytest

from pipelines.media import MediaError, encode_video, image_size, probe_video, read_audio, read_comment, read_video, read_video_frames

UPLOAD_FOLDER = "gradio-hash-0123456789abcdef"


@pytest.fixture
def broken(tmp_path):
    folder = tmp_path / UPLOAD_FOLDER
    folder.mkdir()
    path = folder / "holiday.mp4"
    path.write_bytes(b"this is no video at all" * 10)
    return path


@pytest.mark.parametrize("read", [
    lambda path: image_size(path.with_suffix(".png")),
    lambda path: probe_video(path),
    lambda path: read_video(path),
    lambda path: read_video_frames(path, (64, 64), 8, 4),
    lambda path: read_comment(path),
])
def test_an_unreadable_file_is_named_without_its_folder_or_ffmpegs_output(broken, read, caplog):
    broken.with_suffix(".png").write_bytes(broken.read_bytes())
    with caplog.at_level(logging.INFO), pytest.raises(MediaError) as error:
        read(broken)
    message = str(error.value)
    assert broken.stem in message and UPLOAD_FOLDER not in message and "Invalid data" not in message
    assert UPLOAD_FOLDER in caplog.text, "the details are in the log"


def test_unreadable_audio_says_so_without_the_path(broken):
    with pytest.raises(MediaError) as error:
        read_audio(broken, 16000, 5)
    assert str(error.value).startswith("not an audio format this app reads") and UPLOAD_FOLDER not in str(error.value)


def test_a_failed_encode_names_the_format():
    with pytest.raises(MediaError, match="ffmpeg could not encode the video as MP4"):
        encode_video(np.zeros((1, 63, 63, 3), dtype=np.uint8), 8, ".mp4", "{}")  # H.264 4:2:0 refuses odd sides
