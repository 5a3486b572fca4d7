"""launch.sh on a clean copy of the repository: builds its environment, serves the app, skips reinstalling."""

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app_server import ROOT, AppServer

pytestmark = pytest.mark.slow


def clean_copy(target: Path) -> Path:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def run_launcher(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATELIER_TORCH": "cpu", "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(["bash", "launch.sh", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def app_copy(tmp_path):
    folder = clean_copy(tmp_path / "atelier")
    yield folder
    # Its environment (torch with CUDA libraries, ~6 GB) would otherwise fill the disk over a few runs.
    shutil.rmtree(folder / ".venv", ignore_errors=True)


def test_launch_sh_installs_once_then_starts_the_app(app_copy, tmp_path):
    folder = app_copy
    first = run_launcher(folder, "--install-only")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "installing torch" in first.stdout and (folder / ".venv" / ".atelier-installed").is_file()

    started = time.monotonic()
    second = run_launcher(folder, "--install-only")
    assert second.returncode == 0 and "skipping installation" in second.stdout
    assert "installing" not in second.stdout and time.monotonic() - started < 30

    (folder / "requirements.txt").write_text((folder / "requirements.txt").read_text() + "\n# changed\n")
    third = run_launcher(folder, "--install-only")
    assert third.returncode == 0 and "installing requirements.txt" in third.stdout, "a changed requirements.txt reinstalls"

    server = AppServer("--demo", command=["bash", "launch.sh"], cwd=folder, log_path=tmp_path / "app.log")
    try:
        server.wait_ready(timeout_s=180)
        with urllib.request.urlopen(server.url, timeout=10) as page:
            assert page.status == 200 and b"Atelier" in page.read()
        assert "skipping installation" in server.log()
    finally:
        server.stop()
