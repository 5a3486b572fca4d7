"""What the app remembers between starts: the chosen preset and each tab's last values, in one JSON file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path

import gradio as gr

log = logging.getLogger(__name__)


class SavedSettings:
    """Sections of plain values (`"preset"`, `"image"`, ...) kept in one file, rewritten atomically on change.

    A missing or unreadable file means "nothing saved yet": remembering is a convenience, never a reason to
    refuse to start or to fail a job."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._sections: dict[str, dict] = self._read()

    def get(self, section: str) -> dict:
        with self._lock:
            return dict(self._sections.get(section, {}))

    def update(self, section: str, values: dict) -> None:
        with self._lock:
            self._sections[section] = {**self._sections.get(section, {}), **values}
            self._write()

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            log.warning("ignoring the saved settings in %s: %s", self.path, error)
            return {}
        return {key: value for key, value in data.items() if isinstance(value, dict)} if isinstance(data, dict) else {}

    def _write(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self._sections, indent=2, ensure_ascii=False))
            os.replace(temporary, self.path)
        except OSError as error:
            log.warning("could not save settings to %s: %s", self.path, error)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def restored_values(settings: SavedSettings, section: str, fields, offered_models) -> list:
    """A tab's last values in the order of `fields`, for its load event. Every control stays as it is when the
    saved model is no longer offered; a field never saved keeps its control's value."""
    saved = settings.get(section)
    if saved.get("model") not in offered_models:
        return [gr.skip()] * len(fields)
    return [saved.get(name, gr.skip()) for name in fields]
