"""Jobs: progress out, Stop in, and the one queue that lets a single job at a time use the GPU.

The queue is first come, first served across every tab and every browser or script. A job waits in it,
is told its place, can be stopped while it waits, and runs alone once its turn comes; finished jobs stay
in a short history (when each started and ended, and how) that the queue view and the tests read.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, TypeVar

from pipelines.errors import JobStopped, RetryAfterOutOfMemory

Result = TypeVar("Result")

ProgressCallback = Callable[[float, str], None]

HISTORY_LENGTH = 100
# Cancelled events remembered so a job that reaches the queue after its cancel (it was still being checked or its
# inputs read) is stopped at once; older ones are forgotten.
CANCELLED_EVENTS_KEPT = 1000
# How another person's job shows in the queue view when the app has logins.
ANOTHER_JOB = "another job"
_job_numbers = itertools.count(1)


class QueuedJob:
    """A checked job's place in the queue: its progress and Stop. `check_stop` is called between denoising steps.
    (What the job does is the runner's frozen job — ImageJob, VideoJob, … —; this is only its ticket.)

    `owner` is the browser session or client connection that sent it (whose Stop reaches it); `user` the login it
    came in under (None when the app has no logins); `event` the id the web server gave the request, by which a
    client cancels it."""

    def __init__(
        self, on_progress: ProgressCallback | None = None, owner: str = "local", tab: str = "", summary: str = "",
        user: str | None = None, event: str | None = None,
    ):
        self.id = next(_job_numbers)
        self.owner = owner
        self.user = user
        self.event = event
        self.tab = tab
        self.summary = summary
        self.state = "waiting"
        self.fraction = 0.0
        self.text = ""
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._on_progress = on_progress
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def report(self, fraction: float, description: str) -> None:
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.text = description
        if self._on_progress is not None:
            self._on_progress(self.fraction, description)

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise JobStopped("Stopped.")


@dataclass(frozen=True)
class JobView:
    """One row of the queue view. `user` (the login that sent the job) is not part of `as_dict`: see `seen_by`."""

    id: int
    tab: str
    summary: str
    state: str  # waiting | running | done | stopped | failed
    position: int  # 0 for the running job, 1.. for those waiting, -1 once finished
    progress: float
    text: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    user: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "user"}

    def seen_by(self, viewer: str | None) -> "JobView":
        """This row as the login `viewer` may see it: another person's job keeps its place, state and progress, but
        not its tab, prompt or progress text. Without logins (`viewer` None) everyone sees every job."""
        if viewer is None or self.user == viewer:
            return self
        return replace(self, tab="", summary=ANOTHER_JOB, text="", user=None)


class JobQueue:
    """First come, first served; one job runs at a time."""

    def __init__(self, history_length: int = HISTORY_LENGTH):
        self._changed = threading.Condition()
        self._waiting: list[QueuedJob] = []
        self._running: QueuedJob | None = None
        self._history: deque[JobView] = deque(maxlen=history_length)
        self._cancelled: deque[tuple[str, str]] = deque(maxlen=CANCELLED_EVENTS_KEPT)

    @contextmanager
    def run(
        self, owner: str, tab: str, summary: str, on_progress: ProgressCallback | None = None,
        user: str | None = None, event: str | None = None,
    ) -> Iterator[QueuedJob]:
        """Wait for this job's turn, then hold the GPU until the block ends. JobStopped if stopped while waiting."""
        job = QueuedJob(on_progress, owner=owner, tab=tab, summary=summary, user=user, event=event)
        with self._changed:
            if event is not None and (owner, event) in self._cancelled:
                job.stop()
            self._waiting.append(job)
            self._wait_for_turn(job)
            self._waiting.remove(job)
            self._running = job
            job.state = "running"
            job.started_at = time.time()
            self._changed.notify_all()
        outcome = "failed"
        try:
            yield job
            outcome = "stopped" if job.stopped else "done"
        except JobStopped:
            outcome = "stopped"
            raise
        finally:
            with self._changed:
                job.state = outcome
                job.finished_at = time.time()
                self._history.append(self._view(job, -1))
                self._running = None
                self._changed.notify_all()

    def _wait_for_turn(self, job: QueuedJob) -> None:
        reported_ahead = None
        while job.stopped or self._running is not None or self._waiting[0] is not job:
            if job.stopped:
                self._waiting.remove(job)
                job.state, job.finished_at = "stopped", time.time()
                self._history.append(self._view(job, -1))
                self._changed.notify_all()
                raise JobStopped("Stopped before it started.")
            ahead = self._waiting.index(job) + (self._running is not None)
            if ahead != reported_ahead:
                reported_ahead = ahead
                job.report(0.0, f"Waiting: {ahead} job{'s' if ahead != 1 else ''} ahead")
            self._changed.wait(timeout=0.25)  # a timeout, so a Stop while waiting is noticed

    def stop(self, owner: str) -> int:
        """Stop every job of this owner, running or waiting; the number stopped."""
        with self._changed:
            jobs = [job for job in [self._running, *self._waiting] if job is not None and job.owner == owner]
            for job in jobs:
                job.stop()
            self._changed.notify_all()
        return len(jobs)

    def cancel(self, owner: str, event: str) -> bool:
        """Stop the job a client cancelled by its request's `event` id, as Stop does (running: at its next step;
        waiting: it never runs), if `owner` sent it. A job not in the queue yet is stopped when it arrives."""
        with self._changed:
            self._cancelled.append((owner, event))
            jobs = [job for job in [self._running, *self._waiting] if job is not None and (job.owner, job.event) == (owner, event)]
            for job in jobs:
                job.stop()
            self._changed.notify_all()
        return bool(jobs)

    def current(self) -> list[JobView]:
        """The running job, then the waiting ones in order."""
        with self._changed:
            running = [self._view(self._running, 0)] if self._running else []
            return running + [self._view(job, position) for position, job in enumerate(self._waiting, start=1)]

    def history(self) -> list[JobView]:
        """Finished jobs, oldest first."""
        with self._changed:
            return list(self._history)

    @staticmethod
    def _view(job: QueuedJob, position: int) -> JobView:
        return JobView(
            id=job.id, tab=job.tab, summary=job.summary, state=job.state, position=position,
            progress=round(job.fraction, 3), text=job.text, submitted_at=job.submitted_at,
            started_at=job.started_at, finished_at=job.finished_at, user=job.user,
        )


def with_one_retry(job: "QueuedJob", attempt: Callable[[], Result]) -> Result:
    """`attempt()`, and once more after an out-of-memory: by then the manager has stepped its plan down (fewer
    resident blocks, tiled VAE). A second out-of-memory goes to the caller."""
    try:
        return attempt()
    except RetryAfterOutOfMemory:
        job.report(0.0, "Out of memory: retrying with a leaner memory plan")
    return attempt()
