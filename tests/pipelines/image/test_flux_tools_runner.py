"""FLUX.1 Canny, Depth and Redux on their tiny demo models: 2 steps at 256 px."""

import hashlib
import json

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.image import control_images
from pipelines.errors import InvalidRequest, ModelNotAvailable
from pipelines.image.flux_tools_runner import ToolRequest, preview_control, run_flux_tool
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters
from pipelines.tiny import depth_anything


def picture(tmp_path, name="square.png", colour=(255, 255, 255), size=(256, 256)):
    image = Image.new("RGB", size)
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), colour), (size[0] // 4, size[1] // 4))
    image.save(tmp_path / name)
    return str(tmp_path / name)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def kept_name(path) -> str:
    """Where the outputs folder keeps a copy of an input."""
    return f"inputs/{sha256(path)[:2]}/{sha256(path)}.png"


def canny(image, steps=2, **extra):
    return ToolRequest(model="demo-flux-canny", image=image, prompt="a house", steps=steps, seed=4, **extra)


def test_canny_follows_the_edges_of_the_input_and_records_them(manager, outputs, tmp_path):
    image = picture(tmp_path)
    result = run_flux_tool(canny(image, canny_low=60, canny_high=180).check(manager.store.catalog), manager, outputs, QueuedJob())
    expected = control_images.canny_edges(Image.open(image), 60, 180)
    assert np.array_equal(np.asarray(result.control_image), np.asarray(expected)), "the edge map of the input"
    assert Image.open(result.output.path).size == (256, 256)
    saved = read_parameters(result.output.path)
    assert saved["mode"] == "canny" and saved["control"] == {"kind": "canny", "low": 60, "high": 180}
    assert saved["inputs"] == {"image": {"file": "square.png", "sha256": sha256(image), "kept": kept_name(image)}}
    embedded = json.loads(Image.open(result.output.path).text["atelier"])
    assert embedded["inputs"] == saved["inputs"], "the hashes are in the PNG too"
    blank = run_flux_tool(canny(picture(tmp_path, "blank.png", colour=(0, 0, 0))).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert not np.asarray(blank.control_image).any()
    assert not np.array_equal(pixels(result.output.path), pixels(blank.output.path)), "the edges steer the picture"


def test_depth_follows_a_supplied_map_without_an_input_picture(manager, outputs, tmp_path):
    depth_map = picture(tmp_path, "depth.png", colour=(120, 200, 40), size=(128, 96))
    request = ToolRequest(model="demo-flux-depth", depth_map=depth_map, prompt="a street", steps=2, seed=1, width=320, height=256)
    result = run_flux_tool(request.check(manager.store.catalog), manager, outputs, QueuedJob())
    control = np.asarray(result.control_image)
    assert result.control_image.size == (320, 256) and (control[..., 0] == control[..., 1]).all()
    assert Image.open(result.output.path).size == (320, 256)
    saved = read_parameters(result.output.path)
    assert saved["control"] == {"kind": "depth", "source": "supplied map"}
    assert saved["inputs"] == {"depth_map": {"file": "depth.png", "sha256": sha256(depth_map), "kept": kept_name(depth_map)}}


def test_depth_without_a_map_or_a_depth_model_says_what_to_install_and_loads_nothing(manager, outputs, tmp_path):
    request = ToolRequest(model="demo-flux-depth", image=picture(tmp_path), prompt="a street", steps=2)
    with pytest.raises(ModelNotAvailable, match="Depth-Anything-V2-Small-hf"):
        run_flux_tool(request.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert manager.status().model_id is None
    assert not list(outputs.root.rglob("*.png"))


def test_depth_is_estimated_from_the_picture_by_an_installed_depth_model(models_dir, presets, outputs, tmp_path):
    depth_anything.build(models_dir / "depth-anything-v2-small")
    manager = ModelManager(ModelStore(models_dir, offline=True), presets["cpu"])
    request = ToolRequest(model="demo-flux-depth", image=picture(tmp_path), prompt="a street", steps=2, seed=1)
    result = run_flux_tool(request.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert result.control_image.size == (256, 256)
    assert read_parameters(result.output.path)["control"] == {"kind": "depth", "source": "depth-anything/Depth-Anything-V2-Small-hf"}


def test_redux_makes_a_variation_of_the_requested_size_from_the_picture(manager, outputs, tmp_path):
    make = lambda image: run_flux_tool(
        ToolRequest(model="demo-flux-redux", image=image, steps=2, seed=2, width=256, height=320).check(manager.store.catalog), manager, outputs, QueuedJob()
    ).output
    first = make(picture(tmp_path, "red.png", colour=(255, 0, 0)))
    other = make(picture(tmp_path, "blue.png", colour=(0, 0, 255)))
    assert Image.open(first.path).size == (256, 320)
    saved = read_parameters(first.path)
    assert saved["mode"] == "redux" and saved["control"] is None and saved["prompt"] == ""
    assert saved["inputs"]["image"]["sha256"] == sha256(tmp_path / "red.png")
    assert not np.array_equal(pixels(first.path), pixels(other.path)), "the picture conditions the result"


def test_the_output_size_defaults_to_the_inputs_within_the_models_pixel_area(manager, outputs, tmp_path):
    request = ToolRequest(model="demo-flux-canny", image=picture(tmp_path, size=(600, 400)), prompt="a house", steps=1)
    result = run_flux_tool(request.check(manager.store.catalog), manager, outputs, QueuedJob())
    # demo-flux-canny's default area is 256×256: 600×400 scales to 314×209, in steps of 16 and at least 256.
    assert Image.open(result.output.path).size == (320, 256)
    assert "600×400" in result.note and "320×256" in result.note


@pytest.mark.parametrize("request_, field", [
    (ToolRequest(model="demo-flux-canny", prompt="a house"), "image"),
    (ToolRequest(model="demo-flux-canny", image="missing.png", prompt="a house"), "image"),
    (ToolRequest(model="demo-flux-depth", prompt="a street"), "image"),
    (ToolRequest(model="demo-flux-canny", image="IMAGE", prompt=""), "prompt"),
    (ToolRequest(model="demo-flux-canny", image="IMAGE", prompt="a house", depth_map="IMAGE"), "depth_map"),
    (ToolRequest(model="demo-flux-canny", image="IMAGE", prompt="a house", canny_low=200, canny_high=100), "canny_low"),
    (ToolRequest(model="demo-flux-canny", image="IMAGE", prompt="a house", width=250), "width"),
    (ToolRequest(model="demo-flux", image="IMAGE", prompt="a house"), "model"),
])
def test_bad_requests_name_their_field_before_anything_loads(manager, outputs, tmp_path, request_, field):
    image = picture(tmp_path)
    request_ = ToolRequest(**{key: image if value == "IMAGE" else value for key, value in request_.__dict__.items()})
    with pytest.raises(InvalidRequest) as error:
        run_flux_tool(request_.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert error.value.field == field
    assert manager.status().model_id is None


def test_stop_ends_the_job_between_steps_and_saves_nothing(manager, outputs, tmp_path):
    def on_progress(fraction, text):
        if "Step 1/" in text:
            job.stop()

    job = QueuedJob(on_progress)
    result = run_flux_tool(canny(picture(tmp_path), steps=20).check(manager.store.catalog), manager, outputs, job)
    assert result.stopped and result.output is None
    assert not list(outputs.root.rglob("*.png"))


def test_an_out_of_memory_is_retried_once_with_a_leaner_plan(demo_models_dir, presets, outputs, tmp_path, monkeypatch):
    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["8gb-laptop"])
    original = diffusers.FluxControlPipeline.__call__
    calls = []

    def out_of_memory_once(self, *args, **kwargs):
        calls.append(kwargs["control_image"])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.FluxControlPipeline, "__call__", out_of_memory_once)
    said = []
    result = run_flux_tool(canny(picture(tmp_path)).check(manager.store.catalog), manager, outputs, QueuedJob(lambda fraction, text: said.append(text)))
    assert len(calls) == 2 and result.output.path.is_file()
    assert any("Out of memory: retrying" in text for text in said)
    assert np.array_equal(np.asarray(calls[1]), np.asarray(result.control_image)), "the pipeline got the edge map"


def test_the_preview_shows_the_edges_with_the_chosen_thresholds_or_the_supplied_depth_map(tmp_path):
    image = picture(tmp_path, size=(320, 256))
    edges = preview_control("canny", image, 60, 180, None)
    assert edges.size == (320, 256)
    assert np.array_equal(np.asarray(edges), np.asarray(control_images.canny_edges(Image.open(image), 60, 180)))
    assert preview_control("canny", image, 200, 100, None) is None, "no preview for thresholds the run would refuse"
    depth = np.asarray(preview_control("depth", None, None, None, picture(tmp_path, "depth.png", colour=(90, 10, 200))))
    assert (depth[..., 0] == depth[..., 1]).all() and depth.any()
    assert preview_control("depth", image, None, None, None) is None, "an estimated depth waits for the run"


@pytest.mark.parametrize("model", ["demo-flux-canny", "demo-flux-redux"])
def test_speed_reaches_the_flux_tools_and_threshold_zero_changes_nothing(manager, outputs, tmp_path, model):
    image = picture(tmp_path)
    make = lambda **speed: run_flux_tool(
        ToolRequest(model=model, image=image, prompt="a house", steps=8, seed=4, **speed).check(manager.store.catalog), manager, outputs, QueuedJob()
    ).output.path
    off, exact, fast = make(), make(cache_method="teacache", cache_threshold=0), make(speed="fast")
    np.testing.assert_array_equal(pixels(exact), pixels(off))
    assert read_parameters(exact)["step_cache"] == {"method": "teacache", "threshold": 0.0, "denoiser_calls": 8, "calls_skipped": 0}
    record = read_parameters(fast)
    assert record["speed"] == "fast" and record["step_cache"]["method"] == "teacache" and record["step_cache"]["calls_skipped"] > 0
    assert pixels(fast).shape == pixels(off).shape
