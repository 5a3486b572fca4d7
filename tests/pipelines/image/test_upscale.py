"""Upscaling pictures and videos with upscaler files spandrel reads: the tiny demo files load in both formats, bad
inputs are refused naming the field, results are scale × the input, and a video keeps its frames, rate and sound."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.errors import InvalidRequest
from pipelines.image.upscale import (
    UpscaleRequest, auto_tile, describe_upscaler, offered_upscalers, upscale,
)
from pipelines.jobs import QueuedJob
from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.media import audio_duration, encode_audio, encode_video, read_video
from pipelines.outputs import OutputStore, read_parameters
from pipelines.tiny.upscalers import DEMO_FILES, build_compact, build_esrgan


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models", offline=True)


@pytest.fixture
def manager(store, presets) -> ModelManager:
    return ModelManager(store, presets["cpu"])


def picture(path, size=(40, 30), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("build, architecture, scale", [(build_esrgan, "ESRGAN", 4), (build_compact, "RealESRGAN Compact", 2)])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tiny_upscaler_files_load_in_both_formats_with_their_architecture_and_scale(tmp_path, build, architecture, scale, suffix):
    path = tmp_path / f"model{suffix}"
    build(path)
    info = describe_upscaler(path.name, path)
    assert (info.architecture, info.scale, info.purpose) == (architecture, scale, "SR")


def test_a_pickle_with_code_in_it_is_refused_not_run(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Conv2d(3, 3, 3), path)  # a whole pickled module, not a state dict
    with pytest.raises(InvalidRequest) as refused:
        describe_upscaler(path.name, path)
    assert refused.value.field == "model" and "weights only" in str(refused.value)


def test_a_file_of_no_known_architecture_is_refused_naming_the_model(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"something.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(InvalidRequest, match="odd.safetensors cannot be used: spandrel does not recognise"):
        describe_upscaler(path.name, path)


def test_demo_upscalers_are_offered_until_a_real_one_is_in_the_upscalers_folder(store):
    assert list(offered_upscalers(store, demo_mode=False)) == list(sorted(DEMO_FILES))
    build_compact(store.models_dir / "upscalers" / "2x-Mine.safetensors")
    assert list(offered_upscalers(store, demo_mode=False)) == ["2x-Mine.safetensors"]
    assert set(offered_upscalers(store, demo_mode=True)) == {*DEMO_FILES, "2x-Mine.safetensors"}


@pytest.mark.parametrize("values, field", [
    (dict(file="notes.txt"), "file"),
    (dict(model="4x-Nowhere.pth"), "model"),
    (dict(scale=9), "scale"),
    (dict(scale=0.5), "scale"),
    (dict(tile=5), "tile"),
])
def test_bad_input_is_refused_naming_the_field(store, tmp_path, values, field):
    (tmp_path / "notes.txt").write_text("not a picture")
    given = dict(file=str(picture(tmp_path / "in.png")), model="demo-esrgan-4x.pth") | values
    if given["file"] == "notes.txt":
        given["file"] = str(tmp_path / "notes.txt")
    with pytest.raises(InvalidRequest) as refused:
        UpscaleRequest(**given).check(store, demo_mode=True)
    assert refused.value.field == field


@pytest.mark.parametrize("model, scale, tile, size, recorded_scale", [
    ("demo-esrgan-4x.pth", None, 0, (160, 120), 4.0),  # the model's own scale
    ("demo-esrgan-4x.pth", 2, 32, (80, 60), 2.0),  # tiled, then down from ×4
    ("demo-compact-2x.safetensors", 1.5, 0, (60, 45), 1.5),
    ("demo-compact-2x.safetensors", 3, 0, (120, 90), 3.0),  # up from ×2
])
def test_an_image_is_made_at_scale_times_its_size_and_records_what_made_it(store, manager, tmp_path, model, scale, tile, size, recorded_scale):
    source = picture(tmp_path / "in.png")
    outputs = OutputStore(tmp_path / "outputs")
    result = upscale(UpscaleRequest(str(source), model, scale, tile).check(store, True), manager, outputs, QueuedJob())
    assert Image.open(result.output.path).size == size
    recorded = read_parameters(result.output.path)
    assert recorded["kind"] == "upscaled" and recorded["model"] == model and recorded["tile"] == tile
    assert recorded["tile_used"] == tile
    assert recorded["scale"] == recorded_scale and (recorded["width"], recorded["height"]) == size
    assert recorded["source"]["file"] == "in.png" and recorded["source_size"] == [40, 30]
    assert json.loads(result.output.sidecar.read_text())["upscaler"]["scale"] in (2, 4)


def test_a_stopped_upscale_saves_nothing(store, manager, tmp_path):
    queued = QueuedJob()
    queued.stop()
    outputs = OutputStore(tmp_path / "outputs")
    result = upscale(UpscaleRequest(str(picture(tmp_path / "in.png")), "demo-compact-2x.safetensors").check(store, True), manager, outputs, queued)
    assert result.stopped and result.output is None and outputs.list_outputs() == []


def test_a_video_keeps_its_frame_count_frame_rate_and_sound(store, manager, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (7, 24, 32, 3), dtype=np.uint8)
    sound = tmp_path / "tone.wav"
    sound.write_bytes(encode_audio(0.3 * np.sin(np.linspace(0, 2000, 24000 * 7 // 8)).astype(np.float32), 24000, "{}"))
    source = tmp_path / "clip.mp4"
    source.write_bytes(encode_video(frames, 8.0, ".mp4", "{}", audio_from=sound))
    outputs = OutputStore(tmp_path / "outputs")
    result = upscale(UpscaleRequest(str(source), "demo-compact-2x.safetensors").check(store, True), manager, outputs, QueuedJob())
    made = read_video(result.output.path)
    assert made.frames.shape == (7, 48, 64, 3) and made.fps == 8.0
    assert audio_duration(result.output.path) == pytest.approx(audio_duration(source), abs=0.05)
    assert read_parameters(result.output.path)["frames"] == 7


def test_automatic_tiles_fit_the_free_memory():
    assert auto_tile(None, 4, (256, 256)) == 0, "on the CPU a picture up to 512 px goes in one pass"
    assert auto_tile(None, 4, (1024, 1024)) == 512
    assert auto_tile(8 * 1024**3, 4, (256, 256)) == 0
    # A 1024² picture at ×4 on an 8 GB card with 6 GB free: tiles, each within the share of free memory it may use.
    tile = auto_tile(6 * 1024**3, 4, (1024, 1024))
    assert 0 < tile < 1024 and (tile * 4) ** 2 * 384 <= 0.6 * 6 * 1024**3


def test_out_of_memory_halves_the_tile_and_runs_the_frame_again(store, tmp_path):
    from pipelines.image.upscale import _upscale_frame

    job = UpscaleRequest(str(picture(tmp_path / "in.png", (100, 80))), "demo-esrgan-4x.pth").check(store, True)
    seen = []

    def small_card(tile):
        seen.append(tuple(tile.shape[-2:]))
        if max(tile.shape[-2:]) > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.nn.functional.interpolate(tile, scale_factor=4, mode="nearest")

    pixels, tile = _upscale_frame(small_card, np.zeros((80, 100, 3), np.uint8), job, 0, "cpu", torch.float32, QueuedJob(), 0, 1)
    assert tile == 50 and pixels.shape == (320, 400, 3)
    assert seen[0] == (80, 100) and all(max(shape) <= 50 for shape in seen[1:])
