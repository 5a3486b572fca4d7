"""What every tab is given: the long-lived objects `app.main()` built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gradio as gr

from pipelines.catalog import ModelSpec, Task
from pipelines.jobs import JobQueue
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore, list_models
from pipelines.outputs import OutputStore
from presets import Preset
from tabs.saved_settings import SavedSettings

# Every event that uses the GPU is let into its handler at once (up to GPU_WAITING_LIMIT) so it can join our
# JobQueue, which runs one job at a time in arrival order, tells each its place and lets Stop reach a job that
# is still waiting. Gradio's own queue holds the rest.
GPU_WAITING_LIMIT = 32
GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=GPU_WAITING_LIMIT)


@dataclass
class AppContext:
    manager: ModelManager
    store: ModelStore
    outputs: OutputStore
    presets: dict[str, Preset]
    demo_mode: bool
    queue: JobQueue = field(default_factory=JobQueue)
    settings: SavedSettings = field(default_factory=lambda: SavedSettings(None))
    warnings: list[str] = field(default_factory=list)

    def outputs_for(self, request) -> OutputStore:
        """Where the person asking keeps their results: with logins, their own folder (`outputs/users/<name>/`);
        without, the outputs folder itself."""
        user = user_of(request)
        return self.outputs if user is None else self.outputs.for_user(user)


def owner_of(request) -> str:
    """Whose job this is: the browser session (or gradio_client connection) that sent it; its Stop reaches the job."""
    return getattr(request, "session_hash", None) or "local"


def user_of(request) -> str | None:
    """The login the request came in under; None when the app has no logins (then everyone sees everything)."""
    return getattr(request, "username", None) or None


def event_of() -> str | None:
    """The id the server gave the request being handled: what gradio_client's `job.cancel()` names. Gradio keeps it
    only in its own context variable (read the same way by gr.Progress and gr.Info; checked in Gradio 6.31, and
    tests/test_app_cancel.py fails if it moves)."""
    from gradio.context import LocalContext

    return LocalContext.event_id.get(None)


def model_choices(context: AppContext, task: Task) -> tuple[list[tuple[str, str]], str]:
    """The dropdown entries for the models of `task` the app offers now, and the one to preselect: a real model on
    disk first, else a demo model."""
    return choices_among(context, lambda spec: spec.task is task)


def choices_among(context: AppContext, wanted: Callable[[ModelSpec], bool]) -> tuple[list[tuple[str, str]], str]:
    """As `model_choices`, for the offered models that `wanted` accepts (the Edit tab's models of one mode)."""
    listings = [
        listing for listing in list_models(context.store, context.demo_mode) if listing.offered and wanted(listing.spec)
    ]
    missing = " — not on disk" if context.store.offline else " — downloads {gb:.1f} GB on first use"
    choices = [
        (listing.spec.label + ("" if listing.on_disk else missing.format(gb=listing.spec.weight_bytes / 1e9)), listing.spec.id)
        for listing in listings
    ]
    on_disk = [listing.spec.id for listing in listings if listing.on_disk and not listing.spec.demo]
    demo = [listing.spec.id for listing in listings if listing.spec.demo]
    return choices, (on_disk or demo or [choices[0][1]])[0]


def stop_handler(context: AppContext, when: str = "the current step"):
    """The Stop button's handler for a tab: stops this browser's (or client's) job, running or waiting."""

    def stop(request: gr.Request) -> str:
        stopped = context.queue.stop(owner_of(request))
        return f"Stopping after {when}…" if stopped else "Nothing is running."

    return stop


def named_api(fn: Callable, api_name: str, returns: str, **kwargs) -> None:
    """`gr.api(fn)`, with its result called `returns` in the API listing (Gradio would call it "1st")."""
    from gradio.context import get_blocks_context

    dependency = gr.api(fn, api_name=api_name, **kwargs)
    for block_id in dependency["outputs"]:
        get_blocks_context().blocks[block_id].label = returns
