"""What every tab is given: the long-lived objects `app.main()` built."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.jobs import JobQueue
from pipelines.manager import ModelManager
from pipelines.model_store import ModelStore
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


def owner_of(request) -> str:
    """Whose job this is: the browser session (or gradio_client connection) that sent it."""
    return getattr(request, "session_hash", None) or "local"
