"""The model manager: the one long-lived object with state.

Policy:
- At most one pipeline is loaded. `use(model_id)` returns it, loading it first or swapping out the
  previous one, whose GPU memory and host RAM are released before the new one loads.
- Every job runs inside `use(...)`, under one lock, so two jobs never share the GPU.
- Components are placed by the active preset (see `placement.py`); changing the preset unloads.
- On GPU presets the denoiser is placed by the memory engine (`memory/`): its weights are read once into
  a pinned host arena that is reused across models, and before each job the planner decides how many of
  its blocks stay resident for that job's size. A job that cannot fit is refused before it starts, with
  the memory it needs and the memory the preset allows.
- A model whose conditioning comes from a prior in a repo of its own (FLUX.1 Redux) loads the prior with it: the
  prior's components hang on the pipeline as `prior_<name>` and are placed, measured and released with it.
- On the CPU, weights a memory-mapped file left misaligned are copied to aligned memory at load, so a result depends
  on the weights, not on the file's byte layout, and equals the memory engine's (`memory/aligned_weights.py`).
- A failed load releases whatever was loaded and raises `ModelLoadFailed`; nothing stays half-loaded.
- LoRAs chosen for a job are loaded as adapters on the loaded pipeline and kept there for later jobs
  (`lora_library.AdapterCache`); a job without them runs with every adapter disabled.
- Weights are stored as the preset says (`weights`: as shipped, fp8, int8, NF4) unless a job asks otherwise; a
  checkpoint file (a fine-tune or a GGUF) loads against its base model's folder, never fetching at load time.
- Out of memory inside a job: the first time, device memory is freed, the plan steps down one notch
  (fewer resident blocks, tiled VAE) and `RetryAfterOutOfMemory` tells the runner to run the step again;
  the second time the model is unloaded and `NotEnoughMemory` raised. The next job starts clean.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import diffusers
import psutil
import torch
import transformers

from pipelines.catalog import FAMILIES, CompanionRepo, FamilySpec, ModelSpec, Task, family_spec, model_spec
from pipelines.errors import InvalidRequest, ModelLoadFailed, ModelNotAvailable, NotEnoughMemory, RetryAfterOutOfMemory
from pipelines.fish_speech.model import FishSpeech
from pipelines.hardware import MemoryReading, compute_dtype_for, read_memory, release_freed_memory
from pipelines.jobs import ProgressCallback
from pipelines.lora_library import ActiveLora, AdapterCache
from pipelines.memory.aligned_weights import align_cpu_weights
from pipelines.memory.block_streamer import BlockStreamer
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, stream_loaded
from pipelines.memory.planner import BlockPlan, DenoiserShape, Workload, denoiser_shape, plan_blocks
from pipelines.model_store import ModelFiles, ModelStore
from pipelines.placement import AppliedPlacement, Placement, PlacementPlan, apply_placement, measure_component, plan_placement
from pipelines.weight_formats import WeightFormat, nf4_model_config, nf4_pipeline_config, quantize_loaded, weight_format
from presets import Preset

log = logging.getLogger(__name__)
GIB = 1024**3


@dataclass
class _Loaded:
    spec: ModelSpec
    pipe: object
    placement: AppliedPlacement
    load_seconds: float
    weights: WeightFormat = WeightFormat.SHIPPED
    streamer: BlockStreamer | None = None
    shape: DenoiserShape | None = None
    block_plan: BlockPlan | None = None
    steps_down: int = 0
    adapters: AdapterCache | None = None


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


class ModelManager:
    def __init__(self, store: ModelStore, preset: Preset):
        self.store = store
        self._preset = preset
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None
        self._arena: HostArena | None = None
        self._loaders = {
            Task.TEXT_TO_IMAGE: self._load_diffusers,
            Task.TEXT_TO_MUSIC: self._load_diffusers,
            Task.TEXT_TO_SPEECH: self._load_speech,
            Task.TEXT_TO_VIDEO: self._load_diffusers,
            Task.IMAGE_TO_VIDEO: self._load_diffusers,
            Task.INSTRUCTION_EDIT: self._load_diffusers,
            Task.INPAINT: self._load_diffusers,
            Task.CANNY_TO_IMAGE: self._load_diffusers,
            Task.DEPTH_TO_IMAGE: self._load_diffusers,
            Task.IMAGE_VARIATION: self._load_diffusers,
        }

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
    ) -> Iterator[object]:
        """Hold the GPU for one job with `model_id` loaded and placed for `workload`; yields the pipeline.
        `on_progress` hears about a download, if one is needed. `dtype` and `weights` ask for a precision or a weight
        format other than the preset's (the model is reloaded when it was loaded otherwise). `loras` are active,
        with their weights, for this job only."""
        chosen = weight_format(weights or self._preset.weights, self.execution_device(), self.compute_capability())
        with self._lock:
            loaded = self._ensure_loaded(model_id, on_progress, dtype or self.compute_dtype(), chosen)
            self._admit(loaded, workload)
            if loaded.adapters is not None:
                loaded.adapters.activate(loras)
            elif loras:
                raise InvalidRequest("loras", f"{loaded.spec.name} does not take LoRAs")
            try:
                yield loaded.pipe
                return
            except torch.OutOfMemoryError as error:
                _drop_frames(error)
                retry = self._step_down(loaded)
            finally:
                loaded.placement.after_job()
            if retry is not None:
                raise retry
            message = (
                f"Out of memory running {loaded.spec.name} on the {self._preset.label} preset, also after stepping the "
                "plan down. The model was unloaded; try a smaller size or batch, or a preset for less VRAM."
            )
            del loaded
            self._release()
            raise NotEnoughMemory(message)

    def _admit(self, loaded: _Loaded, workload: Workload | None) -> None:
        """Choose the block plan for this job, or refuse it before anything runs."""
        if loaded.streamer is None:
            return
        workload = workload or _default_workload(loaded.spec)
        # Visiting components have left the device by the time the denoiser runs; resident ones have not.
        usable = self._preset.usable_vram_bytes - loaded.placement.plan.resident_bytes
        plan = plan_blocks(loaded.shape, workload, usable, demote=loaded.steps_down)
        if not plan.fits:
            raise NotEnoughMemory(
                f"{loaded.spec.name} at this size needs {plan.device_bytes / GIB:.1f} GiB of GPU memory even with every "
                f"block streamed ({plan.activation_bytes / GIB:.1f} GiB of it for activations); the {self._preset.label} "
                f"preset allows {usable / GIB:.1f} GiB. Use a smaller size or batch."
            )
        applied = loaded.block_plan
        if applied is None or (applied.resident, applied.ring_slots) != (plan.resident, plan.ring_slots):
            loaded.streamer.place(set(plan.resident), ring_slots=max(plan.ring_slots, 1))
        loaded.block_plan = plan

    def _step_down(self, loaded: _Loaded) -> RetryAfterOutOfMemory | None:
        """One notch leaner after an out-of-memory: a quarter of the resident blocks stream, the VAE tiles.
        None when this model has stepped down already."""
        release_freed_memory()
        if loaded.steps_down:
            return None
        resident = len(loaded.block_plan.resident) if loaded.block_plan else 0
        loaded.steps_down = max(1, resident // 4)
        if getattr(loaded.pipe, "vae", None) is not None:
            loaded.pipe.vae.enable_tiling()
        log.warning("out of memory with %s: %d fewer resident blocks, tiled VAE, one more try", loaded.spec.id, loaded.steps_down)
        return RetryAfterOutOfMemory(f"Out of memory with {loaded.spec.name}; retrying with a leaner plan.")

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
            block_plan=loaded.block_plan if loaded else None,
            load_seconds=loaded.load_seconds if loaded else None,
            memory=read_memory(),
        )

    # -- loading ----------------------------------------------------------------------------------

    def _ensure_loaded(self, model_id: str, on_progress: ProgressCallback | None, dtype_name: str, weights: WeightFormat) -> _Loaded:
        spec = self._spec(model_id)
        # No local name for the loaded model here: it would keep the model alive through the release below.
        if self._loaded is not None and (self._loaded.spec, self._loaded.placement.plan.dtype, self._loaded.weights) == (spec, dtype_name, weights):
            return self._loaded
        _check_packages(spec)
        if weights is WeightFormat.NF4 and family_spec(spec.family).denoiser != "transformer":
            raise InvalidRequest("weights", f"NF4 is for the big transformers (FLUX, SD3); {spec.name} is small enough as shipped or in fp8")
        files = self.store.ensure(spec, on_progress)
        self._release(next_denoiser_bytes=_denoiser_bytes(spec, files))
        started = time.monotonic()
        try:
            loaded = self._loaders[spec.task](spec, files, dtype_name, weights)
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
            "loaded %s in %.1f s (%s); free VRAM %.1f GiB, process RSS %.1f GiB",
            spec.id, loaded.load_seconds, loaded.placement.plan.describe(),
            memory.vram_free_bytes / GIB, memory.process_rss_bytes / GIB,
        )
        return self._loaded

    def _spec(self, model_id: str) -> ModelSpec:
        try:
            return model_spec(model_id)
        except KeyError:
            pass
        # A checkpoint file put in the models folder since the last scan.
        self.store.scan_files()
        try:
            return model_spec(model_id)
        except KeyError:
            raise InvalidRequest("model", f"unknown model {model_id!r}") from None

    def _load_speech(self, spec: ModelSpec, files: ModelFiles, dtype_name: str, weights: WeightFormat) -> _Loaded:
        """A Fish Speech model is small enough (about 1.8 GB in bf16) to stay resident on every preset, with its
        weights as shipped whatever format the preset asks for the image models."""
        _check_ram(spec, files)
        device = self.execution_device()
        model = FishSpeech.from_folder(files.folder, device=device, dtype=getattr(torch, dtype_name))
        sizes = {name: measure_component(module, getattr(torch, dtype_name)) for name, module in model.components().items()}
        resident_bytes = sum(size.total_bytes for size in sizes.values())
        plan = PlacementPlan(
            device=device, dtype=dtype_name, components={name: Placement.RESIDENT for name in sizes}, vae_tiling=False,
            stream_blocks_per_group=0, predicted_peak_vram_bytes=resident_bytes,
            usable_vram_bytes=self._preset.usable_vram_bytes, resident_bytes=resident_bytes,
        )
        return _Loaded(spec, model, AppliedPlacement(plan), 0.0, weights=weights)

    def _load_diffusers(self, spec: ModelSpec, files: ModelFiles, dtype_name: str, weights: WeightFormat) -> _Loaded:
        _check_ram(spec, files)
        dtype = getattr(torch, dtype_name)
        device = torch.device(self.execution_device())
        family = family_spec(spec.family)
        # The memory engine streams plain transformer weights from a folder; quantized or file-loaded ones are placed whole.
        use_engine = (
            self._preset.device == "cuda" and family.denoiser == "transformer" and files.checkpoint is None
            and weights is WeightFormat.SHIPPED
        )
        pipe, streamer, to_quantize = self._read_pipeline(spec, files, dtype, weights, use_engine)
        prior_order = _attach_prior(pipe, self.store.companion(spec), files, dtype)
        if files.lora_file is not None:
            # Fused once at load, then the adapter is dropped: the fast preset costs nothing per step.
            pipe.load_lora_weights(files.lora_file.parent, weight_name=files.lora_file.name)
            pipe.fuse_lora(lora_scale=spec.lora.scale)
            pipe.unload_lora_weights()
            if use_engine:
                streamer = stream_loaded(pipe.transformer, device, dtype, self._host_arena())
        quantize_loaded(pipe, to_quantize, weights, denoiser=family.denoiser)
        # Runners report steps themselves; the pipeline's own bar would show every step twice.
        pipe.set_progress_bar_config(disable=True)
        names = [name for name in family.component_roles if getattr(pipe, name, None) is not None]
        if device.type == "cpu":
            # Weights left mapped from their file, at the offset its header gave them, would make a CPU result depend
            # on the file's byte layout, and differ from the memory engine's aligned copies (memory/aligned_weights.py).
            copied = sum(align_cpu_weights(getattr(pipe, name)) for name in names)
            log.debug("%s: %.1f MB of weights copied to aligned memory", spec.id, copied / 1e6)
        placed_apart = {"transformer"} if streamer is not None else set()
        sizes = {name: measure_component(getattr(pipe, name), dtype) for name in names if name not in placed_apart}
        plan = plan_placement(family, sizes, self._preset, device.type, dtype_name)
        # A prior runs first: its image encoder leaves the device when the text encoders come.
        order = [name for name in [*prior_order, *pipe.model_cpu_offload_seq.split("->")] if name in names]
        applied = apply_placement(pipe, plan, order, denoiser=family.denoiser, streamer=streamer)
        shape = denoiser_shape(pipe.transformer, streamer.block_bytes, dtype.itemsize) if streamer else None
        adapters = AdapterCache(pipe, spec.name, device=device if streamer is not None else None)
        return _Loaded(spec, pipe, applied, 0.0, weights=weights, streamer=streamer, shape=shape, adapters=adapters)

    def _read_pipeline(self, spec: ModelSpec, files: ModelFiles, dtype: torch.dtype, weights: WeightFormat, use_engine: bool):
        """The pipeline read from its folder, or from a checkpoint file against the base's folder; its block streamer
        when the memory engine holds the transformer; the components still to quantize to fp8/int8 after loading."""
        if self.store.weights_spec(spec).component_repos:
            return self._assembled_pipeline(spec, files, dtype, weights, use_engine)
        family = family_spec(spec.family)
        pipeline_class = getattr(diffusers, spec.pipeline_class)
        load_kwargs = dict(family.load_kwargs)
        # A GGUF transformer is quantized already; the rest of the quantizable components follow the chosen format.
        gguf = files.checkpoint is not None and files.checkpoint.suffix == ".gguf"
        to_quantize = [name for name in family.quantizable if not (gguf and name == family.denoiser)]
        if files.checkpoint is not None and family.file_holds_pipeline:
            pipe = pipeline_class.from_single_file(
                str(files.checkpoint), config=str(files.folder), local_files_only=True, dtype=dtype, **load_kwargs
            )
            return pipe, None, to_quantize
        streamer = None
        if files.checkpoint is not None:
            load_kwargs[family.denoiser] = _denoiser_from_file(files, family, dtype, weights)
            to_quantize = [name for name in to_quantize if name != family.denoiser]
        elif use_engine and files.lora_file is None:
            # Read once, straight into the arena: no second copy of the denoiser in RAM at any point.
            transformer_class = getattr(diffusers, _component_class(files.folder, "transformer"))
            device = torch.device(self.execution_device())
            load_kwargs["transformer"], streamer = load_streamed(
                transformer_class, files.folder / "transformer", device, dtype, self._host_arena()
            )
        if weights is WeightFormat.NF4 and to_quantize:
            load_kwargs["quantization_config"] = nf4_pipeline_config(dtype, to_quantize)
        load_kwargs.update(_companion_components(self.store.companion(spec), files, dtype))
        pipe = pipeline_class.from_pretrained(files.folder, dtype=dtype, use_safetensors=True, variant=spec.variant, **load_kwargs)
        return pipe, streamer, to_quantize

    def _assembled_pipeline(self, spec: ModelSpec, files: ModelFiles, dtype: torch.dtype, weights: WeightFormat, use_engine: bool):
        """A pipeline no repo holds whole (FramePack): its transformer from the model's own folder, every other
        component from the component repos' subfolders. Returns what `_read_pipeline` does."""
        family = family_spec(spec.family)
        transformer_class = getattr(diffusers, json.loads((files.folder / "config.json").read_text())["_class_name"])
        streamer = None
        to_quantize = list(family.quantizable)
        if use_engine and files.lora_file is None:
            transformer, streamer = load_streamed(
                transformer_class, files.folder, torch.device(self.execution_device()), dtype, self._host_arena()
            )
        else:
            quantization = nf4_model_config(dtype) if weights is WeightFormat.NF4 else None
            transformer = transformer_class.from_pretrained(
                files.folder, dtype=dtype, use_safetensors=True, quantization_config=quantization,
            )
        components = {}
        for source in self.store.weights_spec(spec).component_repos:
            folder = files.component_folders[source.id]
            for name, class_name in source.components.items():
                components[name] = _load_component(class_name, folder / name, dtype)
        return getattr(diffusers, spec.pipeline_class)(transformer=transformer, **components), streamer, to_quantize

    def _host_arena(self) -> HostArena:
        if self._arena is None:
            self._arena = HostArena(pinned=self.execution_device() == "cuda")
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


def _default_workload(spec: ModelSpec) -> Workload:
    family = family_spec(spec.family)
    defaults = spec.defaults
    return Workload(family.denoiser_tokens(defaults.width, defaults.height), family.denoiser_batch(defaults.guidance))


WEIGHT_SUFFIXES = (".safetensors", ".pth")


def _bytes_on_disk(folder) -> int:
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*") if path.suffix in WEIGHT_SUFFIXES)


def _denoiser_bytes(spec: ModelSpec, files: ModelFiles) -> int:
    """The bytes of the denoiser the memory engine would hold (0 for a model it does not place: speech)."""
    if files.checkpoint is not None:
        return files.checkpoint.stat().st_size
    family = FAMILIES.get(spec.family)
    if files.component_folders:
        # The model's own folder is its transformer.
        return _bytes_on_disk(files.folder)
    return _bytes_on_disk(files.folder / family.denoiser) if family else 0


def _denoiser_from_file(files: ModelFiles, family: FamilySpec, dtype: torch.dtype, weights: WeightFormat):
    """The transformer of a checkpoint file (a fine-tune or a GGUF), built from the base folder's config: nothing is
    fetched, whatever the file's key layout (original or diffusers)."""
    denoiser_class = getattr(diffusers, _component_class(files.folder, family.denoiser))
    quantization = None
    if files.checkpoint.suffix == ".gguf":
        quantization = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    elif weights is WeightFormat.NF4:
        quantization = nf4_model_config(dtype)
    return denoiser_class.from_single_file(
        str(files.checkpoint), config=str(files.folder), subfolder=family.denoiser, local_files_only=True,
        dtype=dtype, quantization_config=quantization,
    )


def _load_component(class_name: str, folder, dtype: torch.dtype):
    """One pipeline component from its folder: a model (diffusers or transformers) in `dtype`, or a tokenizer,
    processor or scheduler."""
    component_class = getattr(diffusers, class_name, None) or getattr(transformers, class_name)
    if issubclass(component_class, torch.nn.Module):
        return component_class.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return component_class.from_pretrained(folder)


def _component_class(folder, component: str) -> str:
    return json.loads((folder / "model_index.json").read_text())[component][1]


def _companion_components(companion: CompanionRepo | None, files: ModelFiles, dtype: torch.dtype) -> dict:
    """The components a pipeline's repo leaves out (HiDream's Llama encoder and its tokenizer), loaded from their
    own folder, as keyword arguments for the pipeline's `from_pretrained`."""
    if companion is None or not companion.encoder:
        return {}
    encoder_class = getattr(transformers, companion.encoder_class)
    return {
        companion.encoder: encoder_class.from_pretrained(files.companion_folder, dtype=dtype, use_safetensors=True),
        companion.tokenizer: transformers.AutoTokenizer.from_pretrained(files.companion_folder),
    }


PRIOR_PREFIX = "prior_"


def _attach_prior(pipe, companion: CompanionRepo | None, files: ModelFiles, dtype: torch.dtype) -> list[str]:
    """Load a prior companion (FLUX.1 Redux's) from its folder and hang its components on the loaded pipeline as
    `prior_<name>`, so that placement, the memory checks and unloading treat them as the pipeline's own. Plain
    attributes, not registered components: the pipeline's own component list (and `from_pipe`) stays as diffusers
    knows it. Returns the prior's components in its call order, as named on the pipeline."""
    if companion is None or not companion.prior_pipeline_class:
        return []
    prior_class = getattr(diffusers, companion.prior_pipeline_class)
    prior = prior_class.from_pretrained(files.companion_folder, dtype=dtype, use_safetensors=True)
    for name, component in prior.components.items():
        if component is not None:
            setattr(pipe, PRIOR_PREFIX + name, component)
    return [PRIOR_PREFIX + name for name in prior.model_cpu_offload_seq.split("->")]


def _check_packages(spec: ModelSpec) -> None:
    """Refuse, naming the package, a model whose pipeline needs one that is not installed (diffusers would fail
    later with a NameError from inside the pipeline)."""
    family = FAMILIES.get(spec.family)
    missing = [name for name in (family.needs_packages if family else ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelNotAvailable(
            f"{spec.name} needs the Python package {', '.join(missing)}, which is not installed: pip install {' '.join(missing)} "
            "(the build that matches your torch, from the same index)."
        )


def _check_ram(spec: ModelSpec, files: ModelFiles) -> None:
    """Refuse a load that cannot fit in RAM before reading a byte of it."""
    needed = _bytes_on_disk(files.folder)
    if files.checkpoint is not None:
        # The file replaces the base's denoiser (or, holding the whole pipeline, all of the base's weights).
        family = family_spec(spec.family)
        needed = 0 if family.file_holds_pipeline else needed - _bytes_on_disk(files.folder / family.denoiser)
        needed += files.checkpoint.stat().st_size
    if files.companion_folder:
        needed += _bytes_on_disk(files.companion_folder)
    needed += sum(_bytes_on_disk(folder) for folder in files.component_folders.values())
    available = psutil.virtual_memory().available
    if needed > available:
        raise NotEnoughMemory(
            f"{spec.name} needs {needed / 1e9:.1f} GB of RAM to load; {available / 1e9:.1f} GB is free. "
            "Close other programs, or choose a smaller model."
        )


def _drop_frames(error: BaseException) -> None:
    """A traceback keeps every frame's locals, the half-built pipeline among them; clear them so it can be freed."""
    traceback.clear_frames(error.__traceback__)
    error.__traceback__ = None


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 400 else text[:400] + "…"
