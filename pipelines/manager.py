"""The model manager: the one long-lived object with state.

Policy:
- At most one pipeline is loaded. `use(model_id)` returns it, loading it first or swapping out the
  previous one, whose GPU memory and host RAM are released before the new one loads.
- Every job runs inside `use(...)`, under one lock, so two jobs never share the GPU.
- Components are placed by the active preset (see `placement.py`); changing the preset unloads.
- A failed load releases whatever was loaded and raises `ModelLoadFailed`; nothing stays half-loaded.
- Out of memory inside a job releases the model and raises `NotEnoughMemory`; the next job starts clean.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import diffusers
import torch

from pipelines.catalog import ModelSpec, family_spec, model_spec
from pipelines.errors import InvalidRequest, ModelLoadFailed, NotEnoughMemory
from pipelines.hardware import MemoryReading, read_memory, release_freed_memory
from pipelines.jobs import ProgressCallback
from pipelines.model_store import ModelFiles, ModelStore
from pipelines.placement import AppliedPlacement, PlacementPlan, apply_placement, measure_component, plan_placement
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3


@dataclass
class _Loaded:
    spec: ModelSpec
    pipe: object
    placement: AppliedPlacement
    load_seconds: float


@dataclass(frozen=True)
class ManagerStatus:
    preset: Preset
    device: str
    model_id: str | None
    model_name: str | None
    demo: bool
    plan: PlacementPlan | None
    load_seconds: float | None
    memory: MemoryReading


class ModelManager:
    def __init__(self, store: ModelStore, preset: Preset):
        self.store = store
        self._preset = preset
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None

    @property
    def preset(self) -> Preset:
        return self._preset

    def execution_device(self) -> str:
        if self._preset.device == "cuda" and torch.cuda.is_available():
            return "cuda"
        return "cpu"

    def compute_dtype(self) -> str:
        device = self.execution_device()
        if device == "cpu":
            return "float32"
        if self._preset.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            return "float16"
        return self._preset.dtype

    @contextmanager
    def use(self, model_id: str, on_progress: ProgressCallback | None = None) -> Iterator[object]:
        """Hold the GPU for one job with `model_id` loaded and placed; yields the pipeline.
        `on_progress` hears about a download, if one is needed."""
        with self._lock:
            loaded = self._ensure_loaded(model_id, on_progress)
            try:
                yield loaded.pipe
                return
            except torch.OutOfMemoryError as error:
                message = (
                    f"Out of memory running {loaded.spec.name} on the {self._preset.label} preset (weights planned on "
                    f"the device: {loaded.placement.plan.predicted_peak_vram_bytes / GIB:.1f} GiB). The model was "
                    "unloaded; try a smaller size or batch, or a preset for less VRAM."
                )
                _drop_frames(error)
            finally:
                loaded.placement.after_job()
            del loaded
            self._release()
            raise NotEnoughMemory(message)

    def unload(self) -> None:
        with self._lock:
            self._release()

    def set_preset(self, preset: Preset) -> None:
        with self._lock:
            if preset.id != self._preset.id:
                self._release()
                self._preset = preset
                log.info("preset is now %s", preset.id)

    def status(self) -> ManagerStatus:
        # Read without the job lock so status stays live while a job runs.
        loaded = self._loaded
        return ManagerStatus(
            preset=self._preset,
            device=self.execution_device(),
            model_id=loaded.spec.id if loaded else None,
            model_name=loaded.spec.name if loaded else None,
            demo=loaded.spec.demo if loaded else False,
            plan=loaded.placement.plan if loaded else None,
            load_seconds=loaded.load_seconds if loaded else None,
            memory=read_memory(),
        )

    # -- loading ----------------------------------------------------------------------------------

    def _ensure_loaded(self, model_id: str, on_progress: ProgressCallback | None) -> _Loaded:
        try:
            spec = model_spec(model_id)
        except KeyError:
            raise InvalidRequest("model", f"unknown model {model_id!r}") from None
        if self._loaded is not None and self._loaded.spec.id == spec.id:
            return self._loaded
        self._release()
        files = self.store.ensure(spec, on_progress)
        started = time.monotonic()
        try:
            pipe, applied = self._load(spec, files)
        except Exception as error:  # any failure while loading must leave nothing behind
            log.exception("loading %s from %s failed", spec.id, files.folder)
            message = f"{spec.name} could not be loaded from {files.folder}: {_short(error)}"
            _drop_frames(error)
            release_freed_memory()
            raise ModelLoadFailed(message) from None
        self._loaded = _Loaded(spec, pipe, applied, time.monotonic() - started)
        memory = read_memory()
        log.info(
            "loaded %s in %.1f s (%s); free VRAM %.1f GiB, process RSS %.1f GiB",
            spec.id, self._loaded.load_seconds, applied.plan.describe(),
            memory.vram_free_bytes / GIB, memory.process_rss_bytes / GIB,
        )
        return self._loaded

    def _load(self, spec: ModelSpec, files: ModelFiles) -> tuple[object, AppliedPlacement]:
        dtype_name = self.compute_dtype()
        dtype = getattr(torch, dtype_name)
        pipeline_class = getattr(diffusers, spec.pipeline_class)
        pipe = pipeline_class.from_pretrained(files.folder, dtype=dtype)
        # Runners report steps themselves; the pipeline's own bar would show every step twice.
        pipe.set_progress_bar_config(disable=True)
        if files.lora_file is not None:
            # Fused once at load, then the adapter is dropped: the fast preset costs nothing per step.
            pipe.load_lora_weights(files.lora_file.parent, weight_name=files.lora_file.name)
            pipe.fuse_lora(lora_scale=spec.lora.scale)
            pipe.unload_lora_weights()
        family = family_spec(spec.family)
        modules = {name: getattr(pipe, name) for name in family.component_roles if getattr(pipe, name, None) is not None}
        sizes = {name: measure_component(module, dtype) for name, module in modules.items()}
        plan = plan_placement(family, sizes, self._preset, self.execution_device(), dtype_name)
        order = [name for name in pipe.model_cpu_offload_seq.split("->") if name in modules]
        return pipe, apply_placement(pipe, plan, order)

    def _release(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        model_id = loaded.spec.id
        del loaded
        started = time.monotonic()
        release_freed_memory()
        memory = read_memory()
        log.info(
            "unloaded %s in %.2f s; free VRAM %.1f GiB, process RSS %.1f GiB",
            model_id, time.monotonic() - started, memory.vram_free_bytes / GIB, memory.process_rss_bytes / GIB,
        )


def _drop_frames(error: BaseException) -> None:
    """A traceback keeps every frame's locals, the half-built pipeline among them; clear them so it can be freed."""
    traceback.clear_frames(error.__traceback__)
    error.__traceback__ = None


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 400 else text[:400] + "…"
