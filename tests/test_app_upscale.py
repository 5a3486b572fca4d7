"""Upscaling and the hires fix end to end, through gradio_client as a script would: /upscale for a picture and a
video (size = scale × the input; a video keeps its frames, frame rate and sound), its refusals naming the field, and
/generate_image's hires_scale and hires_strength, recorded and given back by /reuse_settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.media import audio_duration, encode_audio, encode_video, read_video


def test_upscale_makes_a_picture_scale_times_bigger_and_saves_it_with_its_parameters(app, client, tmp_path):
    source = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(source)
    path, used, summary = client.predict(
        handle_file(str(source)), "demo-compact-2x.safetensors", 3, 0, api_name="/upscale",
    )
    assert Image.open(path).size == (120, 90) and "×3" in summary
    saved = Path(used["file"])
    assert saved.is_relative_to(app.outputs / "upscaled") and saved.is_file()
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    for record in (sidecar, used["parameters"], json.loads(Image.open(saved).text["atelier"])):
        assert (record["model"], record["scale"], record["tile"]) == ("demo-compact-2x.safetensors", 3.0, 0)
        assert record["source"]["file"] == "small.png" and record["source_size"] == [40, 30]


def test_upscale_of_a_video_keeps_its_frames_frame_rate_and_sound(client, tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (6, 24, 32, 3), dtype=np.uint8)
    sound = tmp_path / "tone.wav"
    sound.write_bytes(encode_audio(0.3 * np.sin(np.linspace(0, 900, 16000)).astype(np.float32), 16000, "{}"))
    source = tmp_path / "clip.mp4"
    source.write_bytes(encode_video(frames, 6.0, ".mp4", "{}", audio_from=sound))
    path, used, _ = client.predict(handle_file(str(source)), "demo-esrgan-4x.pth", 2, 0, api_name="/upscale")
    made = read_video(Path(path))
    assert made.frames.shape == (6, 48, 64, 3) and made.fps == 6.0
    assert audio_duration(Path(path)) == pytest.approx(audio_duration(source), abs=0.05)
    assert used["parameters"]["frames"] == 6


@pytest.mark.parametrize("change, message", [
    (dict(file="notes.txt"), "file: notes.txt is neither a picture nor a video"),
    (dict(model="4x-Nowhere.pth"), "model: unknown upscaler '4x-Nowhere.pth'"),
    (dict(scale=20), "scale: 20 is out of range"),
])
def test_upscale_refuses_bad_input_naming_the_field(client, tmp_path, change, message):
    (tmp_path / "notes.txt").write_text("no picture")
    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16)).save(picture)
    values = {"file": str(picture), "model": "demo-compact-2x.safetensors", "scale": 2, "tile": 0} | change
    if values["file"] == "notes.txt":
        values["file"] = str(tmp_path / "notes.txt")
    with pytest.raises(Exception) as error:
        client.predict(handle_file(values.pop("file")), **values, api_name="/upscale")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


def test_hires_fix_through_the_api_is_recorded_and_given_back_by_reuse_settings(client):
    gallery, used, _ = client.predict(
        prompt="a red barn", model="demo-sd3", width=256, height=256, steps=2, seed=5, hires_scale=1.5, hires_strength=0.4,
        api_name="/generate_image",
    )
    assert Image.open(gallery[0]["image"]).size == (384, 384)
    parameters = used["parameters"][0]
    assert (parameters["hires_scale"], parameters["hires_strength"], parameters["hires"]["size"]) == (1.5, 0.4, [384, 384])
    restored = client.predict(handle_file(used["images"][0]), api_name="/reuse_settings")
    assert tuple(restored[3:5]) == (256, 256) and tuple(restored[-2:]) == (1.5, 0.4)
