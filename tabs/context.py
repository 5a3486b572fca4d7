"""What every tab is given: the long-lived objects `app.main()` built."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.jobs import JobBoard
from pipelines.manager import ModelManager
from pipelines.model_store import ModelStore
from pipelines.outputs import OutputStore
from presets import Preset

# Every event that uses the GPU shares this one queue slot.
GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=1)


@dataclass
class AppContext:
    manager: ModelManager
    store: ModelStore
    outputs: OutputStore
    presets: dict[str, Preset]
    demo_mode: bool
    jobs: JobBoard = field(default_factory=JobBoard)
    warnings: list[str] = field(default_factory=list)
