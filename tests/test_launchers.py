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
    # The stamp and the log say which build pip really installed (here the CPU index may be unreachable, and pip
    # then takes PyPI's CUDA build: the log must say so rather than claim a CPU build).
    cuda = subprocess.run(
        [str(folder / ".venv" / "bin" / "python"), "-c", "import torch; print(torch.version.cuda or '')"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    build = f"CUDA {cuda}" if cuda else "CPU"
    assert f"installed torch 2.14.1" in first.stdout and f"{build} build" in first.stdout
    assert (folder / ".venv" / ".atelier-installed").read_text().splitlines()[1].endswith(build)
    assert ("the CPU build was asked for, but pip installed a CUDA build" in first.stdout) == bool(cuda)

    started = time.monotonic()
    second = run_launcher(folder, "--install-only")
    assert second.returncode == 0 and "skipping installation" in second.stdout and build in second.stdout
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


def fake_nvidia_smi(folder: Path, driver: str | None) -> Path:
    """A stand-in for nvidia-smi that reports one GPU with this driver version, or (None) finds no GPU."""
    bin_dir = folder / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    if driver is None:
        script.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not find an NVIDIA GPU' >&2\nexit 9\n")
    else:
        script.write_text(
            "#!/bin/sh\n"
            'case "$*" in *driver_version*) echo "' + driver + '" ;; *) echo "GPU 0: NVIDIA GeForce RTX 3070 Laptop GPU (UUID: GPU-0)" ;; esac\n'
        )
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    "driver, expected",
    [
        ("590.44.01", "torch=cuda index=pypi driver=590"),
        ("572.16", "torch=cuda index=https://download.pytorch.org/whl/cu128 driver=572"),
        ("535.104.05", "torch=cuda index=https://download.pytorch.org/whl/cu128 driver=535"),
        (None, "torch=cpu index=https://download.pytorch.org/whl/cpu driver=none"),
    ],
)
def test_launch_sh_picks_a_torch_build_the_driver_supports(tmp_path, driver, expected):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}, "PATH": f"{fake_nvidia_smi(tmp_path, driver)}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "launch.sh", "--torch-choice"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_launch_sh_names_the_driver_to_install_when_it_is_too_old(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}, "PATH": f"{fake_nvidia_smi(tmp_path, '470.82')}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "launch.sh", "--torch-choice"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "driver (470) is too old" in result.stderr and "580 or newer" in result.stderr
