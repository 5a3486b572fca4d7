"""Reading a denoiser file in a weight format: a safetensors fine-tune read with int8 is stored in int8 (it was left as
shipped), and with the memory engine holding the denoiser it is read straight into the engine's int8 storage."""

import json
import shutil

import torch

from pipelines.loading.loaders import ReadSettings, _read_denoiser_file
from pipelines.loading.model_store import ModelFiles, ModelStore
from pipelines.loading.weight_formats import WeightFormat
from pipelines.memory.host_arena import HostArena


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
