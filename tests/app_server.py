"""Start the real app in a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AppServer:
    def __init__(self, *flags: str, command: list[str] | None = None, cwd: Path = ROOT, log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        command = command or [sys.executable, "app.py"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        if "--settings-file" not in flags:  # never the developer's own settings.json
            self._settings_folder = tempfile.TemporaryDirectory()
            flags = (*flags, "--settings-file", str(Path(self._settings_folder.name) / "settings.json"))
        self.settings_path = Path(flags[list(flags).index("--settings-file") + 1])
        self.process = subprocess.Popen(
            [*command, "--no-browser", "--port", str(self.port), *flags],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 120) -> "AppServer":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with {self.process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the app did not answer on {self.url} within {timeout_s} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
