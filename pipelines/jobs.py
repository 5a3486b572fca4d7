"""A job's link to the person waiting for it: progress reports out, Stop in."""

from __future__ import annotations

import threading
from typing import Callable

from pipelines.errors import JobStopped

ProgressCallback = Callable[[float, str], None]


class Job:
    """Progress and Stop for one running job. `step` is called between denoising steps."""

    def __init__(self, on_progress: ProgressCallback | None = None):
        self._on_progress = on_progress
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def report(self, fraction: float, description: str) -> None:
        if self._on_progress is not None:
            self._on_progress(min(max(fraction, 0.0), 1.0), description)

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise JobStopped("Stopped.")


class JobBoard:
    """The running job of each owner (a browser session), so Stop reaches the right job."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, owner: str, on_progress: ProgressCallback | None = None) -> Job:
        job = Job(on_progress)
        with self._lock:
            self._jobs[owner] = job
        return job

    def finish(self, owner: str, job: Job) -> None:
        with self._lock:
            if self._jobs.get(owner) is job:
                del self._jobs[owner]

    def stop(self, owner: str) -> bool:
        with self._lock:
            job = self._jobs.get(owner)
        if job is not None:
            job.stop()
        return job is not None
