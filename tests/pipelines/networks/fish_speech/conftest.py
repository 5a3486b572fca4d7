import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.networks.fish_speech.dual_ar import DualARTransformer, load_dual_ar

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="session")
def fish_fixtures() -> Path:
    """Golden data from the official implementation; $FISH_SPEECH_FIXTURES selects another set of the same layout."""
    folder = Path(os.environ.get("FISH_SPEECH_FIXTURES", ROOT.parent / "shared" / "fixtures" / "fish_speech"))
    if not (folder / "README.md").is_file():
        pytest.fail(f"Fish Speech fixtures not found in {folder}; set FISH_SPEECH_FIXTURES")
    return folder


def assert_matches_reference(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """The fixtures' tolerance: |got - want| <= 1e-4 + 1e-4 * |want| elementwise."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    error = (got.float() - want).abs()
    assert (error <= 1e-4 + 1e-4 * want.abs()).all(), f"{name}: max abs error {error.max().item():.3g}"


@pytest.fixture(scope="module")
def model(fish_fixtures) -> DualARTransformer:
    return load_dual_ar(fish_fixtures / "llm", tokenizer_folder=fish_fixtures / "tokenizer")


@pytest.fixture(scope="module")
def inputs(fish_fixtures) -> dict[str, torch.Tensor]:
    return load_file(fish_fixtures / "llm_inputs.safetensors")
