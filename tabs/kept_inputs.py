"""A result's input files (start images, Edit pictures and masks, voice clips, VACE videos) as the outputs folder
kept them, for "Reuse settings" to put back into the tab's input controls."""

from __future__ import annotations

import gradio as gr

from pipelines.outputs import OutputStore


class KeptInputs:
    """Looks up the copies `OutputStore.keep_input` made, and collects the names of inputs that have none (a result
    made before inputs were kept, or on another machine), so the user is told once which to add again."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.missing: list[str] = []

    def path(self, record):
        """A control's value for one recorded input: the kept copy; None (the control cleared) where the result had
        no such input; left as it is where the copy is missing."""
        if not isinstance(record, dict):
            return None
        kept = self.store.kept_input(record)
        if kept is None:
            self.missing.append(str(record.get("file") or "an input"))
            return gr.skip()
        return str(kept)

    def paths(self, records) -> list[str] | None:
        """A multi-file control's value: the kept copies of `records` (those missing are named, not given)."""
        found = [path for path in map(self.path, records or []) if isinstance(path, str)]
        return found or None

    def warn_missing(self) -> None:
        if self.missing:
            gr.Warning(f"Not kept with this result, so not filled in: {', '.join(self.missing)}. Add them again to remake it.")
