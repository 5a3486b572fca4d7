import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.outputs import read_parameters


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("model", ["demo-sd3", "demo-flux", "demo-sd3-hyper8", "demo-flux-hyper8", "demo-sd15", "demo-sdxl"])
def test_each_demo_model_makes_a_batch_with_consecutive_seeds(manager, outputs, model):
    result = generate_image(ImageRequest(prompt="a fox", model=model, steps=2, seed=11, batch=2, width=256, height=320).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert [o.parameters["seed"] for o in result.outputs] == [11, 12] == result.seeds
    for saved in result.outputs:
        assert Image.open(saved.path).size == (256, 320)
        recorded = read_parameters(saved.path)
        assert recorded["model"] == model and saved.parameters["demo"] is True
        assert (recorded["preset"], recorded["device"], recorded["dtype"]) == ("cpu", "cpu", "float32")
        assert recorded["seconds"] > 0 and recorded["created"].startswith(time.strftime("%Y-"))


def test_same_seed_gives_the_same_image_and_another_seed_does_not(manager, outputs):
    make = lambda seed: generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=seed).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path
    assert np.array_equal(pixels(make(5)), pixels(make(5)))
    assert not np.array_equal(pixels(make(5)), pixels(make(6)))


def test_a_random_seed_is_reported(manager, outputs):
    result = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=1, seed=-1).check(manager.store.catalog), manager, outputs, QueuedJob())
    seed = result.outputs[0].parameters["seed"]
    assert 0 <= seed <= 2**32 - 1 and result.seeds == [seed]


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM++ 2M", "DPM++ 2M SDE", "UniPC"])
def test_every_sd3_sampler_runs_is_recorded_and_repeats_with_its_seed(manager, outputs, sampler):
    make = lambda: generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=3, seed=1, scheduler=sampler).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]
    first, second = make(), make()
    assert first.parameters["scheduler"] == sampler
    assert np.array_equal(pixels(first.path), pixels(second.path))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DPM++ 2M SDE", "UniPC", "DDIM"])
def test_every_sd15_sampler_runs_with_a_negative_prompt_and_repeats_with_its_seed(manager, outputs, sampler):
    request = ImageRequest(prompt="a fox", negative_prompt="blurry", model="demo-sd15", steps=2, seed=1, scheduler=sampler, width=264, height=256)
    first, second = (generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0] for _ in range(2))
    assert first.parameters["scheduler"] == sampler and first.parameters["negative_prompt"] == "blurry"
    assert Image.open(first.path).size == (264, 256), "SD1.5 takes any multiple of 8"
    assert np.array_equal(pixels(first.path), pixels(second.path))


@pytest.mark.parametrize("weights", ["fp8", "int8"])
def test_fp8_and_int8_weights_run_stay_close_and_are_recorded(manager, outputs, weights):
    run = lambda chosen: generate_image(
        ImageRequest(prompt="a fox", model="demo-flux", steps=2, seed=3, weights=chosen).check(manager.store.catalog), manager, outputs, QueuedJob()
    ).outputs[0]
    shipped, quantized = run(None), run(weights)
    difference = np.abs(pixels(shipped.path).astype(int) - pixels(quantized.path).astype(int))
    assert 0 < difference.max() and difference.mean() < 4.0
    assert quantized.parameters["weights"] == weights and shipped.parameters["weights"] == "as shipped"
    stored = {"fp8": torch.float8_e4m3fn, "int8": torch.int8}[weights]
    with manager.use("demo-flux", weights=weights) as pipe:
        assert pipe.transformer.transformer_blocks[0].attn.to_q.weight.qdata.dtype == stored
        assert pipe.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.stored.dtype == stored, "T5 too (stored while read)"


def test_nf4_on_a_machine_without_cuda_is_a_clear_refusal_and_loads_nothing(manager, outputs):
    manager.unload()
    with pytest.raises(InvalidRequest, match="weights: NF4 .*needs an NVIDIA GPU"):
        generate_image(ImageRequest(prompt="a fox", model="demo-flux", steps=2, weights="nf4").check(manager.store.catalog), manager, outputs, QueuedJob())
    assert manager.status().model_id is None


def test_the_sampler_choice_does_not_leak_into_the_next_job(manager, outputs):
    run = lambda sampler: pixels(generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=3, seed=1, scheduler=sampler).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path)
    euler = run("Euler")
    run("DPM++ 2M")
    assert np.array_equal(run("Euler"), euler)


@pytest.mark.parametrize("base, fast", [("demo-sd3", "demo-sd3-hyper8"), ("demo-flux", "demo-flux-hyper8")])
def test_the_fast_preset_fuses_its_lora(manager, outputs, base, fast):
    run = lambda model: pixels(generate_image(ImageRequest(prompt="a fox", model=model, steps=2, seed=3, guidance=5.0).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path)
    assert not np.array_equal(run(base), run(fast))


def test_stop_ends_the_job_between_steps_and_saves_nothing_unfinished(manager, outputs):
    steps_seen = []

    def on_progress(fraction, text):
        steps_seen.append(text)
        if "step 2/" in text:
            job.stop()

    job = QueuedJob(on_progress)
    result = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=50, seed=1, batch=3).check(manager.store.catalog), manager, outputs, job)
    assert result.stopped and result.outputs == []
    assert sum("step" in text for text in steps_seen) == 2, "the job ends at the next step"
    assert not list((outputs.root).rglob("*.png"))
    after = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=1).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert len(after.outputs) == 1 and not after.stopped


def test_stop_keeps_the_images_already_finished(manager, outputs):
    def on_progress(fraction, text):
        if text.startswith("Image 2/") and "step 1/" in text:
            job.stop()

    job = QueuedJob(on_progress)
    result = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=3, seed=1, batch=3).check(manager.store.catalog), manager, outputs, job)
    assert result.stopped and [o.parameters["seed"] for o in result.outputs] == [1]


@pytest.mark.parametrize(
    "change, field, hint",
    [
        (dict(prompt="   "), "prompt", "empty"),
        (dict(prompt="x" * 10_001), "prompt", "10000"),
        (dict(model="sd9"), "model", "demo-sd3"),
        (dict(width=1000), "width", "multiple of 16 from 256 to 2048"),
        (dict(height=4096), "height", "2048"),
        (dict(height=100), "height", "256"),
        (dict(steps=0), "steps", "1 to 200"),
        (dict(steps=2.5), "steps", "whole number"),
        (dict(guidance=-1), "guidance", "0 to 30"),
        (dict(guidance=float("nan")), "guidance", "not a number"),
        (dict(seed=2**32), "seed", "4294967295"),
        (dict(seed=-2), "seed", "-1"),
        (dict(batch=0), "batch", "1 to 16"),
        (dict(scheduler="Karras"), "scheduler", "Euler"),
        (dict(model="demo-flux", negative_prompt="blurry"), "negative_prompt", "does not use"),
        (dict(model="demo-flux", scheduler="Heun"), "scheduler", "Euler"),
        (dict(width="wide"), "width", "whole number"),
        (dict(model="demo-sd15", width=260), "width", "multiple of 8 from 256 to 2048"),
        (dict(model="demo-sd15", scheduler="Heun"), "scheduler", "DDIM"),
        (dict(weights="q4"), "weights", "as shipped, fp8, int8, nf4"),
    ],
)
def test_bad_values_name_the_field_and_what_is_accepted(change, field, hint):
    request = ImageRequest(**{"prompt": "a fox", "model": "demo-sd3", **change})
    with pytest.raises(InvalidRequest) as error:
        request.check(Catalog())
    assert error.value.field == field and hint in str(error.value)


def test_a_bad_request_loads_nothing(manager, outputs):
    manager.unload()
    with pytest.raises(InvalidRequest):
        generate_image(ImageRequest(prompt="a fox", model="demo-sd3", width=17).check(manager.store.catalog), manager, outputs, QueuedJob())
    assert manager.status().model_id is None


def test_defaults_come_from_the_model(manager):
    checked = ImageRequest(prompt="a fox", model="demo-flux").check(Catalog()).request
    assert (checked.steps, checked.guidance, checked.width, checked.scheduler) == (4, 3.5, 256, "Euler")


@pytest.fixture
def start_picture(tmp_path):
    """A picture with structure (a gradient and a square), 300×260: not a size the models take as is."""
    picture = np.zeros((260, 300, 3), dtype=np.uint8)
    picture[..., 0] = np.linspace(0, 255, 300, dtype=np.uint8)[None, :]
    picture[60:160, 80:200] = (20, 200, 90)
    path = tmp_path / "start.png"
    Image.fromarray(picture).save(path)
    return path


@pytest.mark.parametrize("model", ["demo-sd3", "demo-flux"])
def test_image_to_image_at_strength_zero_returns_the_input_and_more_strength_changes_it(manager, outputs, start_picture, model):
    request = ImageRequest(prompt="a fox", model=model, steps=4, seed=5, init_image=str(start_picture), width=256, height=256)
    kept = pixels(generate_image(replace(request, strength=0.0).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path)
    expected = np.asarray(Image.open(start_picture).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS))
    assert np.array_equal(kept, expected)
    light = pixels(generate_image(replace(request, strength=0.3).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path)
    heavy = pixels(generate_image(replace(request, strength=0.9).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0].path)
    difference = lambda image: np.abs(image.astype(int) - expected.astype(int)).mean()
    assert 0 < difference(light) and 0 < difference(heavy)
    assert not np.array_equal(light, heavy)


def test_image_to_image_records_its_start_image_and_strength_and_takes_its_size(manager, outputs, start_picture):
    result = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=4, seed=2, init_image=str(start_picture), strength=0.5).check(manager.store.catalog), manager, outputs, QueuedJob())
    saved = result.outputs[0]
    assert Image.open(saved.path).size == (304, 256), "the start image's 300×260, to the nearest multiple of 16"
    assert saved.parameters["strength"] == 0.5 and saved.parameters["init_image"]["file"] == "start.png"
    kept = outputs.kept_input(saved.parameters["init_image"])
    assert kept.read_bytes() == start_picture.read_bytes() and kept.name == saved.parameters["init_image"]["sha256"] + ".png"
    plain = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=4, seed=2).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]
    assert plain.parameters["init_image"] is None and plain.parameters["strength"] is None


def test_a_bad_start_image_or_strength_is_refused_by_name(tmp_path, start_picture):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InvalidRequest, match="init_image: broken.png is not a readable image"):
        ImageRequest(prompt="a fox", model="demo-sd3", init_image=str(broken)).check(Catalog())
    with pytest.raises(InvalidRequest, match="strength: 1.5 is out of range"):
        ImageRequest(prompt="a fox", model="demo-sd3", init_image=str(start_picture), strength=1.5).check(Catalog())
