"""The Edit runner on the tiny models: OmniGen with one and two input images, FLUX.1 Fill and SD3 inpainting and
outpainting, and the requests it refuses before anything loads."""

import hashlib
import json

import diffusers

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog import Catalog
from pipelines.image.edit_modes import edit_models
from pipelines.image.edit_runner import EditRequest, edit_image
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.outputs import read_parameters


def picture(path, size, seed=0):
    pixels = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def square_mask(path, size, box):
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    mask.save(path)
    return str(path)


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_omnigen_edits_one_image_at_its_size_and_records_its_hash(manager, outputs, tmp_path):
    first = picture(tmp_path / "first.png", (80, 48))
    result = edit_image(EditRequest("make the sky stormy", "demo-omnigen", images=[first], steps=2, seed=3).check(manager.store.catalog), manager, outputs, QueuedJob())
    saved = result.output
    assert saved.path.parent.parent.name == "edit"
    assert Image.open(saved.path).size == (80, 48)
    assert any("80×48" in note and "first image" in note for note in result.notes)
    # The instruction named no image: its placeholder was appended, and the user is told.
    assert saved.parameters["instruction"] == "make the sky stormy <img><|image_1|></img>"
    assert any("image 1" in note and "added" in note for note in result.notes)
    sidecar = json.loads(saved.sidecar.read_text())
    digest = sha256(first)
    assert sidecar["images"] == [{"file": "first.png", "sha256": digest, "kept": f"inputs/{digest[:2]}/{digest}.png", "size": [80, 48]}]
    assert outputs.kept_input(sidecar["images"][0]).read_bytes() == open(first, "rb").read(), "a copy of the input is kept"
    assert read_parameters(saved.path)["images"][0]["sha256"] == sha256(first)
    assert sidecar["max_input_image_size"] == 1024 and sidecar["seed"] == 3 and sidecar["mode"] == "instruction"


def test_omnigen_takes_two_images_in_the_order_the_placeholders_name_them(manager, outputs, tmp_path):
    person = picture(tmp_path / "person.png", (64, 64), seed=1)
    scene = picture(tmp_path / "scene.png", (96, 64), seed=2)
    request = EditRequest(
        "put the person from <img><|image_1|></img> into <|image_2|>", "demo-omnigen", images=[person, scene], steps=2, seed=1,
        width=96, height=64,
    )
    saved = edit_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).output
    assert Image.open(saved.path).size == (96, 64)
    assert saved.parameters["instruction"] == "put the person from <img><|image_1|></img> into <img><|image_2|></img>"
    assert [record["sha256"] for record in saved.parameters["images"]] == [sha256(person), sha256(scene)]


def test_omnigen_input_size_follows_the_preset(presets, tmp_path):
    big = picture(tmp_path / "big.png", (2000, 1000))
    on_8gb = EditRequest("a cat", "demo-omnigen", images=[big]).check(Catalog(), presets["8gb-laptop"])
    on_cpu = EditRequest("a cat", "demo-omnigen", images=[big]).check(Catalog(), presets["cpu"])
    assert (on_8gb.max_input_side, on_8gb.request.width, on_8gb.request.height) == (768, 768, 384)
    assert (on_cpu.max_input_side, on_cpu.request.width, on_cpu.request.height) == (1024, 1024, 512)


def test_inpaint_keeps_every_pixel_outside_the_mask_and_repaints_inside(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (64, 64, 160, 128))
    for model in ("demo-flux-fill", "demo-sd3"):
        request = EditRequest("a red door", model, mode="inpaint", images=[image], mask=mask, steps=2, seed=1)
        saved = edit_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).output
        made, given = np.asarray(Image.open(saved.path)), np.asarray(Image.open(image))
        outside = np.asarray(Image.open(mask)) == 0
        assert made.shape == given.shape
        assert np.array_equal(made[outside], given[outside])
        assert not np.array_equal(made[~outside], given[~outside])
        assert saved.parameters["mask"]["sha256"] == sha256(mask)


@pytest.mark.parametrize("model", ["demo-flux-fill", "demo-sd3"])
def test_a_lower_strength_runs_the_end_of_the_schedule_and_keeps_more_of_the_masked_area(manager, outputs, tmp_path, model):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (64, 64, 192, 192))
    inside = np.asarray(Image.open(mask)) > 0
    given = np.asarray(Image.open(image)).astype(int)
    changes, steps_shown = {}, {}
    for strength in (1.0, 0.3):
        shown = []
        request = EditRequest("", model, mode="inpaint", images=[image], mask=mask, steps=10, seed=1, strength=strength)
        saved = edit_image(request.check(manager.store.catalog), manager, outputs, QueuedJob(lambda fraction, text: shown.append(text))).output
        made = np.asarray(Image.open(saved.path)).astype(int)
        assert np.array_equal(made[~inside], given[~inside]) and saved.parameters["strength"] == strength
        changes[strength] = np.abs(made[inside] - given[inside]).mean()
        steps_shown[strength] = [text for text in shown if text.startswith("Step ")][-1]
    # 0.3 of 10 steps runs the last 3, starting from the picture noised a little: closer to it than a full repaint.
    assert steps_shown == {1.0: "Step 10/10", 0.3: "Step 3/3"}
    assert changes[0.3] < changes[1.0]


def test_an_image_of_any_size_is_inpainted_at_its_own_size(manager, outputs, tmp_path):
    image = picture(tmp_path / "odd.png", (200, 120))
    mask = square_mask(tmp_path / "mask.png", (200, 120), (50, 30, 100, 90))
    result = edit_image(EditRequest("", "demo-flux-fill", mode="inpaint", images=[image], mask=mask, steps=2, seed=1).check(manager.store.catalog), manager, outputs, QueuedJob())
    made, given = np.asarray(Image.open(result.output.path)), np.asarray(Image.open(image))
    outside = np.asarray(Image.open(mask)) == 0
    assert made.shape == given.shape and np.array_equal(made[outside], given[outside])
    # Below FLUX's 256 px, scaled up with its aspect ratio kept (120 → 256, 200 → 427 → 432), then back.
    assert "Run at 432×256" in " ".join(result.notes) and "scaled back to 200×120" in " ".join(result.notes)


def test_outpaint_grows_the_canvas_by_the_rounded_sides_and_keeps_the_original(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    result = edit_image(
        EditRequest("more sea", "demo-flux-fill", mode="outpaint", images=[image], outpaint_left=20, outpaint_bottom=16, steps=2).check(manager.store.catalog),
        manager, outputs, QueuedJob(),
    )
    made = np.asarray(Image.open(result.output.path))
    # 20 px rounds up to 32 (FLUX's multiple of 16); 16 stays.
    assert made.shape[:2] == (256 + 16, 256 + 32)
    assert np.array_equal(made[:256, 32:], np.asarray(Image.open(image)))
    assert any("left 32 px" in note for note in result.notes)
    assert (result.output.parameters["outpaint_left"], result.output.parameters["outpaint_bottom"]) == (32, 16)


def test_feathering_softens_the_mask_edge(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (96, 96, 160, 160))
    request = EditRequest("", "demo-flux-fill", mode="inpaint", images=[image], mask=mask, steps=2, seed=1, feather=8)
    made = np.asarray(Image.open(edit_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).output.path)).astype(int)
    given = np.asarray(Image.open(image)).astype(int)
    # Just outside the painted square the blurred mask blends the result in; far from it the input stays exact.
    assert np.abs(made[90:96, 100:150] - given[90:96, 100:150]).sum() > 0
    assert np.array_equal(made[:64], given[:64])


def test_sd3_is_offered_for_inpainting_through_its_family(manager):
    assert {"demo-flux-fill", "demo-sd3", "flux1-fill-dev", "sd3-medium"} <= set(edit_models("inpaint", Catalog()))
    assert "demo-flux" not in edit_models("inpaint", Catalog()) and set(edit_models("instruction", Catalog())) == {"omnigen-v1", "demo-omnigen"}


def test_stop_ends_the_edit_between_steps_and_saves_nothing(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (64, 64))

    def stop_after_the_first_step(fraction, text):
        if text.startswith("Step 1/"):
            job.stop()

    job = QueuedJob(stop_after_the_first_step)
    result = edit_image(EditRequest("night", "demo-omnigen", images=[image], steps=4).check(manager.store.catalog), manager, outputs, job)
    assert result.stopped and result.output is None and not outputs.list_outputs()


def test_omnigen_without_torchvision_is_refused_by_name_before_loading(manager, outputs, monkeypatch):
    import importlib.util

    from pipelines.errors import ModelNotAvailable

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "torchvision" else real_find_spec(name, *rest))
    with pytest.raises(ModelNotAvailable, match="needs the Python package torchvision"):
        edit_image(EditRequest("a cat", "demo-omnigen", steps=1).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert manager.status().model_id is None


@pytest.mark.parametrize("mode", ["instruction", "inpaint", "outpaint"])
def test_every_edit_model_names_a_real_pipeline_and_its_defaults_are_accepted(mode, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (0, 0, 64, 64))
    extra = {"inpaint": {"images": [image], "mask": mask}, "outpaint": {"images": [image], "outpaint_top": 64}}.get(mode, {})
    for spec in edit_models(mode, Catalog()).values():
        assert hasattr(diffusers, spec.pipeline_class)
        checked = EditRequest("night", spec.id, mode=mode, **extra).check(Catalog()).request
        assert (checked.steps, checked.guidance) == (spec.defaults.steps, spec.defaults.guidance)


@pytest.fixture
def files(tmp_path):
    return {
        "image": picture(tmp_path / "photo.png", (256, 256)),
        "small": picture(tmp_path / "small.png", (128, 128)),
        "mask": square_mask(tmp_path / "mask.png", (256, 256), (0, 0, 64, 64)),
        "small_mask": square_mask(tmp_path / "small_mask.png", (128, 128), (0, 0, 64, 64)),
        "empty_mask": square_mask(tmp_path / "empty.png", (256, 256), (0, 0, 0, 0)),
        "broken": str((tmp_path / "broken.png").write_bytes(b"not a png") and tmp_path / "broken.png"),
    }


@pytest.mark.parametrize("fields, field, hint", [
    (dict(instruction="swap <img><|image_2|></img> in", images=["image"]), "instruction", "refers to image 2"),
    (dict(instruction="use <|image_1|>", images=[]), "instruction", "no image was given"),
    (dict(images=["image", "image", "small", "small"]), "images", "at most 3"),
    (dict(images=["broken"]), "images", "Image 1: broken.png is not a readable image"),
    (dict(mode="inpaint", model="demo-flux-fill", images=["image"], mask="small_mask"), "mask", "must have the image's size"),
    (dict(mode="inpaint", model="demo-flux-fill", images=["image"], mask="empty_mask"), "mask", "empty"),
    (dict(mode="inpaint", model="demo-flux-fill", images=["image"]), "mask", "needs a mask"),
    (dict(mode="inpaint", model="demo-flux-fill", images=[], mask="mask"), "images", "needs an input image"),
    (dict(mode="outpaint", model="demo-flux-fill", images=["image"]), "outpaint_left", "at least one side"),
    (dict(mode="inpaint", model="demo-omnigen", images=["image"], mask="mask"), "model", "demo-flux-fill"),
    (dict(mode="paint", images=["image"]), "mode", "instruction, inpaint, outpaint"),
    (dict(images=["image"], width=100), "width", "multiple of 16"),
    (dict(mode="inpaint", model="demo-flux-fill", images=["image"], mask="mask", width=256), "width", "keeps the image's size"),
    (dict(instruction="  "), "instruction", "must not be empty"),
    (dict(mode="inpaint", model="demo-flux-fill", images=["image"], mask="mask", strength=0), "strength", "repaints nothing"),
    (dict(mode="outpaint", model="demo-sd3", images=["image"], outpaint_left=16, strength=1.5), "strength", "0 to 1"),
])
def test_bad_requests_name_the_field_and_load_nothing(manager, outputs, files, fields, field, hint):
    values = {"instruction": "make it night", "model": "demo-omnigen", **fields}
    values["images"] = [files[name] for name in values.get("images", [])]
    if values.get("mask"):
        values["mask"] = files[values["mask"]]
    with pytest.raises(InvalidRequest) as raised:
        edit_image(EditRequest(**values).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert raised.value.field == field and hint in str(raised.value)
    assert manager.status().model_id is None and not outputs.list_outputs()


def test_speed_reaches_flux_fill_which_opens_no_cache_context_itself(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (64, 64, 192, 192))
    make = lambda **speed: edit_image(EditRequest(
        instruction="a window", model="demo-flux-fill", mode="inpaint", images=(image,), mask=mask, steps=8, seed=2,
        keep_unmasked=False, **speed,
    ).check(manager.store.catalog), manager, outputs, QueuedJob()).output.path
    off, exact = make(), make(cache_method="first_block", cache_threshold=0)
    fast, first_block = make(speed="fast"), make(cache_method="first_block", cache_threshold=0.3)
    assert read_parameters(off)["speed"] == "off" and read_parameters(off)["step_cache"]["method"] == "none"
    assert read_parameters(exact)["step_cache"]["calls_skipped"] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(exact)), np.asarray(Image.open(off)))
    assert read_parameters(fast)["step_cache"]["method"] == "teacache" and read_parameters(fast)["step_cache"]["calls_skipped"] > 0
    assert read_parameters(first_block)["step_cache"]["calls_skipped"] > 0
    assert Image.open(fast).size == Image.open(first_block).size == (256, 256)


def test_a_family_without_a_step_cache_runs_uncached_and_says_so(manager, outputs, tmp_path):
    image = picture(tmp_path / "photo.png", (256, 256))
    mask = square_mask(tmp_path / "mask.png", (256, 256), (64, 64, 192, 192))
    request = EditRequest(instruction="a window", model="demo-sd3", mode="inpaint", images=(image,), mask=mask, steps=2, speed="fast")
    result = edit_image(request.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert read_parameters(result.output.path)["step_cache"]["method"] == "none"
    assert any("has no step cache; it ran uncached" in note for note in result.notes)
    with pytest.raises(InvalidRequest, match="cache_method: 'teacache' is not available"):
        EditRequest(instruction="night", model="demo-omnigen", images=(image,), cache_method="teacache").check(Catalog())
