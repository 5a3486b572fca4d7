"""/edit_image end to end through gradio_client, as a script would call it."""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from pipelines.catalog import Catalog


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "photo.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "mask.png"
    picture = Image.new("L", (256, 256), 0)
    picture.paste(255, (64, 64, 128, 192))
    picture.save(path)
    return path


def test_edit_image_by_instruction_returns_the_file_parameters_and_note(app, client, photo):
    image, used, note = client.predict(
        instruction="make it night", images=[handle_file(str(photo))], model="demo-omnigen", steps=2, seed=4,
        api_name="/edit_image",
    )
    parameters = used["parameters"]
    saved = Path(used["image"])
    assert saved.is_relative_to(app.outputs / "edit") and Image.open(image).size == (256, 256)
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    assert sidecar["images"][0]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert (parameters["mode"], parameters["seed"], parameters["instruction"]) == ("instruction", 4, "make it night <img><|image_1|></img>")
    assert "added at the end of the instruction" in note and "random weights" in note


def test_inpaint_through_the_api_keeps_the_unmasked_pixels(client, photo, mask):
    image, used, _ = client.predict(
        instruction="a window", images=[handle_file(str(photo))], mask=handle_file(str(mask)), mode="inpaint",
        model="demo-flux-fill", steps=2, seed=1, feather=0, keep_unmasked=True, api_name="/edit_image",
    )
    made, given = np.asarray(Image.open(image)), np.asarray(Image.open(photo))
    outside = np.asarray(Image.open(mask)) == 0
    assert made.shape == given.shape and np.array_equal(made[outside], given[outside])
    assert used["parameters"]["mask"]["file"] == "mask.png"


def test_outpaint_through_the_api_extends_the_canvas(client, photo):
    image, _, note = client.predict(
        instruction="", images=[handle_file(str(photo))], mode="outpaint", model="demo-flux-fill", steps=2, seed=1,
        outpaint_right=40, api_name="/edit_image",
    )
    assert Image.open(image).size == (256 + 48, 256) and "right 48 px" in note


@pytest.mark.parametrize("change, message", [
    (dict(instruction="blend <img><|image_3|></img>"), "instruction: <img><|image_3|></img> refers to image 3"),
    (dict(mode="inpaint", model="demo-flux-fill", mask="small"), "must have the image's size"),
    (dict(model="demo-flux"), "model: 'demo-flux' is not a model for Instruction"),
])
def test_bad_edits_are_clear_errors(client, photo, tmp_path, change, message):
    if change.get("mask") == "small":
        small = tmp_path / "small.png"
        Image.new("L", (64, 64), 255).save(small)
        change["mask"] = handle_file(str(small))
    with pytest.raises(Exception) as error:
        client.predict(**{"instruction": "night", "images": [handle_file(str(photo))], "steps": 1, **change}, api_name="/edit_image")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "square.png"
    picture = Image.new("RGB", (256, 256))
    picture.paste((255, 255, 255), (64, 64, 192, 192))
    picture.save(path)
    return path


def test_canny_through_the_api_follows_the_inputs_edges_with_the_given_thresholds(app, client, square):
    image, used, _ = client.predict(
        instruction="a house", images=[handle_file(str(square))], mode="canny", model="demo-flux-canny", steps=2, seed=3,
        canny_low=60, canny_high=180, api_name="/edit_image",
    )
    parameters = used["parameters"]
    saved = Path(used["image"])
    assert saved.is_relative_to(app.outputs / "edit") and Image.open(image).size == (256, 256)
    assert (parameters["mode"], parameters["model"], parameters["instruction"]) == ("canny", "demo-flux-canny", "a house")
    assert parameters["control"] == {"kind": "canny", "low": 60, "high": 180}
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    assert sidecar["inputs"]["image"]["sha256"] == hashlib.sha256(square.read_bytes()).hexdigest()


def test_depth_through_the_api_follows_a_supplied_depth_map(client, square):
    _, used, _ = client.predict(
        instruction="a street", mode="depth", model="demo-flux-depth", depth_map=handle_file(str(square)), steps=2, seed=1,
        api_name="/edit_image",
    )
    assert used["parameters"]["control"] == {"kind": "depth", "source": "supplied map"}
    assert used["parameters"]["inputs"]["depth_map"]["file"] == "square.png"


@pytest.mark.parametrize("change, message", [
    (dict(mode="depth", model="demo-flux-depth"), "hf download depth-anything/Depth-Anything-V2-Small-hf"),
    (dict(mode="canny", model="demo-flux-canny", canny_low=200, canny_high=100), "canny_low: 200 is above canny_high"),
])
def test_bad_flux_tool_requests_are_clear_errors(client, square, change, message):
    with pytest.raises(Exception) as error:
        client.predict(**{"instruction": "a house", "images": [handle_file(str(square))], "steps": 1, **change}, api_name="/edit_image")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


def test_speed_through_edit_image_reaches_flux_canny_and_reuse_restores_it(client, square):
    from tabs.edit import REMEMBERED_ORDER, EditTab, field_table

    tab = EditTab(SimpleNamespace(store=SimpleNamespace(catalog=Catalog())), field_table({}), None)

    run = lambda **speed: client.predict(
        instruction="a house", images=[handle_file(str(square))], mode="canny", model="demo-flux-canny", steps=8, seed=3,
        api_name="/edit_image", **speed,
    )
    _, used, note = run(speed="fast")
    cache = used["parameters"]["step_cache"]
    assert used["parameters"]["speed"] == "fast" and cache["method"] == "teacache" and cache["calls_skipped"] > 0
    assert f"skipped {cache['calls_skipped']} of 8 denoiser calls" in note
    restored = dict(zip(REMEMBERED_ORDER, tab.values_from(used["parameters"], "x.png")))
    assert (restored["speed"], restored["cache_method"], restored["cache_threshold"]) == ("fast", "auto", None)
    _, used, _ = run(speed="balanced", cache_method="first_block", cache_threshold=0.2)
    assert used["parameters"]["step_cache"]["method"] == "first_block"
    restored = dict(zip(REMEMBERED_ORDER, tab.values_from(used["parameters"], "x.png")))
    assert (restored["speed"], restored["cache_method"], restored["cache_threshold"]) == ("balanced", "first_block", 0.2)


def test_a_speed_on_sd3_inpaint_runs_uncached_with_a_note(client, photo, mask):
    _, used, note = client.predict(
        instruction="a window", images=[handle_file(str(photo))], mask=handle_file(str(mask)), mode="inpaint",
        model="demo-sd3", steps=1, seed=1, speed="fast", api_name="/edit_image",
    )
    assert used["parameters"]["step_cache"]["method"] == "none" and "has no step cache; it ran uncached" in note


def test_inpaint_strength_through_the_api_is_recorded_and_restored_and_zero_is_refused(client, photo, mask):
    from tabs.edit import REMEMBERED_ORDER, EditTab, field_table

    tab = EditTab(SimpleNamespace(store=SimpleNamespace(catalog=Catalog())), field_table({}), None)

    image, used, _ = client.predict(
        instruction="a window", images=[handle_file(str(photo))], mask=handle_file(str(mask)), mode="inpaint",
        model="demo-sd3", steps=4, seed=1, strength=0.5, api_name="/edit_image",
    )
    made, given = np.asarray(Image.open(image)), np.asarray(Image.open(photo))
    outside = np.asarray(Image.open(mask)) == 0
    assert used["parameters"]["strength"] == 0.5 and np.array_equal(made[outside], given[outside])
    restored = dict(zip(REMEMBERED_ORDER, tab.values_from(used["parameters"], "x.png")))
    assert restored["strength"] == 0.5
    with pytest.raises(Exception) as error:
        client.predict(
            instruction="", images=[handle_file(str(photo))], mask=handle_file(str(mask)), mode="inpaint",
            model="demo-sd3", steps=4, strength=0, api_name="/edit_image",
        )
    assert type(error.value).__name__ == "AppError" and "strength" in str(error.value) and "repaints nothing" in str(error.value)
