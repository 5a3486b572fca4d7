"""What the app remembers, and where.

- The hardware preset is the machine's: it lives in the settings file (`"preset"`), for every browser.
- A tab's last values are a person's: each browser keeps its own in its local storage; with a login (`--auth`) they
  live in that user's section of the settings file (`"users"`). Only the page remembers them, when its Generate is
  pressed (`RememberedValues`); an API call never does.

Remembering is a convenience, never a reason to refuse to start or to fail a job: a damaged file is set aside as
`settings.json.bad`, a value that cannot be saved is not kept, and every remembered value is checked against its
control before it comes back."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

log = logging.getLogger(__name__)

# A settings file holds a preset id and a few tabs' values per user: kilobytes. Anything past this is not ours.
MAX_SETTINGS_BYTES = 1_000_000
# The longest text a remembered control gets back (the longest a job takes is speech's 20,000 characters).
MAX_REMEMBERED_CHARS = 20_000
# The sections a global settings file had before each browser and user kept its own values: ignored, gone at the
# next save.
OLD_TAB_SECTIONS = ("image", "edit", "video", "tts", "music")


class SavedSettings:
    """The settings file: `{"preset": {"id": ...}, "users": {user: {tab: {field: value}}}}`, rewritten atomically on
    change. A missing file means "nothing saved yet"; an unreadable, oversized or misshapen one is moved aside to
    `<name>.bad` and what could be read of it is kept."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._sections: dict[str, dict] = self._read()

    def get(self, section: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._sections.get(section, {}))

    def update(self, section: str, values: dict) -> None:
        with self._lock:
            self._commit({**self._sections, section: {**self._sections.get(section, {}), **values}})

    def for_user(self, user: str, tab: str) -> dict:
        """The values `user` last used in `tab` (empty when none were saved)."""
        with self._lock:
            return copy.deepcopy(self._sections.get("users", {}).get(user, {}).get(tab, {}))

    def remember_for_user(self, user: str, tab: str, values: dict) -> None:
        with self._lock:
            users = copy.deepcopy(self._sections.get("users", {}))
            users.setdefault(user, {})[tab] = dict(values)
            self._commit({**self._sections, "users": users})

    def _commit(self, sections: dict) -> None:
        """Keep `sections` if they can be saved at all; a value JSON or UTF-8 cannot hold, or a file past the size cap,
        leaves everything as it was. A disk that refuses the write (full, read-only) keeps them for this run."""
        try:
            data = json.dumps(sections, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
            log.warning("not remembering these settings: they cannot be saved (%s)", error)
            return
        if len(data) > MAX_SETTINGS_BYTES:
            log.warning("not remembering these settings: the settings file would pass %d bytes", MAX_SETTINGS_BYTES)
            return
        self._sections = sections
        self._write(data)

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            size = self.path.stat().st_size
            if size > MAX_SETTINGS_BYTES:
                raise ValueError(f"{size} bytes, more than the {MAX_SETTINGS_BYTES} a settings file may have")
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            self._set_aside(f"ignoring the saved settings: {error}")
            return {}
        sections, damaged = _checked_sections(data)
        if damaged:
            self._set_aside("ignoring damaged entries: " + "; ".join(damaged))
            with contextlib.suppress(TypeError, ValueError):
                self._write(json.dumps(sections, indent=2, ensure_ascii=False).encode("utf-8"))
        return sections

    def _set_aside(self, why: str) -> None:
        """Keep the damaged file as `<name>.bad` (the last one), so nothing the user wrote by hand is lost."""
        bad = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, bad)
            log.warning("%s: %s; the file is kept as %s", self.path, why, bad)
        except OSError as error:
            log.warning("%s: %s; could not keep it as %s: %s", self.path, why, bad, error)

    def _write(self, data: bytes) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(data)
            os.replace(temporary, self.path)
        except OSError as error:
            log.warning("could not save settings to %s: %s", self.path, error)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def _checked_sections(data: dict) -> tuple[dict, list[str]]:
    """The sections of a settings file this version reads, and what was damaged in it."""
    sections: dict[str, dict] = {}
    damaged: list[str] = []
    old = [name for name in OLD_TAB_SECTIONS if name in data]
    if old:
        log.info(
            "settings: the tab sections %s are no longer used (each browser, or each login, keeps its own values); "
            "they go at the next save", ", ".join(old),
        )
    preset = data.get("preset")
    if preset is not None:
        if isinstance(preset, dict) and isinstance(preset.get("id"), str):
            sections["preset"] = {"id": preset["id"]}
        else:
            damaged.append(f"preset {preset!r:.80}")
    users = data.get("users")
    if users is not None:
        if not isinstance(users, dict):
            damaged.append(f"users {users!r:.80}")
        else:
            sections["users"] = {}
            for user, tabs in users.items():
                kept = {tab: values for tab, values in tabs.items() if isinstance(values, dict)} if isinstance(tabs, dict) else {}
                if not isinstance(tabs, dict) or len(kept) != len(tabs):
                    damaged.append(f"the values of user {user!r}")
                sections["users"][user] = kept
    return sections, damaged


# -- what comes back when a page opens -----------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value, most: int = MAX_REMEMBERED_CHARS) -> bool:
    if not isinstance(value, str) or len(value) > most:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _choice_values(component) -> list:
    return [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in component.choices or []]


def suits_control(component, value) -> bool:
    """Whether `value` is one the control can show: a number (within its limits) for a Number or Slider, one of the
    choices for a Radio or a fixed Dropdown (short text for one that takes other values), True/False for a Checkbox,
    text for a Textbox."""
    if isinstance(component, gr.Slider):
        return _is_number(value) and component.minimum <= value <= component.maximum
    if isinstance(component, gr.Number):
        if value is None:
            return True  # an empty number field
        if not _is_number(value) or (component.precision == 0 and value != int(value)):
            return False
        return (component.minimum is None or value >= component.minimum) and (component.maximum is None or value <= component.maximum)
    if isinstance(component, gr.Checkbox):
        return isinstance(value, bool)
    if isinstance(component, gr.Dropdown) and component.allow_custom_value:
        return _is_text(value, 200) or _is_number(value)
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        return value in _choice_values(component)
    if isinstance(component, gr.Textbox):
        return _is_text(value)
    return value is None or _is_number(value) or isinstance(value, bool) or _is_text(value)


def restorable(fields, values: dict, offered_models) -> dict:
    """The values among `values` that may come back in `fields`' controls: nothing when the model is no longer
    offered (the others were chosen for it); else each that passes its field's own test (`restore_if`) or, without
    one, suits its control. Each value left out is logged."""
    if values.get("model") not in offered_models:
        return {}
    kept = {}
    for field in fields:
        if field.name not in values:
            continue
        value = values[field.name]
        test: Callable[[Any], bool] = field.restore_if or (lambda v, c=field.component: suits_control(c, v))
        if field.name == "model" or test(value):
            kept[field.name] = value
        else:
            log.info("not restoring %s = %.80r: its control cannot take it, or it needs an upload a page cannot get back", field.name, value)
    return kept


def user_of(request) -> str | None:
    """The logged-in user (with `--auth`), or None."""
    return getattr(request, "username", None) or None


class RememberedValues:
    """A tab's remembered values. Written by a page event that runs with the page's Generate (never by an API call);
    kept in the browser's local storage, or with a login in that user's section of the settings file; read
    back by the page's load event, each value checked against its control."""

    def __init__(self, settings: SavedSettings, tab: str, fields):
        self.settings, self.tab, self.fields = settings, tab, fields
        self._components = {field.name: field.component for field in fields}
        # A fixed key and secret: the values survive a restart of the app. The secret is sent to every page, so it
        # only keeps the values from being read at a glance; the values are the page's own. Rendered by the app outside
        # the tabs (`render()`): a store inside a tab would read the browser's storage only once that tab is shown,
        # after the page's load event has run.
        self.state = gr.BrowserState({}, storage_key=f"atelier-{tab}", secret="atelier-remembered-values", render=False)

    def on(self, *triggers) -> None:
        """Remember the tab's controls on each of `triggers` (`generate.click`): a second, private listener of the
        page's own click, so the values are those the job was sent with, saved while it runs (a reload as soon as
        the result shows finds them), and a script, which calls only the named endpoint, never reaches it."""
        for trigger in triggers:
            trigger(
                self.remember, inputs={field.component for field in self.fields}, outputs=[self.state],
                api_visibility="private", concurrency_limit=None, show_progress="hidden",
            )

    def remember(self, shown: dict, request: gr.Request):
        """`shown` is the page's controls and their values; what suits each control is kept: for a logged-in user in
        the settings file, else returned to the browser's storage."""
        values = {field.name: shown[field.component] for field in self.fields if field.component in shown}
        fit = {name: value for name, value in values.items() if suits_control(self._components[name], value)}
        user = user_of(request)
        if user:
            self.settings.remember_for_user(user, self.tab, fit)
            return gr.skip()
        return fit

    def stored(self, in_browser, request) -> dict:
        """What was remembered for this page: the user's section with a login, else the browser's."""
        user = user_of(request)
        if user:
            return self.settings.for_user(user, self.tab)
        return in_browser if isinstance(in_browser, dict) else {}

    def restored(self, in_browser, request, offered_models) -> list:
        """The remembered controls' values in order for the load event; gr.skip() leaves a control as it is."""
        kept = restorable(self.fields, self.stored(in_browser, request), offered_models)
        return [kept.get(field.name, gr.skip()) for field in self.fields]
