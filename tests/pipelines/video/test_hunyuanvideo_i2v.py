"""HunyuanVideo image to video on its tiny demo (the real repo's layout: a token-replace transformer, a Llava text
encoder that reads the picture): 2 steps through the video runner, the picture kept, the frames and size asked."""

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog import Catalog, Task
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.media import read_video
from pipelines.outputs import read_parameters
from pipelines.video.video_runner import VideoRequest, generate_video


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "start.png"
    Image.new("RGB", (128, 64), (200, 40, 20)).save(path)
    return str(path)


def make(manager, outputs, **values):
    request = VideoRequest(**{"prompt": "the fox turns its head", "model": "demo-hunyuanvideo-i2v", "steps": 2, "seed": 5, **values})
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())


def test_two_steps_make_the_asked_frames_at_the_pictures_aspect_and_record_them(manager, outputs, picture):
    result = make(manager, outputs, image=picture, frames=10)
    video = read_video(result.video.path)
    # 4k+1 frames, all of them (the token-replace model keeps its first frame; the 33-channel one would drop 4); the
    # picture's 2:1 at the demo's 64×64 pixel count, on the family's 16 px grid.
    assert video.frames.shape == (9, 64, 96, 3) and video.fps == 24
    assert result.frames_note.startswith("10 frames were asked for")
    saved = read_parameters(result.video.path)
    assert (saved["model"], saved["frames"], saved["width"], saved["height"], saved["steps"]) == ("demo-hunyuanvideo-i2v", 9, 96, 64, 2)
    assert saved["image"]["file"] == "start.png" and saved["guidance"] == 6.0 and saved["flow_shift"] == 7.0
    assert len(saved["schedule"]["base"]) == 2


def test_the_same_seed_and_picture_give_the_same_video_and_another_picture_another(manager, outputs, picture, tmp_path):
    first = read_video(make(manager, outputs, image=picture, frames=5, width=64, height=64).video.path).frames
    again = read_video(make(manager, outputs, image=picture, frames=5, width=64, height=64).video.path).frames
    other = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (20, 40, 220)).save(other)
    elsewhere = read_video(make(manager, outputs, image=str(other), frames=5, width=64, height=64).video.path).frames
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, elsewhere)


def test_it_needs_a_picture_and_is_offered_as_image_to_video(tmp_path):
    catalog = Catalog()
    assert catalog.spec("hunyuanvideo-i2v").task is Task.IMAGE_TO_VIDEO
    assert catalog.spec("hunyuanvideo-i2v").pipeline_class == "HunyuanVideoImageToVideoPipeline"
    with pytest.raises(InvalidRequest, match="image: HunyuanVideo I2V \\(tiny\\) makes a video from a picture"):
        VideoRequest(prompt="a fox", model="demo-hunyuanvideo-i2v").check(catalog, tmp_path)


def test_enhance_a_video_and_teacache_run_on_it(manager, outputs, picture):
    record = make(manager, outputs, image=picture, frames=5, width=64, height=64, steps=6, speed="fast", cache_threshold=0.3,
                  enhance_weight=2.0).video.parameters
    assert record["enhance"]["applications"] > 0 and record["step_cache"]["method"] == "teacache"
    assert record["step_cache"]["calls_skipped"] > 0


def test_its_memory_plan_streams_the_t2v_transformer_layout_beside_its_larger_llava_encoder(presets):
    """The released I2V transformer keeps T2V's 16 input channels (token replace), so its 13B blocks are T2V's; its
    Llava encoder (Llama-3-8B with its LM head, a CLIP vision tower and a projector) is larger than T2V's Llama."""
    from pipelines.memory.job_plan import plan_job
    from pipelines.memory.job_shape import denoiser_layout

    catalog = Catalog()
    t2v, i2v = catalog.spec("hunyuanvideo-t2v"), catalog.spec("hunyuanvideo-i2v")
    assert denoiser_layout(i2v) == denoiser_layout(t2v) and denoiser_layout(i2v) is not None
    plans = {spec.id: plan_job(spec, presets["8gb-laptop"], 128 * 10**9, 960, 544, 129).as_dict() for spec in (t2v, i2v)}
    parts = {model: {c["name"]: c for c in plan["components"]} for model, plan in plans.items()}
    assert parts["hunyuanvideo-i2v"]["transformer"] == parts["hunyuanvideo-t2v"]["transformer"]
    assert "streamed" in parts["hunyuanvideo-i2v"]["transformer"]["tier"]
    # Held the same way as T2V's encoder, in proportion to its bytes (16.71 GB against 15.0 GB).
    encoders = [parts[model]["text_encoder"] for model in ("hunyuanvideo-i2v", "hunyuanvideo-t2v")]
    assert encoders[0]["tier"] == encoders[1]["tier"]
    held = [encoder["ram_gb"] or encoder["disk_gb_per_job"] for encoder in encoders]  # in RAM, or read from disk
    assert held[0] / held[1] == pytest.approx(16.71 / 15.0, rel=0.01)


def test_the_8gb_preset_streams_its_transformer_with_enhance_a_video_and_makes_the_same_video(demo_models_dir, presets, outputs, picture):
    """The memory engine binds the streamed weights to the blocks; Enhance-A-Video wraps attention processors only, so
    the streamed job makes the resident job's video, enhanced alike."""
    made = {}
    for preset in ("cpu", "8gb-laptop"):
        engine = ModelManager(ModelStore(demo_models_dir, offline=True), presets[preset])
        result = make(engine, outputs, image=picture, frames=5, width=64, height=64, enhance_weight=2.0)
        made[preset] = (read_video(result.video.path).frames, result.video.parameters["enhance"])
        if preset == "8gb-laptop":
            assert engine.status().block_plan is not None and engine.status().plan.components["text_encoder"].value == "offload"
    assert np.array_equal(made["cpu"][0], made["8gb-laptop"][0])
    assert made["cpu"][1]["applications"] == made["8gb-laptop"][1]["applications"] > 0
