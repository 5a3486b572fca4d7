"""The command line: flags are read before anything heavy is imported."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, exit_code, says", [(["--help"], 0, "--demo"), (["--bogus"], 2, "unrecognized arguments: --bogus")])
def test_help_and_a_bad_flag_answer_before_torch_gradio_or_diffusers_load(argv, exit_code, says):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "app.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == exit_code
    assert says in result.stdout + result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in imported
    assert not {"torch", "gradio", "diffusers", "transformers"} & imported
