"""The app end to end: a real server process driven through gradio_client, as a script would."""

import json
from pathlib import Path

import pytest
from PIL import Image


def test_generate_image_returns_pngs_with_their_parameters(app, client):
    gallery, used, summary = client.predict(
        prompt="a lighthouse at dusk", negative_prompt="blurry", model="demo-sd3", width=256, height=320,
        steps=2, guidance=4.0, seed=42, batch=2, api_name="/generate_image",
    )
    assert len(gallery) == 2 and "42, 43" in summary and "random weights" in summary
    for item, saved_path, parameters in zip(gallery, used["images"], used["parameters"]):
        saved = Path(saved_path)
        assert saved.is_relative_to(app.outputs) and saved.is_file()
        with Image.open(item["image"]) as png:
            assert png.size == (256, 320)
            embedded = json.loads(png.text["atelier"])
        sidecar = json.loads(saved.with_suffix(".json").read_text())
        for record in (embedded, sidecar, parameters):
            assert record["prompt"] == "a lighthouse at dusk" and record["negative_prompt"] == "blurry"
            assert (record["model"], record["steps"], record["guidance"], record["width"]) == ("demo-sd3", 2, 4.0, 256)
            assert record["demo"] is True
        assert [embedded["seed"], sidecar["seed"]] == [parameters["seed"]] * 2


def test_a_random_seed_is_reported_back(client):
    _, used, summary = client.predict(prompt="a fox", model="demo-flux", steps=1, seed=-1, api_name="/generate_image")
    seed = used["parameters"][0]["seed"]
    assert seed >= 0 and str(seed) in summary


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(width=1000), "width: 1000 is not accepted"),
        (dict(steps=0), "steps: 0 is out of range; use 1 to 200"),
        (dict(model="nope"), "model: unknown model 'nope'"),
        (dict(prompt=""), "prompt: must not be empty"),
        (dict(seed=2**40), "seed: "),
        (dict(model="sd3-medium"), "hf download stabilityai/stable-diffusion-3-medium-diffusers"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, change, message):
    with pytest.raises(Exception) as error:
        client.predict(**{"prompt": "a fox", "model": "demo-sd3", "steps": 1, **change}, api_name="/generate_image")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)
    gallery, _, _ = client.predict(prompt="a fox", model="demo-sd3", steps=1, seed=1, api_name="/generate_image")
    assert len(gallery) == 1


def test_models_lists_the_catalog_with_local_availability(client):
    models = {entry["id"]: entry for entry in client.predict(api_name="/models")}
    assert {"sd3-medium", "sd35-large", "flux1-dev", "flux1-schnell", "demo-sd3"} <= set(models)
    assert models["demo-sd3"]["offered"] and models["demo-sd3"]["on_disk"] and models["demo-sd3"]["demo"]
    assert not models["flux1-dev"]["on_disk"] and models["flux1-dev"]["repo"] == "black-forest-labs/FLUX.1-dev"
    assert models["hidream-i1-dev"]["companion_repo"] == "meta-llama/Meta-Llama-3.1-8B-Instruct"
    assert models["flux1-dev"]["companion_repo"] is None


def test_the_image_tab_offers_hidream_and_cogview4_and_says_when_hidream_changed_the_size(client):
    dropdown = next(c for c in client.config["components"] if c.get("props", {}).get("elem_id") == "image-model")
    offered = {value for _, value in dropdown["props"]["choices"]}
    assert {"hidream-i1-full", "hidream-i1-dev", "hidream-i1-fast", "cogview4-6b", "demo-hidream", "demo-cogview4"} <= offered
    gallery, used, summary = client.predict(
        prompt="a fox", model="demo-hidream", width=512, height=768, steps=1, guidance=0.0, seed=1, scheduler="Euler",
        api_name="/generate_image",
    )
    assert "Asked for 512×768, made 832×1248" in summary
    with Image.open(gallery[0]["image"]) as png:
        assert png.size == (832, 1248)
    assert used["parameters"][0]["requested_size"] == [512, 768]


def test_status_reports_preset_resident_model_and_memory(client):
    client.predict(prompt="a fox", model="demo-flux", steps=1, seed=1, api_name="/generate_image")
    status = client.predict(api_name="/status")
    assert status["preset"] == "cpu" and status["device"] == "cpu"
    assert status["resident_model"] == "demo-flux" and status["demo"] is True
    assert status["process_ram_gb"] > 0 and status["ram_total_gb"] > 0 and "resident" in status["plan"]


def test_the_preset_can_be_changed_from_a_script(client):
    try:
        client.predict("8gb-laptop", api_name="/set_preset")
        client.predict(prompt="a fox", model="demo-sd3", steps=1, seed=1, api_name="/generate_image")
        status = client.predict(api_name="/status")
        assert status["preset"] == "8gb-laptop" and "offload" in status["plan"]
        assert status["denoiser_resident_gb"] >= 0 and status["denoiser_streamed_gb_per_step"] == 0.0
        assert "streamed per step" in status["denoiser_plan"] and status["storage_dtype"] == "float32"
    finally:
        client.predict("cpu", api_name="/set_preset")


def test_the_rest_route_that_skips_the_queue_is_closed(app):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        app.url + "gradio_api/run/generate_image", data=json.dumps({"data": ["a fox"]}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert b"join the queue" in refused.value.read()


def test_the_readme_api_example_runs(app):
    import subprocess
    import sys

    from tests.app_server import ROOT

    done = subprocess.run([sys.executable, "examples/api_client.py", app.url], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seed 42" in done.stdout and "seed 43" in done.stdout and "demo-sd3 on disk (demo)" in done.stdout
    assert "LoRA detail.safetensors weight 0.8 sha256" in done.stdout


def test_reuse_settings_restores_every_field_from_a_png_made_by_the_app(client):
    from gradio_client import handle_file

    _, used, _ = client.predict(
        prompt="a red barn", negative_prompt="fog", model="demo-sd3", width=256, height=272, steps=3, guidance=6.5,
        seed=99, scheduler="Heun", api_name="/generate_image",
    )
    restored = client.predict(handle_file(used["images"][0]), api_name="/reuse_settings")
    model, prompt, negative, width, height, steps, guidance, seed, batch, sampler, strength, loras, weights, *speed = restored
    assert (model, prompt, negative, width, height, steps, guidance, seed, sampler, strength, loras, weights) == (
        "demo-sd3", "a red barn", "fog", 256, 272, 3, 6.5, 99, "Heun", 0.6, "", "as shipped"
    )
    # Speed off, method and threshold the level's, not compiled, PyTorch's attention (the CPU preset's own choice).
    assert list(speed[:5]) == ["off", "auto", None, "off", "preset"]
    # No ControlNet, no IP-Adapter, no hires fix.
    assert list(speed[5:]) == [[], "", "", "", 0.0, "auto", 1.0, 0.35]


def test_reuse_settings_refuses_a_file_without_atelier_parameters(client, tmp_path):
    from gradio_client import handle_file

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(Exception, match="No Atelier settings found in plain.png"):
        client.predict(handle_file(str(plain)), api_name="/reuse_settings")


def test_stop_from_the_same_client_ends_its_running_job(client):
    import time

    from gradio_client.utils import Status

    def denoising() -> bool:
        status = job.status()
        return status.code == Status.PROGRESS and any("step" in (unit.desc or "") for unit in status.progress_data or [])

    job = client.submit(prompt="a fox", model="demo-sd3", width=512, height=512, steps=200, seed=1, batch=2, api_name="/generate_image")
    deadline = time.monotonic() + 60
    while not denoising() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert "Stopping" in client.predict(api_name="/stop")
    gallery, used, summary = job.result(timeout=60)
    assert summary.startswith("Stopped") and used["stopped"] is True and len(gallery) < 2
    assert time.monotonic() - started < 10
    after, _, _ = client.predict(prompt="a fox", model="demo-sd3", steps=1, seed=1, api_name="/generate_image")
    assert len(after) == 1


def test_image_to_image_through_the_api_starts_from_the_given_picture(client, tmp_path):
    from gradio_client import handle_file

    start = tmp_path / "start.png"
    Image.new("RGB", (320, 256), (30, 120, 200)).save(start)
    gallery, used, _ = client.predict(
        prompt="a fox", model="demo-flux", width=320, height=256, steps=4, seed=3,
        init_image=handle_file(str(start)), strength=0.0, api_name="/generate_image",
    )
    with Image.open(gallery[0]["image"]) as result:
        assert result.size == (320, 256) and result.getpixel((10, 10)) == (30, 120, 200)
    assert used["parameters"][0]["strength"] == 0.0 and used["parameters"][0]["init_image"]["file"] == "start.png"
    _, used, _ = client.predict(
        prompt="a fox", model="demo-flux", width=320, height=256, steps=4, seed=3,
        init_image=handle_file(str(start)), strength=0.7, api_name="/generate_image",
    )
    with Image.open(used["images"][0]) as result:
        assert result.getpixel((10, 10)) != (30, 120, 200)


def test_loras_from_the_library_through_the_api_are_recorded_restored_and_leave_the_base_model_intact(client):
    from gradio_client import handle_file

    assert [lora["name"] for lora in client.predict(model="demo-sd3", api_name="/loras")] == ["detail.safetensors", "style.safetensors"]
    assert [lora["name"] for lora in client.predict(model="demo-flux", api_name="/loras")] == ["flux/glow.safetensors"]
    run = lambda loras: client.predict(prompt="a fox", model="demo-sd3", steps=2, seed=8, loras=loras, api_name="/generate_image")
    _, base, _ = run("")
    _, styled, summary = run("detail.safetensors:0.8, style.safetensors:-0.5")
    _, base_again, _ = run("")
    pixels = lambda used: list(Image.open(used["images"][0]).getdata())
    assert pixels(styled) != pixels(base) and pixels(base_again) == pixels(base)
    records = styled["parameters"][0]["loras"]
    assert [(r["file"], r["weight"]) for r in records] == [("detail.safetensors", 0.8), ("style.safetensors", -0.5)]
    assert all(len(r["sha256"]) == 16 for r in records) and "LoRAs: detail.safetensors:0.8" in summary
    restored = client.predict(handle_file(styled["images"][0]), api_name="/reuse_settings")
    assert restored[11] == "detail.safetensors:0.8\nstyle.safetensors:-0.5"
    with pytest.raises(Exception, match="flux/glow.safetensors is made for FLUX"):
        run("flux/glow.safetensors:1")


def test_speed_through_the_api_is_recorded_with_the_steps_it_skipped(client):
    from gradio_client import handle_file

    _, used, _ = client.predict(prompt="a fox", model="demo-flux", steps=10, seed=5, speed="fast", api_name="/generate_image")
    cache = used["parameters"][0]["step_cache"]
    assert used["parameters"][0]["speed"] == "fast" and cache["method"] == "teacache" and cache["calls_skipped"] > 0
    _, used, _ = client.predict(
        prompt="a fox", model="demo-flux", steps=10, seed=5, speed="fast", cache_threshold=0, api_name="/generate_image"
    )
    assert used["parameters"][0]["step_cache"] == {"method": "teacache", "threshold": 0.0, "denoiser_calls": 10, "calls_skipped": 0}
    # Reuse brings back the level and, as it differed from the level's, the threshold that ran.
    restored = client.predict(handle_file(used["images"][0]), api_name="/reuse_settings")
    assert list(restored[13:16]) == ["fast", "teacache", 0.0]


def test_attention_and_compile_through_the_api(client):
    _, used, _ = client.predict(prompt="a fox", model="demo-flux", steps=1, seed=5, attention="sdpa-math", api_name="/generate_image")
    assert used["parameters"][0]["attention"] == "sdpa-math"
    assert used["parameters"][0]["compiled_blocks"]["compile"] == "off"
    with pytest.raises(Exception, match="compiled blocks and step caching do not combine"):
        client.predict(prompt="a fox", model="demo-flux", steps=1, speed="fast", compile="on", api_name="/generate_image")
    with pytest.raises(Exception, match="SageAttention .* needs an NVIDIA GPU"):
        client.predict(prompt="a fox", model="demo-flux", steps=1, attention="sage", api_name="/generate_image")


def test_controlnet_and_ip_adapter_through_the_api_are_recorded_and_restored(client, tmp_path):
    from gradio_client import handle_file

    control = tmp_path / "edges.png"
    picture = Image.new("RGB", (320, 256))
    picture.paste((255, 255, 255), (80, 64, 240, 192))
    picture.save(control)
    common = dict(prompt="a fox", model="demo-sd15", width=256, height=256, steps=2, seed=4, api_name="/generate_image")
    _, plain, _ = client.predict(**common)
    _, used, summary = client.predict(
        **common, control_images=[handle_file(str(control))], control_types=["canny"], control_strengths="0.7",
        control_starts="0.1", control_ends="0.9", ip_adapter_images=[handle_file(str(control))], ip_adapter_scale=0.5,
    )
    assert "Control image 1 (edges.png, 320×256) was resized to 256×256." in summary
    assert list(Image.open(used["images"][0]).getdata()) != list(Image.open(plain["images"][0]).getdata())
    record = used["parameters"][0]
    assert (record["control_types"], record["control_strengths"], record["control_starts"], record["control_ends"]) == (
        ["canny"], [0.7], [0.1], [0.9]
    )
    assert record["ip_adapter"] == "demo-ip-adapter-sd15" and record["ip_adapter_scale"] == 0.5
    assert record["control_images"][0]["file"] == "edges.png" and len(used["prepared_controls"]) == 1
    restored = client.predict(handle_file(used["images"][0]), api_name="/reuse_settings")
    assert list(restored[-8:-2]) == [["canny"], "0.7", "0.1", "0.9", 0.5, "demo-ip-adapter-sd15"]
    with pytest.raises(Exception, match="control_types: 'tile' is not a control type of"):
        client.predict(**common, control_images=[handle_file(str(control))], control_types=["tile"])
