"""SkyReels V2 asynchronous diffusion forcing: our count of rounds is diffusers' schedule, the tiny model runs it in
the rounds stated and leaves the next synchronous job as it was, and bad combinations name their field."""

import itertools

import numpy as np
import pytest
import torch
from diffusers import SkyReelsV2DiffusionForcingPipeline

from pipelines.catalog import Catalog
from pipelines.memory.chunked_blocks import LeanSettings, lean_blocks
from pipelines.video.diffusion_forcing import Chunk, chunks, rounds
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.media import read_video
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import OutputStore, read_parameters
from pipelines.video.video_runner import VideoRequest, generate_video


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


def test_the_rounds_counted_are_the_rows_of_diffusers_schedule():
    for steps, blocks, ar_step, block, continued_blocks in itertools.product([1, 2, 5, 30], [1, 2, 5], [0, 1, 5, 40], [1, 5], [0, 1]):
        if continued_blocks >= blocks:
            continue
        latent_frames = blocks * block
        schedule = SkyReelsV2DiffusionForcingPipeline.generate_timestep_matrix(
            None, latent_frames, torch.linspace(1000, 10, steps).long(), latent_frames, ar_step, continued_blocks * block, block
        )[0]
        assert rounds(steps, Chunk(latent_frames, continued_blocks * block), ar_step, block) == len(schedule)


def test_the_model_cards_long_video_is_three_chunks_of_25_latent_frames():
    # 257 frames in chunks of 97 continuing from 17: 65 latent frames in chunks of 25 sharing 5.
    assert chunks(65, 25, 5) == [Chunk(25), Chunk(25, 5), Chunk(25, 5)]
    assert chunks(20, 25, 5) == [Chunk(20)]


def make(manager, outputs, **values):
    request = VideoRequest(**{"prompt": "a fox", "model": "demo-skyreels-v2", "frames": 13, "steps": 2, "seed": 3, "guidance": 1.0, **values})
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())


def test_asynchronous_mode_runs_in_the_rounds_it_states_and_the_next_synchronous_job_is_unchanged(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    before = read_video(make(manager, outputs).video.path).frames
    calls = []
    with manager.use("demo-skyreels-v2") as pipe:
        handle = pipe.transformer.patch_embedding.register_forward_hook(lambda *args: calls.append(1))
    try:
        # 13 frames = 4 latent frames: two blocks of 2, the second starting a step after the first: 3 rounds for 2 steps.
        result = make(manager, outputs, ar_step=1, causal_block_size=2)
    finally:
        handle.remove()
    assert len(calls) == 3 and "causal blocks of 2 latent frames" in result.length_note and "3 rounds for 2 steps" in result.length_note
    asynchronous = read_video(result.video.path).frames
    saved = read_parameters(result.video.path)
    assert (saved["ar_step"], saved["causal_block_size"], saved["transformer_passes"]) == (1, 2, 3)
    assert asynchronous.shape == before.shape == (13, 64, 64, 3) and not np.array_equal(asynchronous, before)
    # The pipeline keeps the block size in the transformer's config; the next job must not inherit it.
    assert np.array_equal(read_video(make(manager, outputs).video.path).frames, before)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(ar_step=3), "ar_step: 3 is out of range; use 0 (synchronous) to 2, the steps"),
        (dict(ar_step=1, causal_block_size=4), "causal_block_size: 4 does not split the chunks into whole blocks (latent frames per chunk and continued: 6); use one of 1, 2, 3, 6"),
        (dict(causal_block_size=3), "causal_block_size: 3 is for asynchronous mode; set ar_step above 0"),
        (dict(frames=21, context_frames=9, context_overlap=5, ar_step=1, causal_block_size=3), "continued: 2, 3); use one of 1"),
        (dict(model="demo-wan", ar_step=1), "ar_step: Wan2.1 T2V (tiny) has no asynchronous mode"),
    ],
)
def test_bad_asynchronous_settings_are_refused_naming_the_field(tmp_path, values, message):
    request = VideoRequest(**{"prompt": "a fox", "model": "demo-skyreels-v2", "frames": 21, "steps": 2, **values})
    with pytest.raises(InvalidRequest) as error:
        request.check(Catalog(), tmp_path)
    assert message in str(error.value)


def test_without_a_block_size_the_largest_that_fits_up_to_five_is_used(tmp_path):
    check = lambda frames: VideoRequest(prompt="a fox", model="demo-skyreels-v2", frames=frames, steps=30, ar_step=5).check(Catalog(), tmp_path)
    # 97 frames = 25 latent frames: the model card's blocks of 5; 21 frames = 6: blocks of 3.
    assert (check(97).request.causal_block_size, check(21).request.causal_block_size) == (5, 3)


@pytest.mark.parametrize("values", [{}, dict(ar_step=1, causal_block_size=2)], ids=["synchronous", "asynchronous"])
def test_a_two_step_generation_with_the_model_run_lean_in_token_chunks_matches_the_normal_one(manager, tmp_path, values):
    """Through the runner, the lean forward forced (5-token chunks across frames of 16 tokens) as a plan that chunks
    turns it on: the blocks get their modulation per frame, and the video equals the normal one up to rounding."""
    outputs = OutputStore(tmp_path / "outputs")
    normal = read_video(make(manager, outputs, **values).video.path).frames
    with manager.use("demo-skyreels-v2") as pipe:
        transformer = pipe.transformer
    seen = []
    handle = transformer.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(type(args[2]).__name__))
    try:
        with lean_blocks(transformer, LeanSettings(chunk_tokens=5)) as count:
            assert count == 2 and "forward" in vars(transformer)
            lean = read_video(make(manager, outputs, **values).video.path).frames
    finally:
        handle.remove()
    assert "forward" not in vars(transformer) and seen and set(seen) == {"PerFrame"}
    assert lean.shape == normal.shape == (13, 64, 64, 3)
    difference = np.abs(lean.astype(int) - normal.astype(int))
    # uint8 pixels after the video encoder: measured identical (max difference 0) in both modes; one level allowed.
    assert difference.max() <= 1
