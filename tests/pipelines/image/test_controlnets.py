"""ControlNets and IP-Adapters in text to image, on the tiny demo models and their tiny ControlNets/IP-Adapters."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.outputs import read_parameters


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


@pytest.fixture
def square(tmp_path):
    """A white square on black: strong edges for Canny, a clear shape for the other types."""
    def make(width=256, height=256, name="control.png"):
        picture = Image.new("RGB", (width, height))
        ImageDraw.Draw(picture).rectangle((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(255, 255, 255))
        path = tmp_path / name
        picture.save(path)
        return str(path)
    return make


def run(manager, outputs, **values):
    request = ImageRequest(prompt="a fox", steps=2, seed=7, width=256, height=256, **values)
    return generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob())


@pytest.mark.parametrize("model, kind", [("demo-sd15", "canny"), ("demo-sdxl", "depth"), ("demo-sd3", "canny"), ("demo-flux", "pose")])
def test_controlnet_at_strength_0_gives_exactly_the_image_without_it_and_at_1_another(manager, outputs, square, model, kind):
    plain = run(manager, outputs, model=model).outputs[0]
    off = run(manager, outputs, model=model, control_images=[square()], control_types=[kind], control_strengths=[0.0]).outputs[0]
    on = run(manager, outputs, model=model, control_images=[square()], control_types=[kind], control_strengths=[1.0]).outputs[0]
    assert np.array_equal(pixels(plain.path), pixels(off.path))
    assert np.abs(pixels(plain.path) - pixels(on.path)).max() > 0
    recorded = read_parameters(on.path)
    assert recorded["control_types"] == [kind] and recorded["control_strengths"] == [1.0]
    assert recorded["controls"][0]["type"] == kind and recorded["controls"][0]["image"]["sha256"]


def test_union_controlnet_modes_differ_and_are_recorded(manager, outputs, square):
    canny = run(manager, outputs, model="demo-sdxl", control_images=[square()], control_types="canny")
    pose = run(manager, outputs, model="demo-sdxl", control_images=[square()], control_types="pose")
    assert np.abs(pixels(canny.outputs[0].path) - pixels(pose.outputs[0].path)).max() > 0
    assert [read_parameters(r.outputs[0].path)["controls"][0]["mode"] for r in (canny, pose)] == [3, 0]


def test_two_controls_run_together_with_their_own_strengths_and_steps(manager, outputs, square):
    result = run(
        manager, outputs, model="demo-sd15", control_images=[square(), square(name="b.png")], control_types="canny, depth",
        control_strengths="0.8, 0.4", control_starts=[0.0, 0.5], control_ends=[0.5, 1.0],
    )
    recorded = read_parameters(result.outputs[0].path)
    assert recorded["control_types"] == ["canny", "depth"] and recorded["control_strengths"] == [0.8, 0.4]
    assert (recorded["control_starts"], recorded["control_ends"]) == ([0.0, 0.5], [0.5, 1.0])
    # The prepared pictures are kept and shown: Canny's edges are white lines on black, not the filled square.
    canny = np.asarray(Image.open(result.prepared_controls[0]).convert("L"))
    assert canny.shape == (256, 256) and 0 < (canny > 0).mean() < 0.1


def test_a_control_image_of_another_size_is_resized_with_a_note(manager, outputs, square):
    result = run(manager, outputs, model="demo-sd15", control_images=[square(320, 200)], control_types=["canny"])
    assert "Control image 1 (control.png, 320×200) was resized to 256×256." in result.control_note
    assert Image.open(result.prepared_controls[0]).size == (256, 256)


@pytest.mark.parametrize("values, field, message", [
    (dict(control_types=["scribble"]), "control_types", "'scribble' is not a control type of .*canny, depth, pose"),
    (dict(control_types=[]), "control_types", "give the type of each control image"),
    (dict(control_types=["canny"], control_strengths=[2.5]), "control_strengths", "out of range; use 0 to 2"),
    (dict(control_types=["canny"], control_strengths=[1, 1]), "control_strengths", "2 values for 1 control images"),
    (dict(control_types=["canny"], control_starts=[0.6], control_ends=[0.4]), "control_starts", "the start must come before the end"),
])
def test_bad_control_values_are_refused_naming_the_field(manager, square, values, field, message):
    with pytest.raises(InvalidRequest, match=f"{field}: .*{message}"):
        ImageRequest(prompt="a fox", model="demo-sd15", control_images=[square()], **values).check(manager.store.catalog)


def test_an_unreadable_control_image_and_a_model_without_controlnets_are_refused(manager, tmp_path, square):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(InvalidRequest, match="control_images: broken.png"):
        ImageRequest(prompt="a fox", model="demo-sd15", control_images=[str(broken)], control_types=["canny"]).check(manager.store.catalog)
    with pytest.raises(InvalidRequest, match="control_images: .*takes no ControlNet"):
        ImageRequest(prompt="a fox", model="demo-cogview4", control_images=[square()], control_types=["canny"]).check(manager.store.catalog)


# FLUX.1's is XLabs' adapter (one reference image) with its CLIP encoder from a repo of its own.
@pytest.mark.parametrize("model, references", [("demo-sd15", 2), ("demo-sdxl", 2), ("demo-flux", 1)])
def test_ip_adapter_at_scale_0_gives_exactly_the_image_without_it_and_above_0_another(manager, outputs, square, model, references):
    plain = run(manager, outputs, model=model).outputs[0]
    off = run(manager, outputs, model=model, ip_adapter_images=[square()], ip_adapter_scale=0.0).outputs[0]
    pictures = [square(name=f"{index}.png") for index in range(references)]
    on = run(manager, outputs, model=model, ip_adapter_images=pictures, ip_adapter_scale=1.0).outputs[0]
    assert np.array_equal(pixels(plain.path), pixels(off.path))
    assert np.abs(pixels(plain.path) - pixels(on.path)).max() > 0
    recorded = read_parameters(on.path)
    assert recorded["ip_adapter_scale"] == 1.0 and recorded["ip_adapter"] == f"demo-ip-adapter-{model.removeprefix('demo-')}"
    assert len(recorded["ip_adapter_images"]) == references


def test_flux_ip_adapter_is_xlabs_layout_and_takes_one_reference_image(manager, square):
    from safetensors import safe_open

    from pipelines.catalog.controls import ip_adapters
    from pipelines.catalog import MODELS_BY_ID

    adapter = ip_adapters(MODELS_BY_ID["demo-flux"].family, "demo-flux", True)["demo-ip-adapter-flux"]
    folder = manager.store.ensure_attached(MODELS_BY_ID["demo-flux"], adapter.source)
    with safe_open(str(folder / "ip_adapter.safetensors"), "pt") as opened:
        keys = set(opened.keys())
    assert "ip_adapter_proj_model.proj.weight" in keys and "double_blocks.0.processor.ip_adapter_double_stream_k_proj.bias" in keys
    with pytest.raises(InvalidRequest, match="ip_adapter_images: .*takes one reference image"):
        ImageRequest(prompt="a fox", model="demo-flux", ip_adapter_images=[square(), square(name="b.png")]).check(manager.store.catalog)


def test_flux_controlnet_is_placed_and_counted_like_a_component(manager, outputs, square, presets):
    from pipelines.catalog import FAMILIES, MODELS_BY_ID, Family
    from pipelines.catalog.controls import CONTROLNETS
    from pipelines.placement import ComponentSize, Placement, plan_placement

    run(manager, outputs, model="demo-flux", control_images=[square()], control_types=["canny"])
    assert manager.status().plan.components["controlnet"] is Placement.RESIDENT, "the loaded ControlNet was placed"
    # With the real sizes: FLUX.1 [dev] and the 6.6 GB Union Pro ControlNet on the 24 GB preset.
    sizes = {name: ComponentSize(total, total // 57, total // 456) for name, total in MODELS_BY_ID["flux1-dev"].component_bytes.items()}
    controlnet_bytes = next(c.source.size_bytes for c in CONTROLNETS if c.source.repo == "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro")
    with_controlnet = {**sizes, "controlnet": ComponentSize(controlnet_bytes, controlnet_bytes // 15, controlnet_bytes // 120)}
    alone = plan_placement(FAMILIES[Family.FLUX], sizes, presets["24gb"], "cuda", "bfloat16")
    both = plan_placement(FAMILIES[Family.FLUX], with_controlnet, presets["24gb"], "cuda", "bfloat16")
    assert "controlnet" in both.components and both.predicted_peak_vram_bytes <= both.usable_vram_bytes
    assert both.predicted_peak_vram_bytes > alone.predicted_peak_vram_bytes, "the ControlNet's bytes are counted"


def test_the_memory_plan_counts_an_attached_controlnet_and_a_too_small_ram_is_refused_naming_it(presets):
    from pipelines.catalog import MODELS_BY_ID
    from pipelines.catalog.controls import CONTROLNETS, attached_bytes
    from pipelines.memory.job_plan import plan_job

    GB = 10**9
    flux, laptop = MODELS_BY_ID["flux1-dev"], presets["8gb-laptop"]
    union_pro = next(c for c in CONTROLNETS if c.source.repo == "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro")
    # Two control pictures served by the one union net: it is read once.
    extra = attached_bytes((union_pro, union_pro), None)
    assert extra == {"controlnet": union_pro.source.size_bytes}
    alone = plan_job(flux, laptop, 64 * GB, 1024, 1024)
    both = plan_job(flux, laptop, 64 * GB, 1024, 1024, attached_bytes=extra)
    controlnet = next(c for c in both.components if c.name == "controlnet")
    assert controlnet.ram_gb == 6.6 and both.peak_ram_gb >= alone.peak_ram_gb + 6.6
    assert both.peak_vram_gb > alone.peak_vram_gb, "the ControlNet visits the GPU beside the streamed blocks"
    # 20 GB of RAM: FLUX alone fits (its denoiser in int8, the T5 on disk); with the ControlNet it does not.
    assert plan_job(flux, laptop, 20 * GB).ram_fits
    short = plan_job(flux, laptop, 20 * GB, attached_bytes=extra)
    assert not short.ram_fits and "controlnet 6.6" in short.ram_reason


def test_the_manager_refuses_a_load_whose_attached_controlnet_does_not_fit_the_ram(demo_models_dir, presets, square):
    from dataclasses import replace

    from pipelines.errors import NotEnoughMemory
    from pipelines.loading.loaders import Attachments
    from pipelines.loading.model_store import ModelStore
    from pipelines.manager import ModelManager
    from pipelines.catalog.controls import control_types

    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"], ram_bytes=64 * 10**9)
    union = control_types(manager.store.catalog.spec("demo-flux").family, "demo-flux", True)["canny"]
    # The tiny union ControlNet weighed as a 40 GB one: float32 on the CPU preset, 80 GB.
    heavy = replace(union, source=replace(union.source, size_bytes=40 * 10**9))
    with pytest.raises(NotEnoughMemory, match=r"FLUX.1 \(tiny\) with FLUX.1 ControlNet Union \(tiny\) does not fit .*controlnet 80.0"):
        with manager.use("demo-flux", attachments=Attachments((heavy,))):
            pass
    with manager.use("demo-flux", attachments=Attachments((union,))):
        assert manager.status().model_id == "demo-flux"
