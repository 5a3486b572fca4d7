import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def fish_fixtures() -> Path:
    """Golden data from the official implementation; $FISH_SPEECH_FIXTURES selects another set of the same layout."""
    folder = Path(os.environ.get("FISH_SPEECH_FIXTURES", ROOT.parent / "shared" / "fixtures" / "fish_speech"))
    if not (folder / "README.md").is_file():
        pytest.fail(f"Fish Speech fixtures not found in {folder}; set FISH_SPEECH_FIXTURES")
    return folder
