import os
import shutil
from pathlib import Path

import pytest

# Tests never reach the Hub: a model that is not on disk must fail fast with our message.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pipelines.catalog import MODELS  # noqa: E402
from pipelines.model_store import ModelStore  # noqa: E402
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


@pytest.fixture
def models_dir(demo_models_dir, tmp_path) -> Path:
    """A private copy of the demo models folder that a test may change."""
    folder = tmp_path / "models"
    shutil.copytree(demo_models_dir, folder)
    return folder


@pytest.fixture(scope="session")
def presets():
    return load_presets()
