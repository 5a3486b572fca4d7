import os
import shutil
from pathlib import Path

import pytest

# Tests never reach the Hub: a model that is not on disk must fail fast with our message.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pipelines.catalog import MODELS  # noqa: E402
from pipelines.loading.model_store import ModelStore  # noqa: E402
from presets import load_presets  # noqa: E402


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory) -> Path:
    """A models folder with every demo model built once for the session."""
    folder = tmp_path_factory.mktemp("models")
    store = ModelStore(folder, offline=True)
    for spec in MODELS:
        if spec.demo:
            store.ensure(spec)
    return folder


@pytest.fixture(scope="session")
def demo_loras_dir(tmp_path_factory) -> Path:
    """A LoRA library of tiny random LoRAs: two for SD3, one for FLUX (in a subfolder), and a file that is no LoRA."""
    from pipelines.catalog import Family
    from pipelines.tiny import build_tiny_lora

    folder = tmp_path_factory.mktemp("loras")
    build_tiny_lora(Family.SD3, folder / "detail.safetensors", seed=1)
    build_tiny_lora(Family.SD3, folder / "style.safetensors", seed=2)
    build_tiny_lora(Family.FLUX, folder / "flux" / "glow.safetensors", seed=3)
    build_tiny_lora(Family.ACE_STEP, folder / "music" / "lofi.safetensors", seed=4)
    (folder / "notes.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.fixture
def models_dir(demo_models_dir, tmp_path) -> Path:
    """A private copy of the demo models folder that a test may change."""
    folder = tmp_path / "models"
    shutil.copytree(demo_models_dir, folder)
    return folder


@pytest.fixture(scope="session")
def presets():
    return load_presets()


@pytest.fixture
def big_sd3_models_dir(models_dir) -> Path:
    """The models folder with demo-sd3's transformer replaced by a 12-block, 445 MB one: big enough for RAM
    measurements to stand above noise and for partial residency to have blocks to choose from."""
    import torch
    from diffusers import SD3Transformer2DModel

    from pipelines.hardware import release_freed_memory

    torch.manual_seed(0)
    big = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=12, attention_head_dim=64,
        num_attention_heads=8, joint_attention_dim=64, caption_projection_dim=512, pooled_projection_dim=64,
        pos_embed_max_size=96,
    )
    folder = models_dir / "demo" / "demo-sd3" / "transformer"
    shutil.rmtree(folder)
    big.save_pretrained(folder)
    del big
    release_freed_memory()
    return models_dir


@pytest.fixture(scope="module")
def app(demo_models_dir, demo_loras_dir, tmp_path_factory):
    """The real app in its own process on the demo models, one per test module; `app.outputs` is its outputs folder."""
    from tests.app_server import AppServer

    outputs = tmp_path_factory.mktemp("outputs")
    server = AppServer(
        "--models-dir", str(demo_models_dir), "--loras-dir", str(demo_loras_dir), "--outputs-dir", str(outputs),
        log_path=tmp_path_factory.mktemp("logs") / "app.log",
    ).wait_ready()
    server.outputs = outputs
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


@pytest.fixture
def manager(demo_models_dir, presets):
    """A manager over the demo models on the CPU preset."""
    from pipelines.manager import ModelManager

    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


@pytest.fixture
def outputs(tmp_path):
    """An empty outputs folder for one test."""
    from pipelines.outputs import OutputStore

    return OutputStore(tmp_path / "outputs")
