"""Each tiny video model is saved in the real diffusers layout and keeps its family's real size and frame rules."""

import json

import diffusers
import pytest
import torch
from PIL import Image

from pipelines.catalog import Family, Task, family_spec
from pipelines.tiny import build_tiny_model

MODELS = {
    "demo-wan": (Family.WAN, Task.TEXT_TO_VIDEO, "WanPipeline"),
    "demo-wan-i2v": (Family.WAN, Task.IMAGE_TO_VIDEO, "WanImageToVideoPipeline"),
    "demo-ltx": (Family.LTX, Task.TEXT_TO_VIDEO, "LTXPipeline"),
    "demo-wan-vace": (Family.WAN_VACE, Task.TEXT_TO_VIDEO, "WanVACEPipeline"),
    "demo-hunyuanvideo": (Family.HUNYUANVIDEO, Task.TEXT_TO_VIDEO, "HunyuanVideoPipeline"),
}


@pytest.mark.parametrize("model_id", list(MODELS))
def test_tiny_video_model_is_saved_in_the_real_folder_layout(tmp_path, model_id):
    family, task, pipeline_class = MODELS[model_id]
    build_tiny_model(family, tmp_path / model_id, task=task)
    folder = tmp_path / model_id
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == pipeline_class
    for component in ("transformer", "vae"):
        assert (folder / component / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "text_encoder" / "model.safetensors").is_file()
    if task is Task.IMAGE_TO_VIDEO:
        assert (folder / "image_encoder" / "model.safetensors").is_file()
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 4_000_000


@pytest.mark.parametrize("model_id, width, height, frames", [("demo-wan", 96, 64, 9), ("demo-ltx", 96, 64, 17)])
def test_tiny_video_model_makes_the_frames_and_size_its_rules_allow(demo_models_dir, model_id, width, height, frames):
    family, _, pipeline_class = MODELS[model_id]
    rules = family_spec(family).video
    assert rules.nearest_frames(frames) == frames
    pipe = getattr(diffusers, pipeline_class).from_pretrained(demo_models_dir / "demo" / model_id)
    video = pipe(
        "a fox", num_inference_steps=2, width=width, height=height, num_frames=frames, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    assert video.shape == (frames, height, width, 3)


def test_tiny_wan_image_to_video_starts_from_the_picture_size(demo_models_dir):
    pipe = diffusers.WanImageToVideoPipeline.from_pretrained(demo_models_dir / "demo" / "demo-wan-i2v")
    video = pipe(
        image=Image.new("RGB", (96, 64), "red"), prompt="a fox", width=96, height=64, num_frames=5, num_inference_steps=2,
        output_type="np", generator=torch.Generator().manual_seed(0),
    ).frames[0]
    assert video.shape == (5, 64, 96, 3)


def test_same_seed_builds_the_same_video_weights(tmp_path):
    build_tiny_model(Family.LTX, tmp_path / "a", seed=3)
    build_tiny_model(Family.LTX, tmp_path / "b", seed=3)
    name = "transformer/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tiny_framepack_is_saved_as_its_three_published_repos(tmp_path):
    from pipelines.tiny import build_tiny_component_repo

    build_tiny_model(Family.FRAMEPACK, tmp_path / "framepack", task=Task.IMAGE_TO_VIDEO)
    build_tiny_component_repo("demo-hunyuanvideo-base", tmp_path / "hunyuanvideo")
    build_tiny_component_repo("demo-flux-redux-siglip", tmp_path / "redux")
    # The transformer alone at the root, as lllyasviel/FramePackI2V_HY publishes it (saved by the authors' class).
    config = json.loads((tmp_path / "framepack" / "config.json").read_text())
    assert config["_class_name"] == "HunyuanVideoTransformer3DModelPacked" and config["has_clean_x_embedder"]
    assert (tmp_path / "framepack" / "diffusion_pytorch_model.safetensors").is_file()
    for name in ("text_encoder", "text_encoder_2", "vae"):
        assert next((tmp_path / "hunyuanvideo" / name).glob("*.safetensors")).is_file()
    for name in ("tokenizer", "tokenizer_2", "scheduler"):
        assert (tmp_path / "hunyuanvideo" / name).is_dir()
    assert (tmp_path / "redux" / "image_encoder" / "model.safetensors").is_file()
    assert (tmp_path / "redux" / "feature_extractor" / "preprocessor_config.json").is_file()
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < 4_000_000


def test_tiny_ltx_ships_its_tokenizer_as_lightricks_do_and_loads_through_the_manager(tmp_path, presets):
    """Lightricks' repos hold `spiece.model` and no `tokenizer.json`: transformers must convert it (sentencepiece and
    protobuf installed), through the same store and manager path as the real model."""
    from pipelines.catalog import MODELS
    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore

    store = ModelStore(tmp_path, offline=True)
    store.ensure(next(spec for spec in MODELS if spec.id == "demo-ltx"))
    tokenizer_files = sorted(path.name for path in (tmp_path / "demo" / "demo-ltx" / "tokenizer").iterdir())
    assert "spiece.model" in tokenizer_files and "tokenizer.json" not in tokenizer_files
    with ModelManager(store, presets["cpu"]).use("demo-ltx") as pipe:
        ids = pipe.tokenizer("a fox", padding="max_length", max_length=8).input_ids
        video = pipe(
            "a fox", num_inference_steps=2, width=64, height=64, num_frames=9, output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).frames[0]
    assert ids[-1] == 0 and 1 in ids  # padded with <pad> (0) after </s> (1), as T5's SentencePiece model does
    assert video.shape == (9, 64, 64, 3)
