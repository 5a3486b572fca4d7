"""Reading a denoiser file in a weight format: a safetensors fine-tune read with int8 is stored in int8 (it was left as
shipped), and with the memory engine holding the denoiser it is read straight into the engine's int8 storage. Scaled
fp8 files in the original FLUX / Wan layouts give the bf16 file's output on the CPU path and in the engine."""

import json
import shutil

import pytest
import torch
from diffusers import FluxTransformer2DModel, WanTransformer3DModel

from pipelines.loading.loaders import ReadSettings, _read_denoiser_file
from pipelines.loading.model_store import ModelFiles, ModelStore
from pipelines.loading.weight_formats import WeightFormat
from pipelines.memory.host_arena import HostArena
from pipelines.memory.stored_weights import StoredAs


def flux_file(models_dir):
    """demo-flux's transformer as a single file in diffusers' layout, a fine-tune of demo-flux by its sidecar."""
    path = models_dir / "flux-tune.safetensors"
    shutil.copy(models_dir / "demo" / "demo-flux" / "transformer" / "diffusion_pytorch_model.safetensors", path)
    path.with_suffix(".json").write_text(json.dumps({"base": "demo-flux"}))
    store = ModelStore(models_dir, offline=True)
    (spec,) = [spec for spec in store.scan_files() if spec.id == path.name]
    return spec, ModelFiles(models_dir / "demo" / "demo-flux", checkpoint=path)


def test_a_safetensors_denoiser_file_read_in_int8_is_stored_in_int8(models_dir):
    spec, files = flux_file(models_dir)
    read = _read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.INT8, torch.device("cpu")))
    weight = read.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert type(weight) is not torch.Tensor and "int8" in repr(type(weight)).lower() + str(getattr(weight, "qdata", weight).dtype)


def test_with_the_engine_a_denoiser_file_is_read_straight_into_int8_blocks(models_dir):
    spec, files = flux_file(models_dir)
    read = _read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.INT8, torch.device("cpu"), arena=HostArena(pinned=False)))
    assert read.streamer is not None
    stored = [t.stored_dtype for block in read.streamer.blocks for t in block.tensors if t.stored_dtype is not None]
    assert stored and set(stored) == {torch.int8}
    ruled = _read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.INT8, torch.device("cpu"),
                                             arena=HostArena(pinned=False), stored={"transformer": "fp8"}))
    assert {t.stored_dtype for block in ruled.streamer.blocks for t in block.tensors if t.stored_dtype is not None} == {torch.float8_e4m3fn}, "the RAM plan's storage wins"


def original_layout_file(models_dir, model_key: str, fp8: str | None):
    """demo-flux's or demo-wan's transformer as a single file in the original layout (BFL's / Alibaba's keys), bf16 or
    fp8 as `fp8` says, a fine-tune of its demo model by its sidecar; its catalog entry and files."""
    from pipelines.memory.loader import state_shapes
    from pipelines.memory.original_layouts import FLUX_BFL, WAN_ORIGINAL
    from pipelines.memory.weights_file import WeightsFile
    from pipelines.tiny.checkpoint_files import write_original_layout_file

    model_class, base, layout = {"flux": (FluxTransformer2DModel, "demo-flux", FLUX_BFL), "wan": (WanTransformer3DModel, "demo-wan", WAN_ORIGINAL)}[model_key]
    folder = models_dir / "demo" / base / "transformer"
    path = models_dir / f"{model_key}-{(fp8 or 'bf16').replace(' ', '_')}.safetensors"
    source = WeightsFile(folder)
    write_original_layout_file(path, layout, state_shapes(model_class, folder), source.read, fp8=fp8, dtype=torch.bfloat16)
    source.close()
    path.with_suffix(".json").write_text(json.dumps({"base": base}))
    (spec,) = [spec for spec in ModelStore(models_dir, offline=True).scan_files() if spec.id == path.name]
    return spec, ModelFiles(models_dir / "demo" / base, checkpoint=path)


def transformer_output(read, model_key: str) -> torch.Tensor:
    from tests.pipelines.memory.test_stored_weights import flux_inputs, wan_inputs

    if read.streamer is not None:
        read.streamer.place(set())
    with torch.no_grad():
        return read.pipe.transformer(**(flux_inputs() if model_key == "flux" else wan_inputs()), return_dict=False)[0]


@pytest.mark.parametrize("model_key", ["flux", "wan"])
def test_a_scaled_fp8_file_in_the_original_layout_gives_the_bf16_files_output_with_and_without_the_engine(models_dir, model_key):
    from pipelines.loading.checkpoint_files import checkpoint_spec
    from pipelines.tiny.checkpoint_files import SCALED_FP8
    from tests.pipelines.memory.test_stored_weights import TOLERANCE, relative_error

    cpu = torch.device("cpu")
    spec, files = original_layout_file(models_dir, model_key, None)
    expected = transformer_output(_read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.SHIPPED, cpu)), model_key)
    spec, files = original_layout_file(models_dir, model_key, SCALED_FP8)
    assert checkpoint_spec(files.checkpoint).checkpoint.variant == "fp8 scaled"
    # The CPU preset: the denoiser read whole, each fp8 weight times its scale.
    on_cpu = transformer_output(_read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.SHIPPED, cpu)), model_key)
    # The memory engine: fp8 storage, the file's bytes as stored with its scales.
    engine = _read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.SHIPPED, cpu, arena=HostArena(pinned=False), stored={"transformer": "fp8"}))
    assert {t.stored_dtype for block in engine.streamer.blocks for t in block.tensors if t.stored_dtype is not None} == {torch.float8_e4m3fn}
    in_engine = transformer_output(engine, model_key)
    for path, actual in (("CPU", on_cpu), ("engine", in_engine)):
        error = relative_error(actual, expected)
        assert 0 < error < TOLERANCE[StoredAs.FP8], f"{path}: relative error {error:.4f}"


def test_a_scaled_fp8_file_no_layout_describes_is_refused_rather_than_read_without_its_scales(models_dir):
    from pipelines.errors import ModelLoadFailed
    from pipelines.tiny.checkpoint_files import SCALED_FP8

    spec, files = original_layout_file(models_dir, "flux", SCALED_FP8)
    config = models_dir / "demo" / "demo-flux" / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_single_layers": 3}))  # a base of another size
    with pytest.raises(ModelLoadFailed, match="scaled fp8 file"):
        _read_denoiser_file(ReadSettings(spec, files, torch.bfloat16, WeightFormat.SHIPPED, torch.device("cpu")))
