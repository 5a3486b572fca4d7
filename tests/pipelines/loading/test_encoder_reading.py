"""Text encoders read by the memory engine inside a pipeline: stored int8/fp8 as the RAM plan (or the weight format)
says, read from disk as used, or from a GGUF encoder file in the models folder; every placement gives the same result."""

import numpy as np
import pytest
import torch

from pipelines.loading.loaders import ReadSettings, reader_for, storage_of
from pipelines.loading.model_store import ModelStore
from pipelines.loading.weight_formats import WeightFormat
from pipelines.manager import ModelManager
from pipelines.memory.encoder_storage import StoredLinear
from pipelines.memory.encoder_streaming import EncoderStreamer
from pipelines.memory.gguf_encoder import read_gguf_encoder
from pipelines.memory.stored_weights import StoredAs
from pipelines.placement import Placement
from pipelines.residency import place
from pipelines.tiny.gguf_encoder import write_gguf_encoder
from pipelines.tiny.sd3 import tiny_t5


def read(models_dir, model_id, weights=WeightFormat.SHIPPED, **fields):
    store = ModelStore(models_dir, offline=True)
    spec = store.catalog.spec(model_id)
    files = store.ensure(spec)
    settings = ReadSettings(
        spec, files, torch.float32, weights, torch.device("cpu"), companion=store.companion(spec),
        component_repos=store.weights_spec(spec).component_repos, **fields,
    )
    return spec, reader_for(spec, storage_of(spec, files))(settings)


def generate(pipe, seed=3) -> np.ndarray:
    return pipe("a lighthouse", num_inference_steps=2, width=64, height=64, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


def stored_linears(module) -> list:
    return [m for m in module.modules() if isinstance(m, StoredLinear)]


@pytest.mark.parametrize("preset_id", ["8gb-laptop", "6gb"])
@pytest.mark.parametrize("stored", ["int8", "fp8", "as shipped"])
def test_an_encoder_the_plan_stores_quantized_visits_the_gpu_through_the_engine_and_changes_nothing_placed(
    demo_models_dir, presets, stored, preset_id
):
    spec, resident = read(demo_models_dir, "demo-flux", stored={"text_encoder_2": stored})
    assert bool(stored_linears(resident.pipe.text_encoder_2)) == (stored != "as shipped")
    assert not stored_linears(resident.pipe.text_encoder)
    assert resident.held == {"text_encoder_2"}
    place(resident, spec, presets["cpu"], "cpu", "float32")
    expected = generate(resident.pipe)
    _, visiting = read(demo_models_dir, "demo-flux", stored={"text_encoder_2": stored})
    residency = place(visiting, spec, presets[preset_id], "cpu", "float32")
    assert residency.plan.components["text_encoder_2"] in (Placement.OFFLOAD, Placement.STREAM)
    streamers = [hook for hook in residency.applied.offload_hooks if isinstance(hook, EncoderStreamer)]
    assert [streamer.model for streamer in streamers] == [visiting.pipe.text_encoder_2]
    streamer = streamers[0]
    assert np.array_equal(generate(visiting.pipe), expected)
    assert streamer.copied_bytes > 0
    residency.after_job()
    if stored == "as shipped":
        _, by_diffusers = read(demo_models_dir, "demo-flux")
        assert not by_diffusers.held
        place(by_diffusers, spec, presets["cpu"], "cpu", "float32")
        assert np.array_equal(generate(by_diffusers.pipe), expected), "held as shipped, the same encoder"


def test_int8_weights_store_the_big_encoders_while_reading_and_the_rest_as_before(demo_models_dir):
    _, pipe = read(demo_models_dir, "demo-hidream", WeightFormat.INT8)
    quantized = {name for name in ("text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4")
                 if stored_linears(getattr(pipe.pipe, name))}
    assert quantized == {"text_encoder_3", "text_encoder_4"}, "the family's quantizable encoders, the Llama companion too"
    assert pipe.held == quantized


def test_an_encoder_read_from_disk_is_a_view_on_its_file_and_gives_the_same_image(demo_models_dir, presets):
    spec, in_ram = read(demo_models_dir, "demo-wan")
    place(in_ram, spec, presets["cpu"], "cpu", "float32")
    _, on_disk = read(demo_models_dir, "demo-wan", on_disk=frozenset({"text_encoder"}))
    mapped = on_disk.pipe.text_encoder._mapped_weights
    assert on_disk.held == {"text_encoder"}
    place(on_disk, spec, presets["cpu"], "cpu", "float32")
    assert all(mapped.holds(parameter) for parameter in on_disk.pipe.text_encoder.parameters())
    assert not any(mapped.holds(parameter) for parameter in in_ram.pipe.text_encoder.parameters())
    prompt = dict(prompt="a boat", num_inference_steps=2, width=32, height=32, num_frames=5, output_type="np")
    expected = in_ram.pipe(**prompt, generator=torch.Generator().manual_seed(1)).frames
    assert np.array_equal(on_disk.pipe(**prompt, generator=torch.Generator().manual_seed(1)).frames, expected)


def test_a_gguf_t5_encoder_in_the_models_folder_is_used_for_flux(models_dir, presets):
    folder = models_dir / "demo" / "demo-flux"
    manager = ModelManager(ModelStore(models_dir, offline=True), presets["cpu"])
    with manager.use("demo-flux") as pipe:
        from_repo = generate(pipe)
    manager.unload()
    (models_dir / "text_encoders").mkdir()
    gguf = write_gguf_encoder(folder / "text_encoder_2", models_dir / "text_encoders" / "t5-v1_1-xxl-encoder-Q8_0.gguf")
    # A UMT5 file is for Wan; a T5 of another size is not this model's.
    write_gguf_encoder(folder / "text_encoder_2", models_dir / "text_encoders" / "umt5-xxl-encoder-Q8_0.gguf", name="umt5-xxl-encoder")
    tiny_t5(5, d_model=16).save_pretrained(models_dir / "narrow-t5")
    write_gguf_encoder(models_dir / "narrow-t5", models_dir / "text_encoders" / "t5-v1_1-xxl-encoder-F16.gguf", "F16")
    assert ModelStore(models_dir, offline=True).ensure(manager.store.catalog.spec("demo-flux")).encoder_files == {"text_encoder_2": gguf}
    with manager.use("demo-flux") as pipe:
        expected = read_gguf_encoder(gguf, folder / "text_encoder_2", torch.float32, StoredAs.SHIPPED)
        ids = torch.arange(2, 18).reshape(1, 16)
        with torch.no_grad():
            assert torch.equal(pipe.text_encoder_2(ids)[0], expected(ids)[0])
        from_file = generate(pipe)
    assert from_file.shape == from_repo.shape and not np.array_equal(from_file, from_repo)
    manager.unload()


@pytest.mark.parametrize("model_id, encoder", [
    ("demo-sd3", "text_encoder_3"),  # T5
    ("demo-skyreels-v2", "text_encoder"),  # UMT5
    ("demo-cogview4", "text_encoder"),  # GLM
    ("demo-hunyuanvideo", "text_encoder"),  # LLaVA-Llama's text model
    ("demo-framepack", "text_encoder"),  # the same, from a component repo
    ("demo-sdxl", "text_encoder_2"),  # OpenCLIP
])
def test_every_big_encoder_can_be_stored_fp8_as_the_plan_says_and_the_others_stay_as_read(demo_models_dir, model_id, encoder):
    _, read_pipe = read(demo_models_dir, model_id, stored={encoder: "fp8"})
    assert read_pipe.held == {encoder}
    linears = stored_linears(getattr(read_pipe.pipe, encoder))
    assert linears and all(linear.stored.dtype == torch.float8_e4m3fn for linear in linears)
    others = [name for name in read_pipe.components if name != encoder]
    assert not any(stored_linears(getattr(read_pipe.pipe, name)) for name in others)
