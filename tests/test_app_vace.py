"""/generate_video with VACE's inputs (reference images, an input video, a mask) end to end through gradio_client."""

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.catalog import Catalog
from pipelines.media import encode_video, read_video
from tabs.video import VideoTab, video_fields


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vace-inputs")
    clip = np.zeros((8, 64, 96, 3), np.uint8)
    clip[..., 2] = 180
    (folder / "clip.mp4").write_bytes(encode_video(clip, 16, ".mp4", "input"))
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 48:] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.new("RGB", (48, 32), "orange").save(folder / "character.png")
    return folder


def test_generate_video_edits_a_clip_with_a_mask_and_references(app, client, inputs):
    file, used, summary, _, _ = client.predict(
        prompt="an orange cat walks in", model="demo-wan-vace", steps=2, seed=9, fps=16, frames=5, width=None, height=None,
        reference_images=[handle_file(str(inputs / "character.png"))], video=handle_file(str(inputs / "clip.mp4")),
        mask=handle_file(str(inputs / "mask.png")), keep_unmasked=True, vace_strength=0.75, api_name="/generate_video",
    )
    video = read_video(file)
    # No size given: the 3:2 clip at the tiny model's 64×64 pixel count (64 is the least height).
    assert video.frames.shape == (5, 64, 80, 3) and video.fps == 16
    parameters = used["parameters"]
    assert parameters["keep_unmasked"] is True and parameters["video"]["file"] == "clip.mp4" and parameters["vace_strength"] == 0.75
    context = SimpleNamespace(manager=SimpleNamespace(preset=SimpleNamespace(attention="sdpa")), store=SimpleNamespace(catalog=Catalog()))
    fields = video_fields(context, {})
    restored = dict(zip(fields.remembered_names, VideoTab(context, fields).values_from(parameters, "x.mp4")))
    assert (restored["keep_unmasked"], restored["vace_strength"]) == (True, 0.75)
    assert parameters["mask"]["sha256"] == hashlib.sha256((inputs / "mask.png").read_bytes()).hexdigest()
    assert [record["file"] for record in parameters["reference_images"]] == ["character.png"]
    assert "Input video 96×64 at 16 fps: sampled at 16 fps, its first 5 of 8 frames used" in summary
    # The kept left part is the clip's own blue, through the MP4 encoder.
    assert np.abs(video.frames[:, :, :24].astype(int) - (0, 0, 180)).max() < 12


def test_a_mask_without_a_video_is_a_clear_error(client, inputs):
    with pytest.raises(Exception) as error:
        client.predict(
            prompt="a fox", model="demo-wan-vace", steps=2, mask=handle_file(str(inputs / "mask.png")), api_name="/generate_video",
        )
    assert type(error.value).__name__ == "AppError" and "mask: a mask applies to an input video, and no video was given" in str(error.value)
