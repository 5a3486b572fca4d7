"""The LoRA library: the `.safetensors` files in one folder, each offered for the model family its key names
belong to, and the adapters a loaded pipeline keeps between jobs.

Files load through the pipeline's own `load_lora_weights`, so every layout diffusers converts (diffusers/peft,
kohya `lora_unet_…`, BFL/ComfyUI `diffusion_model.…`) works without converters of ours. A loaded adapter is
named after its file's digest: a file changed on disk gets a new name, so it is loaded afresh and the adapter of
its old content is dropped.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from pipelines.catalog import LORA_KEY_MARKERS, Family, ModelSpec
from pipelines.errors import InvalidRequest
from pipelines.media import file_digest

log = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
MAX_LORAS_PER_JOB = 8
# The LoRA list as text (names and weights); MAX_LORAS_PER_JOB entries fit many times over.
MAX_LORA_LIST_CHARS = 2_000
# Weights beyond this only burn the image; negative weights (to subtract a style) are allowed.
MAX_LORA_WEIGHT = 4.0
# Adapters kept on a loaded pipeline; the least recently used beyond this are deleted (each holds its weights).
MAX_KEPT_ADAPTERS = 8


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA as a request names it: its file name in the library and its weight."""

    name: str
    weight: float = 1.0

    def as_text(self) -> str:
        return f"{self.name}:{self.weight:g}"


@dataclass(frozen=True)
class LoraFile:
    name: str  # the path inside the library, as people see and name it
    path: Path
    family: Family | None  # None: its key names match no family this app has


@dataclass(frozen=True)
class ActiveLora:
    """A LoRA resolved for one job: its file, weight and content digest."""

    file: LoraFile
    weight: float
    sha256: str

    def record(self) -> dict:
        return {"file": self.file.name, "weight": self.weight, "sha256": self.sha256}


def parse_lora_list(value: str | Iterable[str | LoraChoice] | None) -> tuple[LoraChoice, ...]:
    """`"a.safetensors:0.8, b.safetensors"` (commas or new lines; a missing weight is 1), or a list of such
    entries or of LoraChoices, as LoraChoices; InvalidRequest names the entry that is wrong."""
    if not value:
        return ()
    if isinstance(value, str) and len(value) > MAX_LORA_LIST_CHARS:
        raise InvalidRequest("loras", f"has {len(value)} characters; at most {MAX_LORA_LIST_CHARS} are accepted")
    entries = value.replace("\n", ",").split(",") if isinstance(value, str) else list(value)
    if len(entries) > MAX_LORA_LIST_CHARS // 10:
        raise InvalidRequest("loras", f"{len(entries)} entries given; at most {MAX_LORAS_PER_JOB} LoRAs at once")
    choices: list[LoraChoice] = []
    for entry in entries:
        choice = entry if isinstance(entry, LoraChoice) else _parse_entry(str(entry).strip())
        if choice is None:
            continue
        if not math.isfinite(choice.weight) or abs(choice.weight) > MAX_LORA_WEIGHT:
            raise InvalidRequest("loras", f"{choice.as_text()}: the weight must be from -{MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g}")
        if any(known.name == choice.name for known in choices):
            raise InvalidRequest("loras", f"{choice.name} is listed twice; give each LoRA once with one weight")
        choices.append(choice)
    if len(choices) > MAX_LORAS_PER_JOB:
        raise InvalidRequest("loras", f"{len(choices)} LoRAs given; at most {MAX_LORAS_PER_JOB} at once")
    return tuple(choices)


def _parse_entry(entry: str) -> LoraChoice | None:
    if not entry:
        return None
    name, separator, weight_text = entry.rpartition(":")
    if not separator:
        return LoraChoice(entry)
    try:
        return LoraChoice(name.strip(), float(weight_text))
    except ValueError:
        raise InvalidRequest("loras", f"{entry!r}: write it as name:weight, e.g. style.safetensors:0.8") from None


def family_of_keys(keys: Iterable[str]) -> Family | None:
    """The family of the first marker in `LORA_KEY_MARKERS` that occurs in `keys`, or None."""
    keys = list(keys)
    for marker, family in LORA_KEY_MARKERS:
        if any(marker in key for key in keys):
            return family
    return None


@functools.lru_cache(maxsize=1024)
def _family_of_file(path: Path, size_bytes: int, mtime_ns: int) -> Family | None:
    """Read from the file's header only: scanning a folder of multi-gigabyte LoRAs stays instant."""
    try:
        with safe_open(path, framework="pt") as weights:
            return family_of_keys(weights.keys())
    except (OSError, SafetensorError) as error:
        log.warning("ignoring %s: not a readable safetensors file (%s)", path, error)
        return None


class LoraLibrary:
    """The LoRA files under one folder (subfolders included), read afresh at every scan."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder).resolve() if folder else None

    def scan(self) -> list[LoraFile]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return [self._file(path) for path in sorted(self.folder.rglob(f"*{LORA_SUFFIX}")) if path.is_file()]

    def for_family(self, family: Family) -> list[LoraFile]:
        return [lora for lora in self.scan() if lora.family is family]

    def resolve(self, choices: Sequence[LoraChoice], spec: ModelSpec) -> list[ActiveLora]:
        """The chosen files, checked to exist and to be for `spec`'s family; InvalidRequest names the one that is not."""
        active = []
        for choice in choices:
            lora = self._find(choice.name)
            if lora.family is not spec.family:
                made_for = f"made for {lora.family.value.upper()}" if lora.family else "not made for any model family this app has"
                raise InvalidRequest("loras", f"{lora.name} is {made_for}; {spec.name} takes {spec.family.value.upper()} LoRAs")
            digest = file_digest(lora.path)
            twin = next((known.file.name for known in active if known.sha256 == digest), None)
            if twin is not None:  # one adapter per content: a copy under another name would be applied twice
                raise InvalidRequest("loras", f"{lora.name} is the same file as {twin}; give it once")
            active.append(ActiveLora(lora, choice.weight, digest))
        return active

    def _find(self, name: str) -> LoraFile:
        if self.folder is None:
            raise InvalidRequest("loras", f"{name}: this app has no LoRA folder")
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder) or path.suffix != LORA_SUFFIX or not path.is_file():
            known = ", ".join(lora.name for lora in self.scan()) or "none"
            raise InvalidRequest(
                "loras", f"no LoRA called {name!r} in {self.folder} (found: {known}); add .safetensors files there and press Refresh"
            )
        return self._file(path)

    def _file(self, path: Path) -> LoraFile:
        stat = path.stat()
        return LoraFile(path.relative_to(self.folder).as_posix(), path, _family_of_file(path, stat.st_size, stat.st_mtime_ns))


class AdapterCache:
    """The LoRA adapters kept on one loaded pipeline between jobs, since loading a real LoRA takes seconds.

    `activate` makes exactly the chosen adapters active, with their weights; with none chosen the LoRA layers
    are disabled, which gives the base model's output bit for bit. When the denoiser is streamed by the memory
    engine, `device` is where the (small) adapter weights live for good: the engine moves only the base weights.
    """

    def __init__(self, pipe, model_name: str, device: torch.device | None = None):
        self._pipe = pipe
        self._model_name = model_name
        self._device = device
        self._kept: dict[str, Path] = {}  # adapter name -> its file; least recently used first

    def activate(self, chosen: Sequence[ActiveLora]) -> None:
        names = [self._adapter_name(lora) for lora in chosen]
        for lora, name in zip(chosen, names):
            if name not in self._kept:
                self._load(lora, name)
            self._kept[name] = self._kept.pop(name)
        if names:
            self._pipe.enable_lora()
            self._pipe.set_adapters(names, [lora.weight for lora in chosen])
        elif self._kept:
            self._pipe.disable_lora()
        for name in list(self._kept)[: max(0, len(self._kept) - MAX_KEPT_ADAPTERS)]:
            if name not in names:
                self._delete(name)

    @staticmethod
    def _adapter_name(lora: ActiveLora) -> str:
        return f"lora_{lora.sha256}"

    def _load(self, lora: ActiveLora, name: str) -> None:
        for stale, path in list(self._kept.items()):
            if path == lora.file.path:  # the same file with other content: changed on disk
                self._delete(stale)
        started = time.monotonic()
        self._check_keys(lora)
        try:
            with _offload_hooks_hidden(self._pipe):
                self._pipe.load_lora_weights(str(lora.file.path), adapter_name=name)
        except Exception as error:  # peft and diffusers raise many types for a file that does not fit
            self._delete(name)
            raise InvalidRequest("loras", f"{lora.file.name} does not fit {self._model_name}: {_short(error)}") from None
        if self._device is not None:
            for module_name, module in self._pipe.transformer.named_modules():
                if module_name.rpartition(".")[2] == name:
                    module.to(self._device)
        self._kept[name] = lora.file.path
        log.info("loaded LoRA %s (%s) in %.2f s", lora.file.name, lora.sha256, time.monotonic() - started)

    def _check_keys(self, lora: ActiveLora) -> None:
        """diffusers only warns about LoRA keys that name no layer of the model, and the result silently lacks
        them; refuse such a file instead, naming it and a layer it wanted."""
        state_dict = self._pipe.lora_state_dict(str(lora.file.path))
        keys = state_dict[0] if isinstance(state_dict, tuple) else state_dict
        targets = {key.split(".lora_")[0] for key in keys if ".lora_" in key}
        modules: dict[str, set[str]] = {}
        unmatched = []
        for target in sorted(targets):
            component, _, layer = target.partition(".")
            if component not in modules:
                model = getattr(self._pipe, component, None)
                modules[component] = {n for n, _ in model.named_modules()} if isinstance(model, torch.nn.Module) else set()
            if layer not in modules[component]:
                unmatched.append(target)
        if unmatched or not targets:
            wanted = f"it has layers the model lacks, e.g. {unmatched[0]}" if unmatched else "it holds no LoRA layers"
            raise InvalidRequest("loras", f"{lora.file.name} does not fit {self._model_name}: {wanted}")

    def _delete(self, name: str) -> None:
        self._kept.pop(name, None)
        loaded = {adapter for adapters in self._pipe.get_list_adapters().values() for adapter in adapters}
        if name in loaded:
            self._pipe.delete_adapters([name])


@contextmanager
def _offload_hooks_hidden(pipe) -> Iterator[None]:
    """diffusers' `load_lora_weights`, when it finds accelerate's offload hooks on a component (the preset's
    placement puts them there), removes every hook and calls `enable_model_cpu_offload()`: that would replace the
    placement (and fails without a GPU). Loading adapters adds no component, so the hooks can stay as they are;
    they are only hidden from that check for the call."""
    hidden = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module) and "_hf_hook" in vars(component):
            hidden[name] = vars(component).pop("_hf_hook")
    try:
        yield
    finally:
        for name, hook in hidden.items():
            vars(pipe.components[name])["_hf_hook"] = hook


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 300 else text[:300] + "…"
