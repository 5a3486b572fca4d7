"""Saving results: atomically, never over an existing file, parameters embedded and in a JSON sidecar.

Layout: `<outputs>/<kind>/<YYYY-MM-DD>/<NNNNN>-<model>-<seed>.<ext>` with `<same stem>.json` beside it. With logins,
each person's results (and kept inputs, and partial videos) live the same way under `<outputs>/users/<name>/`.
A file appears under its final name only once it is complete (written to a temporary name, then linked
into place with a call that fails rather than overwrite).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, PngImagePlugin

from pipelines import __version__
from pipelines.errors import OutputNotWritable
from pipelines.media import encode_audio, encode_video, input_file_record, read_comment, read_embedded_text

log = logging.getLogger(__name__)

PARAMETERS_KEY = "atelier"
# Where the video so far of a running job lives (never listed: no sidecars); see `write_partial_video`.
PARTIAL_FOLDER = "partial"
# Copies of the files results were made from, one per content (never listed: no sidecars); see `keep_input`.
INPUTS_FOLDER = "inputs"
# Each login's own outputs folder, `users/<user_folder_name(login)>/`, laid out as the outputs folder itself.
USERS_FOLDER = "users"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
# The names this module gives files while they are written (see `_temporary_beside`).
_TEMPORARY = re.compile(r"\.[0-9a-f]{32}\.tmp")
# A result's name under its day folder (see `_link_under_free_name`).
_RESULT = re.compile(r"\d{5}-.+")


@dataclass(frozen=True)
class SavedOutput:
    path: Path
    sidecar: Path
    parameters: dict


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name fragment with no path separators, dots-only names or odd characters."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")
    return cleaned[:limit] or "output"


def user_folder_name(user: str) -> str:
    """The folder of a login under `users/`: the name itself where it is a safe file name, else its safe form and a
    hash of the full name, so two logins never share a folder ("a.b" and "a-b", or two long names alike at first)."""
    cleaned = safe_name(user)
    if cleaned == user:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(user.encode()).hexdigest()[:12]}"


def safe_file_name(name) -> str:
    """A sidecar's `file` entry as a bare name in its own folder: a hand-edited `../x` cannot point elsewhere."""
    name = Path(str(name or "")).name
    return name if name not in ("", ".", "..") else "missing"


def run_record(manager, started: float) -> dict:
    """Where and how a job ran, as every result records it: the manager's preset, device and compute dtype,
    the wall time since `started` (a `time.monotonic()` reading) and when it finished."""
    return {
        "preset": manager.preset.id,
        "device": manager.execution_device(),
        "dtype": manager.compute_dtype(),
        "seconds": round(time.monotonic() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass(frozen=True)
class Tidied:
    """What `OutputStore.tidy` found left by a process that was killed while saving."""

    temporary_files: int
    sidecars_rewritten: int
    partial_videos: int


class OutputStore:
    def __init__(self, root: Path, stage_hook: Callable[[str, Path], None] | None = None):
        self.root = Path(root)
        # Called as ("written", temporary file) and ("linked", result) while saving: crash tests kill the process
        # there, at an exact point, instead of guessing one with timers. None outside tests.
        self.stage_hook = stage_hook

    def for_user(self, user: str) -> "OutputStore":
        """The outputs folder of one login (`users/<name>/`): results, kept inputs and partial videos of that person
        only. Its listing never reaches into another person's folder, nor the shared one."""
        return OutputStore(self.root / USERS_FOLDER / user_folder_name(user), self.stage_hook)

    def save_image(self, image: Image.Image, parameters: dict, kind: str = "images") -> SavedOutput:
        parameters = {**parameters, "kind": kind, "app": "Atelier", "app_version": __version__}
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_KEY, json.dumps(parameters, ensure_ascii=False))
        info.add_text("parameters", a1111_text(parameters))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        stem = f"{safe_name(str(parameters.get('model', 'output')))}-{parameters.get('seed', 0)}"
        return self._save_bytes(buffer.getvalue(), kind, stem, ".png", parameters)

    def save_audio(self, samples, sample_rate: int, parameters: dict, kind: str = "speech", audio_format: str = "wav") -> SavedOutput:
        """A WAV (16-bit), FLAC or MP3 with the parameters as JSON in its `comment` tag, and the sidecar.
        `samples`: shape (samples,) or (samples, channels)."""
        parameters = {**parameters, "kind": kind, "app": "Atelier", "app_version": __version__}
        data = encode_audio(samples, sample_rate, json.dumps(parameters, ensure_ascii=False), audio_format)
        stem = f"{safe_name(str(parameters.get('model', 'output')))}-{parameters.get('seed', 0)}"
        return self._save_bytes(data, kind, stem, f".{audio_format}", parameters)

    def save_video(
        self, frames, fps: float, suffix: str, parameters: dict, loop_count: int = 0, prefix: str = "", kind: str = "videos",
        audio_from: Path | None = None,
    ) -> SavedOutput:
        """Frames encoded as `suffix` (see `media.VIDEO_ENCODERS`) with the parameters embedded, and the sidecar.
        `prefix` starts the file name; it is reduced to a safe name fragment, so it never points outside the folder.
        `audio_from`: a file whose sound goes into the video (MP4, WebM)."""
        parameters = {**parameters, "kind": kind, "app": "Atelier", "app_version": __version__}
        data = encode_video(frames, fps, suffix, json.dumps(parameters, ensure_ascii=False), loop_count, audio_from)
        stem = f"{safe_name(str(parameters.get('model', 'output')))}-{parameters.get('seed', 0)}"
        if prefix:
            stem = f"{safe_name(prefix)}-{stem}"
        return self._save_bytes(data, kind, stem, suffix, parameters)

    def write_partial_video(self, frames, fps: float, stem: str) -> Path:
        """The video so far of a job still running, as an MP4 at `partial/<stem>-partial.mp4`, replaced whole each time
        (written beside it, then renamed over it), so a player never reads half a file. Not a result: it has no sidecar,
        is never listed, and the job removes it when it ends."""
        folder = self.root / PARTIAL_FOLDER
        path = folder / f"{safe_name(stem)}-partial.mp4"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_replacing(path, encode_video(frames, fps, ".mp4", json.dumps({"partial": True, "frames": len(frames)})))
        except OSError as error:
            raise OutputNotWritable(f"Cannot write to the outputs folder {folder}: {error.strerror or error}") from error
        return path

    def keep_input(self, path: str | Path | None) -> dict | None:
        """An input file as a result records it: its name, full SHA-256 and `kept`, the copy of it under the outputs
        folder (`inputs/<2 hex digits>/<sha256><suffix>`, one per content), so the result can be made again, and its
        settings reused, after the upload it came from is gone. None for no file."""
        if not path:
            return None
        record = input_file_record(path)
        kept = self._kept_path(record["sha256"], Path(path).suffix)
        if not kept.is_file():
            temporary = kept.with_name(f".{uuid.uuid4().hex}.tmp")
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, temporary)
                os.replace(temporary, kept)
            except OSError as error:
                raise OutputNotWritable(f"Cannot write to the outputs folder {kept.parent}: {error.strerror or error}") from error
            finally:
                temporary.unlink(missing_ok=True)
        return {**record, "kept": kept.relative_to(self.root).as_posix()}

    def kept_input(self, record) -> Path | None:
        """The copy `keep_input` made of the input `record` names (found by its SHA-256, whatever else the record
        says), or None where there is none: a result made elsewhere, or before inputs were kept."""
        if not isinstance(record, dict) or not _SHA256.fullmatch(str(record.get("sha256", ""))):
            return None
        path = self._kept_path(record["sha256"], Path(str(record.get("kept") or record.get("file") or "")).suffix)
        return path if path.is_file() else None

    def _kept_path(self, sha256: str, suffix: str) -> Path:
        suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
        return self.root / INPUTS_FOLDER / sha256[:2] / f"{sha256}{suffix.lower()}"

    def list_outputs(self, kind: str | None = None, model: str | None = None, limit: int = 200) -> list[SavedOutput]:
        """Saved results, newest first, optionally of one kind (folder) and one model; at most `limit`. An entry that
        cannot be read, or leads out of the outputs folder (a link), is skipped with a log line: one bad file never
        hides the others."""
        found: list[SavedOutput] = []
        for sidecar in self._sidecars_newest_first(kind):
            output = self._listed(sidecar, model)
            if output is not None:
                found.append(output)
                if len(found) >= limit:
                    break
        return found

    def _sidecars_newest_first(self, kind: str | None) -> list[Path]:
        kinds = [self.root / safe_name(kind)] if kind else sorted(
            p for p in self.root.glob("*") if p.is_dir() and p.name not in (USERS_FOLDER, INPUTS_FOLDER, PARTIAL_FOLDER)
        )
        keyed = []
        for sidecar in (sidecar for folder in kinds for sidecar in folder.glob("*/[0-9]*.json")):
            if not self._inside(sidecar):
                log.warning("not listing %s: it leads out of the outputs folder", sidecar)
                continue
            try:
                # Day folders and numbered names sort by age; the modification time breaks ties across kinds.
                keyed.append(((sidecar.parent.name, sidecar.stat().st_mtime, sidecar.name), sidecar))
            except OSError as error:
                log.warning("not listing %s: %s", sidecar, error.strerror or error)
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        return [sidecar for _, sidecar in keyed]

    def _listed(self, sidecar: Path, model: str | None) -> SavedOutput | None:
        try:
            record = _parsed_json(sidecar.read_text(), sidecar)
        except (OSError, ValueError) as error:
            log.warning("not listing %s: %s", sidecar, error)
            return None
        if not isinstance(record, dict) or (model and record.get("model") != model):
            return None
        path = sidecar.with_name(safe_file_name(record.get("file")))
        if not path.is_file():
            return None
        if not self._inside(path):
            log.warning("not listing %s: it leads out of the outputs folder", path)
            return None
        return SavedOutput(path, sidecar, {"kind": sidecar.parent.parent.name, **record})

    def _inside(self, path: Path) -> bool:
        """Whether `path`, its links followed, is under the outputs folder (the only folder the server serves)."""
        try:
            return path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # RuntimeError: a loop of links (Python before 3.13)
            return False

    def _save_bytes(self, data: bytes, kind: str, stem: str, suffix: str, parameters: dict) -> SavedOutput:
        folder = self.root / safe_name(kind) / dt.date.today().isoformat()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{uuid.uuid4().hex}.tmp"
            try:
                _write_synced(temporary, data)
                self._reached("written", temporary)
                path = _link_under_free_name(temporary, folder, stem, suffix)
                self._reached("linked", path)
            finally:
                temporary.unlink(missing_ok=True)
            sidecar = path.with_suffix(".json")
            record = {**parameters, "file": path.name}
            try:
                _write_replacing(sidecar, json.dumps(record, indent=2, ensure_ascii=False).encode())
            except OSError:
                path.unlink(missing_ok=True)
                raise
        except OSError as error:
            raise OutputNotWritable(f"Cannot write to the outputs folder {folder}: {error.strerror or error}") from error
        return SavedOutput(path, sidecar, record)

    def _reached(self, stage: str, path: Path) -> None:
        if self.stage_hook is not None:
            self.stage_hook(stage, path)

    def tidy(self) -> Tidied:
        """Clear what a process killed while saving left, as the app does at start: temporary files (never under
        a result's name), the partial videos of jobs that were running, and results whose sidecar was never
        written, which get it back from the parameters embedded in the file. Meant for a start, when no other
        process writes here (one app per outputs folder)."""
        if not self.root.is_dir():
            return Tidied(0, 0, 0)
        # `**` does not descend into linked folders, so nothing outside the outputs folder is removed.
        temporary = [path for path in self.root.glob("**/.*.tmp") if _TEMPORARY.fullmatch(path.name)]
        stores = [self, *self._user_stores()]
        return Tidied(
            temporary_files=sum(map(_removed, temporary)),
            sidecars_rewritten=sum(map(self._rewrite_sidecar, [path for store in stores for path in store._results_without_sidecar()])),
            partial_videos=sum(map(_removed, [path for store in stores for path in store._partial_videos()])),
        )

    def _user_stores(self) -> list["OutputStore"]:
        users = self.root / USERS_FOLDER
        folders = sorted(folder for folder in users.glob("*") if folder.is_dir()) if self._inside(users) else []
        return [OutputStore(folder, self.stage_hook) for folder in folders if self._inside(folder)]

    def _partial_videos(self) -> list[Path]:
        folder = self.root / PARTIAL_FOLDER
        return list(folder.glob("*.mp4")) if self._inside(folder) else []

    def _results_without_sidecar(self) -> list[Path]:
        skipped = (INPUTS_FOLDER, PARTIAL_FOLDER, USERS_FOLDER)
        return [
            path for path in self.root.glob("*/*/*")
            if path.parts[-3] not in skipped and _RESULT.fullmatch(path.name) and path.suffix.lower() in EMBEDDED_READERS
            and not path.with_suffix(".json").exists() and path.is_file() and self._inside(path)
        ]

    def _rewrite_sidecar(self, path: Path) -> bool:
        try:
            parameters = _as_parameters(_parsed_json(EMBEDDED_READERS[path.suffix.lower()](path) or "null", path), path)
            record = {**parameters, "file": path.name}
            _write_replacing(path.with_suffix(".json"), json.dumps(record, indent=2, ensure_ascii=False).encode())
        except (OSError, ValueError) as error:
            log.warning("%s has no sidecar and its parameters cannot be read back (%s); it stays unlisted", path, error)
            return False
        log.info("%s had no sidecar (the app stopped while saving it); rewrote it from the parameters in the file", path.name)
        return True


def _removed(path: Path) -> bool:
    try:
        path.unlink()
    except OSError as error:
        log.warning("cannot remove %s, left by an earlier run: %s", path, error.strerror or error)
        return False
    return True


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_replacing(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{uuid.uuid4().hex}.tmp")
    try:
        _write_synced(temporary, data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    return max(numbers, default=0) + 1


def _link_under_free_name(temporary: Path, folder: Path, stem: str, suffix: str) -> Path:
    number = _next_number(folder)
    while True:
        path = folder / f"{number:05d}-{stem}{suffix}"
        try:
            os.link(temporary, path)  # fails if the name is taken: never overwrites, even under a race
            return path
        except FileExistsError:
            number += 1


def a1111_text(parameters: dict) -> str:
    """The 'parameters' text other tools (A1111, Forge, Civitai) read from a PNG."""
    lines = [str(parameters.get("prompt", ""))]
    if parameters.get("negative_prompt"):
        lines.append(f"Negative prompt: {parameters['negative_prompt']}")
    fields = {
        "Steps": parameters.get("steps"),
        "Sampler": parameters.get("scheduler"),
        "CFG scale": parameters.get("guidance"),
        "Seed": parameters.get("seed"),
        "Size": f"{parameters.get('width')}x{parameters.get('height')}",
        "Model": parameters.get("model"),
        "Version": f"Atelier {__version__}",
    }
    lines.append(", ".join(f"{key}: {value}" for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def read_parameters(path: Path) -> dict:
    """The parameters a result was made with: from its sidecar, else from what the file itself carries
    (a PNG text chunk, or the `comment` tag of a WAV or a video). ValueError naming the file by its name alone when
    there are none or it cannot be read: a dropped file's full path is a folder of Gradio's, meaningless to a person."""
    path = Path(path)
    try:
        return _read_parameters(path)
    except OSError as error:
        log.info("cannot read parameters from %s: %s", path, error)
        reason = error.strerror or "not a file this app can read, or damaged"
        raise ValueError(f"{path.name} cannot be read ({reason})") from None


def _read_parameters(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _as_parameters(_parsed_json(path.read_text(), path), path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return _as_parameters(_parsed_json(sidecar.read_text(), sidecar), sidecar)
    reader = EMBEDDED_READERS.get(suffix)
    if reader is None:
        raise ValueError(f"{path.name}: Atelier reads settings from {', '.join(['.json', *EMBEDDED_READERS])} files")
    text = reader(path)
    if not text:
        raise ValueError(f"{path.name} carries no Atelier parameters")
    return _as_parameters(_parsed_json(text, path), path)


def _parsed_json(text: str, path: Path):
    """JSON text as data; a ValueError naming the file for text too deeply nested to parse (the parser recurses,
    so a hand-made file of thousands of nested brackets would otherwise end in a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{path.name} is nested too deeply to hold a set of parameters") from None


def _as_parameters(data, path: Path) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} does not hold a set of parameters")
    return data


def _png_text(path: Path) -> str | None:
    with Image.open(path) as image:
        return image.text.get(PARAMETERS_KEY) if hasattr(image, "text") else None


EMBEDDED_READERS = {
    ".png": _png_text,
    ".wav": read_comment,
    ".flac": read_comment,
    ".mp3": read_comment,
    ".mp4": read_comment,
    ".webm": read_comment,
    ".gif": read_embedded_text,
    ".webp": read_embedded_text,
}
