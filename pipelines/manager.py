"""The model manager: the one long-lived object with state. It holds what is resident; how a pipeline is read
from disk is `loaders.py`, where its weights live from job to job is `residency.py`.

Policy:
- At most one pipeline is loaded. `use(model_id)` returns it, loading it first or swapping out the
  previous one, whose GPU memory and host RAM are released before the new one loads.
- Every job runs inside `use(...)`, under one lock, so two jobs never share the GPU.
- Before anything is released or read, a model is refused when a package it needs is missing, when no reader
  knows how it is stored, when no RAM plan fits the machine's RAM (`memory/job_plan.py`, the plan `/plan` shows:
  the message names its numbers), or (after the release) when the weights it holds in RAM cannot fit in free RAM. The
  plan also says whether the host arena can be pinned (where pinning would not fit, the arena is pageable), how each
  component is stored and which text encoders are read from disk as used: the reader gets those (`ReadSettings.stored`,
  `ReadSettings.on_disk`).
- Components are placed by the active preset (see `placement.py`); changing the preset unloads.
- On GPU presets a transformer read as shipped from folders is placed by the memory engine (`memory/`): its
  weights are read once into a pinned host arena that is reused across models, and before each job the
  planner decides how many of its blocks stay resident for that job's size. A job that cannot fit is refused
  before it starts, with the memory it needs and the memory the preset allows. Quantized or file-read
  denoisers are placed whole, like the other components.
- The pinned arena outlives a model when the next one needs at least half of it (re-pinning costs seconds).
- Our own models (Fish Speech) are small enough to stay resident on every preset, with their weights as shipped.
- A failed load releases whatever was loaded and raises `ModelLoadFailed`; nothing stays half-loaded.
- LoRAs chosen for a job are loaded as adapters on the loaded pipeline and kept there for later jobs
  (`lora_library.AdapterCache`); a job without them runs with every adapter disabled.
- Weights are stored as the preset says (`weights`: as shipped, fp8, int8, NF4) unless a job asks otherwise; a
  different dtype or format reloads the model.
- Out of memory inside a job (placement included; cuBLAS's allocation failures, which arrive as a plain
  RuntimeError, count too): device memory is freed, the plan steps down one notch (fewer resident blocks, one ring
  slot, tiled VAE) and `RetryAfterOutOfMemory` tells the runner to run the step again. A second one in a row, or one
  where no leaner plan exists, unloads the model and raises `NotEnoughMemory`. A job that succeeds resets the
  count (the leaner plan stays). The next job starts clean.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import psutil
import torch

from pipelines.catalog import ModelSpec, family_spec
from pipelines.catalog.controls import attached_bytes, attached_names
from pipelines.errors import InvalidRequest, ModelLoadFailed, NotEnoughMemory, RetryAfterOutOfMemory
from pipelines.hardware import MemoryReading, compute_dtype_for, free_vram_bytes, read_memory, release_freed_memory
from pipelines.jobs import ProgressCallback
from pipelines.loading.loaders import NO_ATTACHMENTS, Attachments, Reader, ReadSettings, Storage, bytes_to_read, check_readable, denoiser_bytes, reader_for, storage_of
from pipelines.lora_library import ActiveLora, AdapterCache
from pipelines.memory.host_arena import HostArena
from pipelines.memory.job_plan import JobPlan, plan_job, read_choices
from pipelines.memory.planner import BlockPlan, Workload
from pipelines.loading.model_store import ModelFiles, ModelStore
from pipelines.placement import PlacementPlan
from pipelines.residency import Residency, place
from pipelines.loading.weight_formats import WeightFormat, weight_format
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3


@dataclass
class _Loaded:
    spec: ModelSpec
    pipe: object
    residency: Residency
    dtype_name: str
    weights: WeightFormat
    adapters: AdapterCache | None
    load_seconds: float = 0.0
    attachments: Attachments = NO_ATTACHMENTS
    # Set by a step down after an out-of-memory; cleared when a job succeeds.
    stepped_down: bool = False


@dataclass(frozen=True)
class ManagerStatus:
    preset: Preset
    device: str
    model_id: str | None
    model_name: str | None
    demo: bool
    plan: PlacementPlan | None
    block_plan: BlockPlan | None
    load_seconds: float | None
    memory: MemoryReading



# What the memory engine streams: how the denoiser is stored on disk, and the weight formats it stores itself.
ENGINE_STORAGES = (Storage.FOLDER, Storage.ASSEMBLED, Storage.DENOISER_FILE)
ENGINE_FORMATS = (WeightFormat.SHIPPED, WeightFormat.INT8, WeightFormat.FP8)


class ModelManager:
    def __init__(self, store: ModelStore, preset: Preset, ram_bytes: int | None = None):
        self.store = store
        self._preset = preset
        # The machine's RAM the plans are made for (`--ram-gb` overrides what was detected).
        self.ram_bytes = ram_bytes or psutil.virtual_memory().total
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None
        self._arena: HostArena | None = None
        self._pin_arena = True

    @property
    def preset(self) -> Preset:
        return self._preset

    def execution_device(self) -> str:
        if self._preset.device == "cuda" and torch.cuda.is_available():
            return "cuda"
        return "cpu"

    def compute_capability(self) -> tuple[int, int] | None:
        return torch.cuda.get_device_capability() if self.execution_device() == "cuda" else None

    def compute_dtype(self) -> str:
        return compute_dtype_for(self._preset.dtype, self.execution_device(), self.compute_capability())

    @contextmanager
    def use(
        self, model_id: str, workload: Workload | None = None, on_progress: ProgressCallback | None = None,
        dtype: str | None = None, weights: str | None = None, loras: Sequence[ActiveLora] = (),
        attachments: Attachments = NO_ATTACHMENTS,
    ) -> Iterator[object]:
        """Hold the GPU for one job with `model_id` loaded and placed for `workload`; yields the pipeline.
        `on_progress` hears about a download, if one is needed. `dtype` and `weights` ask for a precision or a weight
        format other than the preset's (the model is reloaded when it was loaded otherwise). `loras` are active,
        with their weights, for this job only. `attachments` (ControlNets, an IP-Adapter) are read with the model and
        placed like its components; other attachments than the loaded model's reload it."""
        chosen = weight_format(weights or self._preset.weights, self.execution_device(), self.compute_capability())
        with self._lock:
            loaded = self._ensure_loaded(model_id, on_progress, dtype or self.compute_dtype(), chosen, attachments)
            if loras and loaded.adapters is None:
                raise InvalidRequest("loras", f"{loaded.spec.name} does not take LoRAs")
            try:
                loaded.residency.admit(workload)
                if loaded.adapters is not None:
                    loaded.adapters.activate(loras)
                yield loaded.pipe
                loaded.stepped_down = False
                return
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                _drop_frames(error)
                retry, why = self._step_down(loaded)
            finally:
                loaded.residency.after_job()
            if retry is not None:
                raise retry
            message = (
                f"Out of memory running {loaded.spec.name} on the {self._preset.label} preset, {why}. The model was "
                "unloaded; try a smaller size or batch, or a preset for less VRAM."
            )
            del loaded
            self._release()
            raise NotEnoughMemory(message)

    def _step_down(self, loaded: _Loaded) -> tuple[RetryAfterOutOfMemory | None, str]:
        """One notch leaner after an out-of-memory; None (and why) when this job stepped down already or nothing
        leaner exists."""
        release_freed_memory()
        if loaded.stepped_down:
            return None, "also after stepping the plan down"
        if not loaded.residency.step_down():
            return None, "and no leaner plan exists (every block streams through one slot, the VAE tiles)"
        loaded.stepped_down = True
        return RetryAfterOutOfMemory(f"Out of memory with {loaded.spec.name}; retrying with a leaner plan."), ""

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
            plan=loaded.residency.plan if loaded else None,
            block_plan=loaded.residency.block_plan if loaded else None,
            load_seconds=loaded.load_seconds if loaded else None,
            memory=read_memory(),
        )

    # -- loading ----------------------------------------------------------------------------------

    def _ensure_loaded(
        self, model_id: str, on_progress: ProgressCallback | None, dtype_name: str, weights: WeightFormat,
        attachments: Attachments = NO_ATTACHMENTS,
    ) -> _Loaded:
        spec = self._spec(model_id)
        # No local name for the loaded model here: it would keep the model alive through the release below.
        wanted = (spec, dtype_name, weights, attachments)
        if self._loaded is not None and (self._loaded.spec, self._loaded.dtype_name, self._loaded.weights, self._loaded.attachments) == wanted:
            return self._loaded
        check_readable(spec, weights)
        files = self.store.ensure(spec, on_progress)
        attached = {source.id: self.store.ensure_attached(spec, source, on_progress) for source in attachments.sources()}
        extra = attached_bytes(attachments.controlnets, attachments.ip_adapter)
        plan = plan_job(spec, self._preset, self.ram_bytes, weights=weights.value, bytes_on_disk=bytes_to_read(spec, files), attached_bytes=extra)
        with_attached = f" with {' and '.join(attached_names(attachments.controlnets, attachments.ip_adapter))}" if extra else ""
        if not plan.ram_fits:
            raise NotEnoughMemory(
                f"{spec.name}{with_attached} does not fit this machine's RAM on the {self._preset.label} preset: it {plan.ram_reason}. "
                "Choose a smaller model" + (", or fewer attached models" if extra else "") + ", or start with --ram-gb if the RAM was misread."
            )
        self._pin_arena = plan.pinned
        storage = storage_of(spec, files)
        reader = reader_for(spec, storage)
        self._release(next_denoiser_bytes=denoiser_bytes(spec, files))
        _check_ram(spec, files, read_choices(plan)[1], sum(extra.values()), with_attached)
        started = time.monotonic()
        try:
            loaded = self._read_and_place(spec, files, storage, reader, dtype_name, weights, plan, attachments, attached)
        except NotEnoughMemory:
            release_freed_memory()
            raise
        except Exception as error:  # any failure while loading must leave nothing behind
            log.exception("loading %s from %s failed", spec.id, files.folder)
            message = f"{spec.name} could not be loaded from {files.folder}: {_short(error)}"
            _drop_frames(error)
            release_freed_memory()
            raise ModelLoadFailed(message) from None
        loaded.load_seconds = time.monotonic() - started
        self._loaded = loaded
        memory = read_memory()
        log.info(
            "loaded %s (%s) in %.1f s (%s); free VRAM %.1f GiB, process RSS %.1f GiB",
            spec.id, storage.value, loaded.load_seconds, loaded.residency.plan.describe(),
            memory.vram_free_bytes / GIB, memory.process_rss_bytes / GIB,
        )
        return self._loaded

    def _spec(self, model_id: str) -> ModelSpec:
        catalog = self.store.catalog
        if catalog.get(model_id) is None:
            # A checkpoint file put in the models folder since the last scan.
            self.store.scan_files()
        try:
            return catalog.spec(model_id)
        except KeyError:
            raise InvalidRequest("model", f"unknown model {model_id!r}") from None

    def _read_and_place(
        self, spec: ModelSpec, files: ModelFiles, storage: Storage, reader: Reader, dtype_name: str, weights: WeightFormat,
        plan: JobPlan, attachments: Attachments = NO_ATTACHMENTS, attached: dict | None = None,
    ) -> _Loaded:
        device = torch.device(self.execution_device())
        stored, on_disk = read_choices(plan)
        settings = ReadSettings(
            spec, files, getattr(torch, dtype_name), weights, device,
            arena=self._host_arena() if self._streams_denoiser(spec, storage, weights) else None,
            companion=self.store.companion(spec), component_repos=self.store.weights_spec(spec).component_repos,
            stored=stored, on_disk=on_disk, attachments=attachments, attached_folders=attached,
        )
        read = reader(settings)
        residency = place(read, spec, self._preset, device.type, dtype_name, free_vram=lambda: free_vram_bytes(device.type))
        adapters = None
        if storage is not Storage.NATIVE:
            # With the denoiser streamed, the (small) adapter weights stay on the device: the engine moves only the base's.
            adapters = AdapterCache(read.pipe, spec.name, device=device if read.streamer is not None else None)
        return _Loaded(spec, read.pipe, residency, dtype_name, weights, adapters, attachments=attachments)

    def _streams_denoiser(self, spec: ModelSpec, storage: Storage, weights: WeightFormat) -> bool:
        """The memory engine streams a transformer read from folders or from a denoiser file (safetensors, fp8 or
        GGUF), stored as shipped, int8 or fp8; NF4 and fp8 compute stay with bitsandbytes and torchao, placed whole."""
        return (
            self._preset.device == "cuda" and storage in ENGINE_STORAGES and weights in ENGINE_FORMATS
            and family_spec(spec.family).denoiser == "transformer"
        )

    def _host_arena(self) -> HostArena:
        pinned = self.execution_device() == "cuda" and self._pin_arena
        if self._arena is not None and self._arena.pinned != pinned:
            self._arena.free()
            self._arena = None
        if self._arena is None:
            self._arena = HostArena(pinned=pinned)
            if not pinned and self.execution_device() == "cuda":
                self._arena.note = "The RAM plan has no room to pin the streamed weights: they wait in ordinary RAM (slower copies)."
        return self._arena

    def _release(self, next_denoiser_bytes: int = 0) -> None:
        """Drop the loaded model. The pinned arena stays for a next model that needs at least half of it
        (re-pinning costs seconds); otherwise, and always when it is not pinned, its RAM goes back too."""
        arena = self._arena
        if arena is not None and not (arena.pinned and arena.capacity_bytes // 2 <= next_denoiser_bytes <= 0.95 * arena.capacity_bytes):
            arena.free()
            self._arena = None
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            if arena is not None and self._arena is None:
                release_freed_memory()
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


def _check_ram(spec: ModelSpec, files: ModelFiles, on_disk: frozenset[str] = frozenset(), attached: int = 0, with_attached: str = "") -> None:
    """Refuse a load that cannot fit in RAM before reading a byte of it. Only the files the reader loads count
    (`loaders.bytes_to_read`), not the copies and duplicates a repo folder may hold beside them, and not the share of
    the components the plan reads from disk as used (`on_disk`, weighed as the catalog weighs them); the models the job
    attaches (`attached` bytes, named in `with_attached`) count as the catalog sizes them."""
    needed_bytes = bytes_to_read(spec, files)
    parts = {name: size for name, size in spec.component_bytes.items() if name != "lora"}
    if on_disk and sum(parts.values()):
        needed_bytes -= needed_bytes * sum(size for name, size in parts.items() if name in on_disk) // sum(parts.values())
    needed_bytes += attached
    available = psutil.virtual_memory().available
    if needed_bytes > available:
        raise NotEnoughMemory(
            f"{spec.name}{with_attached} needs {needed_bytes / 1e9:.1f} GB of RAM to load; {available / 1e9:.1f} GB is free. "
            "Close other programs, or choose a smaller model."
        )


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError, or cuBLAS failing to allocate its workspace, which arrives as a plain RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUBLAS_STATUS_ALLOC_FAILED" in text or "out of memory" in text.lower())


def _drop_frames(error: BaseException) -> None:
    """A traceback keeps every frame's locals, the half-built pipeline among them; clear them so it can be freed."""
    traceback.clear_frames(error.__traceback__)
    error.__traceback__ = None


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 400 else text[:400] + "…"
