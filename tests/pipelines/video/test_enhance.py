"""Enhance-A-Video (pipelines/video/enhance.py): the cross-frame intensity against a hand-computed case, weight 0 leaves
the models untouched, a weight changes the video and is recorded, unsupported combinations are refused."""

import math

import diffusers
import numpy as np
import pytest
import torch

from pipelines.catalog import Catalog, Family
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.media import read_video
from pipelines.video import enhance
from pipelines.video.enhance import cross_frame_intensity, enhance_factor, enhanced_attention
from pipelines.video.video_runner import VideoRequest, generate_video

CASES = {
    "demo-wan": (diffusers.WanPipeline, Family.WAN),
    "demo-hunyuanvideo": (diffusers.HunyuanVideoPipeline, Family.HUNYUANVIDEO),
    "demo-ltx": (diffusers.LTXPipeline, Family.LTX),
}


def test_intensity_and_factor_match_a_hand_computed_case():
    # 2 frames × 2 spatial tokens, 1 head of size 1 (scale 1), tokens frame-major: f0s0, f0s1, f1s0, f1s1.
    # Token s0: queries (1, 0), keys (0, ln 3): frame 0 attends [1/4, 3/4], frame 1 [1/2, 1/2] → off-diagonal 3/4, 1/2.
    # Token s1: all zero → [1/2, 1/2] twice → off-diagonal 1/2, 1/2. Mean of the four: 9/16.
    query = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 4, 1, 1)
    key = torch.tensor([0.0, 0.0, math.log(3.0), 0.0]).reshape(1, 4, 1, 1)
    intensity = cross_frame_intensity(query, key, frames=2)
    assert intensity.item() == pytest.approx(9 / 16, abs=1e-6)
    # (frames + weight) × intensity, never below 1.
    assert enhance_factor(intensity, 2, 0.0).item() == pytest.approx(1.125, abs=1e-6)
    assert enhance_factor(intensity, 2, 2.0).item() == pytest.approx(2.25, abs=1e-6)
    assert enhance_factor(torch.tensor(0.1), 2, 1.0).item() == 1.0
    # One frame has no other frame to attend to.
    assert cross_frame_intensity(query[:, :2], key[:, :2], frames=1).item() == 0.0


def test_intensity_in_slices_equals_the_whole_map_at_once(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    frames, per_frame, heads, size = 5, 12, 3, 8
    query, key = (torch.randn(2, frames * per_frame, heads, size, generator=generator) for _ in range(2))
    q = query.reshape(2, frames, per_frame, heads, size).permute(0, 2, 3, 1, 4)
    k = key.reshape(2, frames, per_frame, heads, size).permute(0, 2, 3, 1, 4)
    maps = (q @ k.transpose(-2, -1) / math.sqrt(size)).softmax(-1)
    off_diagonal = maps.masked_fill(torch.eye(frames, dtype=torch.bool), 0.0).sum((-2, -1)) / (frames * frames - frames)
    monkeypatch.setattr(enhance, "_SLICE_ENTRIES", 64)  # a few spatial tokens per slice
    assert cross_frame_intensity(query, key, frames).item() == pytest.approx(off_diagonal.mean().item(), rel=1e-5)


@pytest.fixture(scope="module")
def pipes(demo_models_dir):
    loaded = {}
    for model, (pipeline_class, _) in CASES.items():
        pipe = pipeline_class.from_pretrained(demo_models_dir / "demo" / model)
        pipe.set_progress_bar_config(disable=True)
        loaded[model] = pipe
    return loaded


def render(pipe) -> np.ndarray:
    output = pipe(
        prompt="a fox", width=64, height=64, num_frames=9, num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    return np.asarray(output.frames)


@pytest.mark.parametrize("model", list(CASES))
def test_weight_zero_leaves_the_processors_and_the_video_exactly_as_they_were(pipes, model):
    pipe, family = pipes[model], CASES[model][1]
    processors = dict(pipe.transformer.attn_processors)
    plain = render(pipe)
    with enhanced_attention(pipe.transformer, family, 0.0) as report:
        assert dict(pipe.transformer.attn_processors) == processors
        untouched = render(pipe)
    np.testing.assert_array_equal(untouched, plain)
    assert report.record() == {"weight": 0.0, "attention_layers": 0, "applications": 0, "mean_factor": None}


@pytest.mark.parametrize("model", list(CASES))
def test_the_wrapper_passes_everything_through_and_only_scales(pipes, model, monkeypatch):
    """With the factor forced to 1 the wrapped attention gives the model's own video bit for bit (every argument, the
    rotary embedding included, reaches the model's processor); with the real factor the video changes, and the
    model's processors are back afterwards."""
    pipe, family = pipes[model], CASES[model][1]
    plain = render(pipe)
    with monkeypatch.context() as patch:
        patch.setattr(enhance, "enhance_factor", lambda intensity, frames, weight: torch.ones(()))
        with enhanced_attention(pipe.transformer, family, 2.0) as report:
            scaled_by_one = render(pipe)
    np.testing.assert_array_equal(scaled_by_one, plain)
    assert report.grid.applications > 0
    with enhanced_attention(pipe.transformer, family, 4.0) as report:
        enhanced = render(pipe)
    assert report.record()["mean_factor"] > 1.0
    assert np.abs(enhanced - plain).max() > 1e-3
    np.testing.assert_array_equal(render(pipe), plain)


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


def make(manager, outputs, **values):
    request = VideoRequest(**{"prompt": "a fox in the snow", "steps": 2, "seed": 4, "frames": 9, "width": 64, "height": 64, **values})
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())


@pytest.mark.parametrize("model", ["demo-wan", "demo-hunyuanvideo"])
def test_a_weight_changes_the_video_and_is_recorded_and_zero_gives_todays_video(manager, outputs, model):
    plain = make(manager, outputs, model=model)
    enhanced = make(manager, outputs, model=model, enhance_weight=3.0)
    again = make(manager, outputs, model=model, enhance_weight=0)
    plain_frames, enhanced_frames = read_video(plain.video.path).frames, read_video(enhanced.video.path).frames
    assert enhanced_frames.shape == plain_frames.shape and not np.array_equal(enhanced_frames, plain_frames)
    np.testing.assert_array_equal(read_video(again.video.path).frames, plain_frames)
    record = enhanced.video.parameters
    assert record["enhance_weight"] == 3.0
    assert record["enhance"]["weight"] == 3.0 and record["enhance"]["applications"] > 0 and record["enhance"]["mean_factor"] >= 1.0
    assert plain.video.parameters["enhance_weight"] == 0.0 and plain.video.parameters["enhance"]["applications"] == 0


def test_enhance_runs_beside_a_step_cache(manager, outputs):
    record = make(manager, outputs, model="demo-wan", steps=8, speed="fast", enhance_weight=2.0).video.parameters
    assert record["step_cache"]["calls_skipped"] > 0 and record["enhance"]["applications"] > 0


@pytest.mark.parametrize("values, message", [
    (dict(enhance_weight=10.5), "enhance_weight: 10.5 is out of range; use 0 (off) to 10"),
    (dict(enhance_weight=-1), "enhance_weight: -1 is out of range"),
    (dict(enhance_weight="a lot"), "enhance_weight: 'a lot' is not a number"),
    (dict(model="demo-skyreels-v2", enhance_weight=1.0), "enhance_weight: SkyReels V2 DF (tiny) has no Enhance-A-Video"),
    (dict(enhance_weight=1.0, compile="on"), "enhance_weight: Enhance-A-Video does not work with compiled blocks yet"),
])
def test_bad_weights_are_refused_before_anything_loads(tmp_path, values, message):
    with pytest.raises(InvalidRequest) as error:
        VideoRequest(**{"prompt": "a fox", "model": "demo-wan", **values}).check(Catalog(), tmp_path)
    assert message in str(error.value)


def test_a_family_without_enhance_runs_at_weight_zero(tmp_path):
    job = VideoRequest(prompt="a fox", model="demo-skyreels-v2", enhance_weight=0).check(Catalog(), tmp_path)
    assert job.request.enhance_weight == 0.0
