"""Long videos on the tiny models: Wan in context windows (windows over everything change nothing, smaller windows make
the asked length in windows × steps transformer passes, bad window settings name their field) and SkyReels V2 in
chunks continuing from the last frames."""

import numpy as np
import pytest

import torch

from pipelines.catalog import Catalog
from pipelines.video.context_windows import ContextWindows, windowed_transformer
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.media import read_video
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters
from pipelines.video.video_runner import VideoRequest, generate_video


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


def make(manager, outputs, **values):
    request = VideoRequest(**{"prompt": "a fox in the snow", "model": "demo-wan", "width": 64, "height": 64,
                              "steps": 2, "seed": 3, "guidance": 1.0, **values})
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())


def test_windows_covering_the_whole_video_give_exactly_the_plain_video(manager, outputs):
    plain = read_video(make(manager, outputs, frames=9).video.path).frames
    windowed = read_video(make(manager, outputs, frames=9, context_frames=9, context_overlap=4).video.path).frames
    assert np.array_equal(plain, windowed)


def test_smaller_windows_make_the_asked_length_in_windows_times_steps_passes(manager, outputs):
    # The manager keeps the model loaded between jobs: count passes on its transformer's patch embedding.
    calls = []
    with manager.use("demo-wan") as pipe:
        handle = pipe.transformer.patch_embedding.register_forward_hook(lambda *args: calls.append(1))
    try:
        # 25 frames = 7 latent frames; windows of 9 frames (3 latent) sharing 4 frames (1 latent): 3 windows a step.
        result = make(manager, outputs, frames=25, context_frames=9, context_overlap=4)
    finally:
        handle.remove()
    video = read_video(result.video.path)
    assert video.frames.shape == (25, 64, 64, 3) and np.isfinite(video.frames).all()
    assert len(calls) == 3 * 2
    assert "3 windows per step × 2 steps = 6 transformer passes" in result.length_note
    saved = read_parameters(result.video.path)
    assert (saved["context_frames"], saved["context_overlap"], saved["transformer_passes"]) == (9, 4, 6)


def test_frames_beyond_the_models_length_need_context_windows(manager):
    catalog, models = manager.store.catalog, manager.store.models_dir
    with pytest.raises(InvalidRequest, match="with Long video .* up to 513"):
        VideoRequest(prompt="long", model="demo-wan", frames=200).check(catalog, models)
    checked = VideoRequest(prompt="long", model="demo-wan", frames=200, context_frames=81, guidance=5.0, steps=10).check(catalog, models)
    assert checked.request.frames == 201 and checked.request.context_overlap == 20 and checked.request.context_stride == 1
    # 51 latent frames, windows of 21 sharing 5: starts 0, 16, 30 → 3 windows, twice a step with guidance.
    assert checked.transformer_passes() == (3, 60)
    assert "201 frames = 12.56 s" in checked.length_note() and "(with and without the prompt)" in checked.length_note()


@pytest.mark.parametrize(
    "values, field, message",
    [
        (dict(context_frames=9, context_overlap=9), "context_overlap", "fewer than the window's 9 frames"),
        (dict(context_frames=9, context_overlap=-4), "context_overlap", "out of range"),
        (dict(context_frames=9, context_stride=5), "context_stride", "more than the video's 7"),
        (dict(context_frames=9, context_stride=0), "context_stride", "out of range"),
        (dict(context_frames=3), "context_frames", "at least 5 frames"),
        (dict(context_frames=9, frames=600), "frames", "1 to 513 frames in a long video"),
        (dict(context_frames=9, context_blend="wavy"), "context_blend", "choose one of linear, cosine"),
        (dict(model="demo-ltx", context_frames=9), "context_frames", "does not make long videos"),
    ],
)
def test_bad_window_settings_name_their_field(manager, values, field, message):
    request = VideoRequest(**{"prompt": "long", "model": "demo-wan", "frames": 25, **values})
    with pytest.raises(InvalidRequest) as error:
        request.check(manager.store.catalog, manager.store.models_dir)
    assert error.value.field == field and message in str(error.value)


def test_overlapping_frames_are_blended_with_weights_that_ramp_at_shared_edges():
    windows = ContextWindows(latent_frames=7, length=3, overlap=1, blend="cosine")
    assert windows.windows() == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    first, middle, last = (windows.weights(window).tolist() for window in windows.windows())
    assert first[0] == 1.0 and first[-1] == pytest.approx(0.5) and middle[0] == middle[-1] == pytest.approx(0.5)
    assert last[-1] == 1.0
    strided = ContextWindows(latent_frames=7, length=3, overlap=1, stride=2)
    # Even frames in two windows sharing frame 2 and 4 (one latent frame of overlap at stride 2), odd frames in one.
    assert strided.windows() == [[0, 2, 4], [2, 4, 6], [1, 3, 5]]


class FrameByFrame(torch.nn.Module):
    """A stand-in transformer whose output for a frame depends on that frame alone, so any blend must give it back."""

    def forward(self, hidden_states, timestep, return_dict=True):
        return (hidden_states * 2 + timestep.view(-1, 1, 1, 1, 1),)


@pytest.mark.parametrize("blend, stride", [("linear", 1), ("cosine", 1), ("linear", 2)])
def test_blended_windows_give_back_a_frame_by_frame_result_exactly_and_the_forward_afterwards(blend, stride):
    model = FrameByFrame()
    hidden = torch.randn(1, 4, 11, 2, 2)
    timestep = torch.tensor([3.0])
    plain = model(hidden, timestep)[0]
    with windowed_transformer(model, ContextWindows(latent_frames=11, length=4, overlap=2, stride=stride, blend=blend)):
        windowed = model(hidden, timestep, return_dict=False)[0]
    assert torch.allclose(windowed, plain, atol=1e-6)
    assert "forward" not in model.__dict__


def test_skyreels_demo_makes_a_long_video_in_chunks_continuing_from_the_last_frames(manager, outputs):
    calls = []
    with manager.use("demo-skyreels-v2") as pipe:
        handle = pipe.transformer.patch_embedding.register_forward_hook(lambda *args: calls.append(1))
    try:
        # 21 frames = 6 latent frames; chunks of 9 frames (3 latent), each continuing from the last 5 (2 latent): 4 chunks.
        result = make(manager, outputs, model="demo-skyreels-v2", frames=21, context_frames=9, context_overlap=5)
    finally:
        handle.remove()
    video = read_video(result.video.path)
    assert video.frames.shape == (21, 64, 64, 3) and video.fps == 24
    assert "4 chunks × 2 steps = 8 transformer passes" in result.length_note
    assert len(calls) == 8
    with pytest.raises(InvalidRequest, match="context_stride: 2 is out of range; use 1$"):
        VideoRequest(prompt="long", model="demo-skyreels-v2", frames=21, context_frames=9, context_stride=2).check(
            manager.store.catalog, manager.store.models_dir
        )


def test_a_step_cache_is_refused_in_context_windows_by_name(demo_models_dir):
    models = demo_models_dir
    with pytest.raises(InvalidRequest, match="speed: step caching does not work with context windows"):
        VideoRequest(prompt="long", model="demo-wan", frames=200, context_frames=81, speed="fast").check(Catalog(), models)
    VideoRequest(prompt="long", model="demo-wan", frames=200, context_frames=81, speed="off").check(Catalog(), models)
