"""Each tiny image family is saved in the real diffusers layout and runs 2 steps through from_pretrained."""

import json

import diffusers
import pytest
import torch

from pipelines.catalog import FAMILIES, Family, Task
from pipelines.tiny import build_tiny_companion, build_tiny_model

PIPELINES = {
    Family.SD3: "StableDiffusion3Pipeline", Family.FLUX: "FluxPipeline", Family.HIDREAM: "HiDreamImagePipeline",
    Family.COGVIEW4: "CogView4Pipeline", Family.SD15: "StableDiffusionPipeline", Family.SDXL: "StableDiffusionXLPipeline",
}
# HiDream needs its separate Llama folder and rescales every size: tests/pipelines/test_image_families.py runs it.
RUN_AS_SAVED = [family for family in PIPELINES if family is not Family.HIDREAM]


@pytest.mark.parametrize("family", list(PIPELINES))
def test_tiny_model_is_saved_in_the_real_folder_layout(tmp_path, family):
    folder = tmp_path / family.value
    build_tiny_model(family, folder)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINES[family]
    assert (folder / FAMILIES[family].denoiser / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "text_encoder" / "model.safetensors").is_file()
    assert (folder / "tokenizer" / "tokenizer_config.json").is_file()
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 8_000_000


@pytest.mark.parametrize("family", RUN_AS_SAVED)
@pytest.mark.parametrize("width, height", [(256, 256), (256, 384)])
def test_tiny_model_runs_two_steps_at_the_requested_size(demo_models_dir, family, width, height):
    pipe = getattr(diffusers, PIPELINES[family]).from_pretrained(demo_models_dir / "demo" / f"demo-{family.value}")
    image = pipe(
        "a lighthouse", num_inference_steps=2, width=width, height=height, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (width, height)


def test_same_seed_builds_the_same_weights(tmp_path):
    build_tiny_model(Family.SD3, tmp_path / "a", seed=3)
    build_tiny_model(Family.SD3, tmp_path / "b", seed=3)
    name = "transformer/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tiny_hidream_leaves_its_llama_encoder_to_a_folder_of_its_own_as_published(tmp_path):
    build_tiny_model(Family.HIDREAM, tmp_path / "hidream")
    build_tiny_companion("demo-llama", tmp_path / "llama")
    index = json.loads((tmp_path / "hidream" / "model_index.json").read_text())
    assert index["text_encoder_4"] == [None, None] and index["tokenizer_4"] == [None, None]
    assert not (tmp_path / "hidream" / "text_encoder_4").exists()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "llama" / name).is_file()
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_tiny_flux_control_model_takes_the_control_latents_beside_the_noise(tmp_path):
    build_tiny_model(Family.FLUX, tmp_path / "canny", task=Task.CANNY_TO_IMAGE)
    assert json.loads((tmp_path / "canny" / "model_index.json").read_text())["_class_name"] == "FluxControlPipeline"
    config = json.loads((tmp_path / "canny" / "transformer" / "config.json").read_text())
    assert config["in_channels"] == 2 * config["out_channels"], "as FLUX.1 Canny/Depth's 128 in, 64 out"


def test_tiny_flux_redux_prior_is_saved_as_published_without_text_encoders(tmp_path):
    build_tiny_companion("demo-flux-redux-prior", tmp_path / "redux")
    index = json.loads((tmp_path / "redux" / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPriorReduxPipeline"
    assert index["image_encoder"][1] == "SiglipVisionModel" and index["image_embedder"][1] == "ReduxImageEncoder"
    assert (tmp_path / "redux" / "feature_extractor" / "preprocessor_config.json").is_file()
    assert not (tmp_path / "redux" / "text_encoder").exists()
