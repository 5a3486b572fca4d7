"""/generate_video end to end through gradio_client, as a script would call it."""

import json
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.media import read_comment, read_video


@pytest.fixture(scope="module")
def start_picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "start.png"
    Image.new("RGB", (96, 64), (200, 40, 40)).save(path)
    return path


def test_generate_video_returns_the_file_and_the_parameters_used(app, client):
    file, used, summary, player, _ = client.predict(
        prompt="a fox in the snow", model="demo-wan", width=96, height=64, frames=10, fps=8, steps=2, seed=5,
        interpolation="blend-2x", filename_prefix="../../escape", api_name="/generate_video",
    )
    video = read_video(file)
    # 10 frames round to 9 (4k+1); ×2 blend makes 17 at 16 fps.
    assert video.frames.shape == (17, 64, 96, 3) and video.fps == 16.0
    saved = Path(used["video"])
    assert saved.is_relative_to(app.outputs) and saved.name.endswith("-escape-demo-wan-5.mp4")
    parameters = used["parameters"]
    assert (parameters["frames"], parameters["frames_requested"], parameters["seed"]) == (9, 10, 5)
    assert json.loads(saved.with_suffix(".json").read_text())["frames_after_interpolation"] == 17
    assert json.loads(read_comment(saved))["model"] == "demo-wan"
    assert "so 9 were made" in summary and "random weights" in summary and player is not None


def test_image_to_video_without_a_size_takes_the_pictures_aspect(client, start_picture):
    file, used, _, _, _ = client.predict(
        prompt="the same picture, moving", model="demo-wan-i2v", image=handle_file(str(start_picture)), frames=5, steps=2,
        seed=1, format="gif", loop_count=0, width=None, height=None, api_name="/generate_video",
    )
    video = read_video(file)
    # 96×64 at the demo's 64×64 pixel count, on the 16-pixel grid (the 64-pixel minimum height).
    assert video.frames.shape[1:3] == (64, 80) and video.loop_count == 0 and len(video.frames) == 5
    assert used["parameters"]["image"]["file"] == "start.png"


def test_save_output_false_returns_a_file_and_leaves_nothing_under_outputs(app, client):
    before = sorted(app.outputs.rglob("*"))
    file, used, summary, _, _ = client.predict(
        prompt="only a temporary file", model="demo-ltx", frames=9, steps=2, seed=2, format="webm", save_output=False,
        api_name="/generate_video",
    )
    assert read_video(file).frames.shape == (9, 64, 64, 3)
    assert sorted(app.outputs.rglob("*")) == before and used["saved"] is False and "not saved" in summary


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(width=70), "width: 70 is not accepted by Wan2.1 T2V (tiny); use a multiple of 16"),
        (dict(frames=500), "frames: 500 is out of range; Wan2.1 T2V (tiny) makes 1 to 129 frames"),
        (dict(model="demo-wan-i2v"), "image: Wan2.1 I2V (tiny) makes a video from a picture; give an input image"),
        (dict(prompt=""), "prompt: must not be empty"),
        (dict(interpolation="rife-2x"), "interpolation: the learned interpolator needs its weights in"),
        (dict(model="demo-skyreels-v2", frames=21, ar_step=1, causal_block_size=4), "causal_block_size: 4 does not split the chunks"),
    ],
)
def test_bad_input_to_generate_video_is_a_clear_error(client, change, message):
    with pytest.raises(Exception) as error:
        client.predict(**{"prompt": "a fox", "model": "demo-wan", "steps": 2, **change}, api_name="/generate_video")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


def test_a_saved_video_is_listed_with_its_settings(client):
    client.predict(prompt="list me", model="demo-wan", frames=5, steps=2, seed=77, api_name="/generate_video")
    listed = client.predict(kind="videos", limit=1, api_name="/outputs")
    assert listed[0]["seed"] == 77 and listed[0]["prompt"] == "list me"


def test_generate_video_makes_a_long_video_in_context_windows_and_says_the_passes(client):
    # 141 frames is past the tiny Wan's 129 at once: 36 latent frames in windows of 9 frames (3 latent) sharing 4 (1 latent).
    file, used, summary, _, _ = client.predict(
        prompt="a long walk", model="demo-wan", width=64, height=64, frames=141, steps=2, guidance=1.0, seed=6,
        context_frames=9, context_overlap=4, context_stride=1, api_name="/generate_video",
    )
    assert len(read_video(file).frames) == 141
    parameters = used["parameters"]
    assert (parameters["context_frames"], parameters["context_overlap"], parameters["transformer_passes"]) == (9, 4, 36)
    assert "18 windows per step × 2 steps = 36 transformer passes" in summary


def test_bad_context_window_settings_are_a_clear_error(client):
    with pytest.raises(Exception) as error:
        client.predict(
            prompt="a fox", model="demo-wan", frames=25, steps=2, context_frames=9, context_overlap=12, api_name="/generate_video",
        )
    assert "context_overlap: 12 is out of range" in str(error.value)


def test_generate_video_makes_framepack_sections_and_plays_the_video_so_far_after_each(client, start_picture):
    job = client.submit(
        prompt="the picture, moving", model="demo-framepack", image=handle_file(str(start_picture)), frames=17,
        latent_window_size=2, steps=2, seed=8, width=None, height=None, fps=None, api_name="/generate_video",
    )
    file, used, summary, player, _ = job.result()
    video = read_video(file)
    assert video.frames.shape == (17, 64, 80, 3) and video.fps == 30.0
    assert used["parameters"]["latent_window_size"] == 2 and "in 2 sections of 8 frames" in summary
    # Before the result: the player got the video so far after the first section (5 frames). Gradio may fold the
    # second section's update (all 17 frames) into the result that follows it at once; the runner's tests see both.
    players = [update[3] for update in job.outputs() if isinstance(update, (list, tuple)) and len(update) == 5]
    partial_lengths = [len(read_video(path).frames) for path in players if isinstance(path, str) and path.endswith("-partial.mp4")]
    assert partial_lengths[0] == 5 and set(partial_lengths) <= {5, 17}


def test_hunyuanvideo_image_to_video_runs_through_the_api_from_a_picture(client, start_picture):
    file, used, summary, player, _ = client.predict(
        prompt="the picture comes alive", model="demo-hunyuanvideo-i2v", image=handle_file(str(start_picture)), frames=5,
        fps=24, steps=2, seed=3, width=None, height=None, api_name="/generate_video",
    )
    video = read_video(file)
    # All 5 frames (token replace keeps the first); 96×64 at the demo's 64×64 pixel count, on the 16-pixel grid.
    assert video.frames.shape == (5, 64, 80, 3) and video.fps == 24.0
    parameters = used["parameters"]
    assert (parameters["model"], parameters["steps"], parameters["seed"]) == ("demo-hunyuanvideo-i2v", 2, 3)
    assert parameters["image"]["file"] == "start.png" and player is not None and "random weights" in summary


def test_enhance_weight_is_taken_recorded_and_refused_where_the_model_has_none(client):
    _, used, _, _, _ = client.predict(
        prompt="an enhanced fox", model="demo-wan", frames=9, steps=2, seed=8, enhance_weight=2.5, api_name="/generate_video",
    )
    parameters = used["parameters"]
    assert parameters["enhance_weight"] == 2.5
    assert parameters["enhance"]["weight"] == 2.5 and parameters["enhance"]["applications"] > 0
    with pytest.raises(Exception) as error:
        client.predict(prompt="a fox", model="demo-skyreels-v2", steps=2, enhance_weight=1.0, api_name="/generate_video")
    assert type(error.value).__name__ == "AppError"
    assert "enhance_weight: SkyReels V2 DF (tiny) has no Enhance-A-Video" in str(error.value)
