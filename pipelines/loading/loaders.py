"""Reading a pipeline from disk: how a model is stored decides which reader reads it.

A model is stored in one of a few ways (`Storage`): a diffusers folder; one file holding the whole pipeline
(SD1.5/SDXL fine-tunes); one file holding only the denoiser (FLUX/SD3 fine-tunes, GGUF), read against its base
model's folder; a transformer repo assembled with the components of other repos (FramePack); or a folder our own
model classes read (Fish Speech). `READERS` maps each storage to its reader; a storage without one is refused,
naming the model and the storage, before anything is released or read.

A reader takes frozen `ReadSettings` (what to read, in which dtype and weight format, and whether the memory engine
takes the denoiser) and returns a `ReadPipeline`: the pipeline on the host (or, for our own models, on its device)
with what the reading knows about it. Where its components then live is the manager's business (`residency.py`).
Reading covers the weight formats (NF4 and GGUF while reading, fp8/int8 right after), a LoRA fused at load,
companions (HiDream's Llama encoder, FLUX.1 Redux's prior, LTX-Video 0.9.7's latent upsampler) and, on the CPU, aligned
copies of mapped weights.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Mapping

import diffusers
import torch
import transformers

from pipelines.catalog import FAMILIES, CompanionRepo, ComponentRepo, FamilySpec, ModelSpec, family_spec
from pipelines.catalog.controls import CONTROL_PIPELINES, ControlNetSpec, IPAdapterSpec
from pipelines.errors import InvalidRequest, ModelLoadFailed, ModelNotAvailable
from pipelines.networks.fish_speech.model import FishSpeech
from pipelines.memory.aligned_weights import align_cpu_weights
from pipelines.memory.block_streamer import BlockStreamer
from pipelines.memory.encoder_storage import read_encoder_folder
from pipelines.memory.gguf_encoder import read_gguf_encoder
from pipelines.memory.mapped_weights import map_encoder
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, read_state_dict, state_shapes, stream_loaded
from pipelines.memory.original_layouts import LayoutWeights, UnknownScales, open_layout, scaled_keys
from pipelines.memory.stored_weights import StoredAs, stored_as
from pipelines.memory.weights_file import WeightsFile
from pipelines.loading.model_store import ModelFiles
from pipelines.loading.weight_formats import WeightFormat, nf4_model_config, nf4_pipeline_config, quantize_loaded

log = logging.getLogger(__name__)


class Storage(str, Enum):
    """How a model's weights are stored on disk, which decides how they are read."""

    FOLDER = "diffusers folder"
    PIPELINE_FILE = "whole-pipeline file"
    DENOISER_FILE = "denoiser file"
    ASSEMBLED = "assembled from component repos"
    NATIVE = "native model folder"


# Our own model classes, by the pipeline class a catalog entry names; each reads its folder onto a device.
NATIVE_CLASSES: Mapping[str, type] = {"FishSpeech": FishSpeech}


@dataclass(frozen=True)
class Attachments:
    """Models read beside a pipeline for the jobs that use them: a ControlNet per control image, in their order (one
    model may serve several: a union ControlNet in several modes), and an IP-Adapter. Part of what is loaded: other
    attachments mean another load."""

    controlnets: tuple[ControlNetSpec, ...] = ()
    ip_adapter: IPAdapterSpec | None = None

    def sources(self) -> list:
        """The repos to have on disk, each once."""
        found = {controlnet.source.id: controlnet.source for controlnet in self.controlnets}
        if self.ip_adapter is not None:
            found[self.ip_adapter.source.id] = self.ip_adapter.source
            if self.ip_adapter.encoder is not None:
                found[self.ip_adapter.encoder.id] = self.ip_adapter.encoder
        return list(found.values())


NO_ATTACHMENTS = Attachments()


@dataclass(frozen=True)
class ReadSettings:
    """Everything a reader needs, decided before it starts. `stored`: component name -> "as shipped" | "int8" | "fp8",
    as the RAM plan decided (a text encoder named there is held by the memory engine, even as shipped; one missing
    follows `weights`: fp8/int8 for the family's quantizable ones); `on_disk`: the components read from disk as used,
    from their memory-mapped files (the disk tier)."""

    spec: ModelSpec
    files: ModelFiles
    dtype: torch.dtype
    weights: WeightFormat
    device: torch.device
    # Set when the memory engine takes the denoiser: its blocks are read into this arena.
    arena: HostArena | None = None
    companion: CompanionRepo | None = None
    component_repos: tuple[ComponentRepo, ...] = ()
    # The RAM plan's choices (`memory/job_plan.read_choices`): component name → "as shipped" | "int8" | "fp8", and the
    # components read from disk as used.
    stored: Mapping[str, str] = field(default_factory=dict)
    on_disk: frozenset[str] = frozenset()
    attachments: Attachments = NO_ATTACHMENTS
    # The attachments' folders, by repo id (`ModelStore.ensure_attached`).
    attached_folders: Mapping[str, Path] | None = None


# The engine's storage for a weight format: the formats it stores itself (the others are torchao's and bitsandbytes').
ENGINE_STORAGE: Mapping[WeightFormat, StoredAs] = {WeightFormat.INT8: StoredAs.INT8, WeightFormat.FP8: StoredAs.FP8}


def denoiser_storage(settings: ReadSettings) -> StoredAs:
    """How the memory engine stores the denoiser's blocks: the RAM plan's choice, else the user's weight format."""
    chosen = settings.stored.get("transformer")
    return stored_as(chosen) if chosen is not None else ENGINE_STORAGE.get(settings.weights, StoredAs.SHIPPED)


@dataclass(frozen=True)
class ReadPipeline:
    """A pipeline as read, with what the reading knows about it."""

    pipe: object
    # Components holding weights, as named on the pipeline (a prior's `prior_<name>` included)...
    components: tuple[str, ...]
    # ...and the order they run in, which an offload chain follows.
    call_order: tuple[str, ...]
    # The memory engine's streamer when it holds the denoiser's blocks; the denoiser is then placed apart.
    streamer: BlockStreamer | None = None
    # Our own models read themselves onto the execution device: nothing is left to place.
    on_device: bool = False
    # Components whose weights the memory engine holds (text encoders stored int8/fp8, or read from disk as used):
    # they visit the device through its encoder streamer, never through accelerate's offload.
    held: frozenset[str] = frozenset()


Reader = Callable[[ReadSettings], ReadPipeline]


def storage_of(spec: ModelSpec, files: ModelFiles) -> Storage:
    if spec.pipeline_class in NATIVE_CLASSES:
        return Storage.NATIVE
    if files.component_folders:
        return Storage.ASSEMBLED
    if files.checkpoint is not None:
        return Storage.PIPELINE_FILE if family_spec(spec.family).file_holds_pipeline else Storage.DENOISER_FILE
    return Storage.FOLDER


def reader_for(spec: ModelSpec, storage: Storage, readers: Mapping[Storage, Reader] | None = None) -> Reader:
    """The reader for `storage`; ModelLoadFailed naming the model and the storage when there is none."""
    reader = (READERS if readers is None else readers).get(storage)
    if reader is None:
        raise ModelLoadFailed(f"{spec.name} cannot be loaded: Atelier has no reader for its storage ({storage.value}).")
    return reader


def check_readable(spec: ModelSpec, weights: WeightFormat) -> None:
    """Refuse before anything is fetched or released: a pipeline needing a package that is not installed
    (diffusers would fail later with a NameError from inside the pipeline), or NF4 for a small denoiser."""
    family = FAMILIES.get(spec.family)
    missing = [name for name in (family.needs_packages if family else ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelNotAvailable(
            f"{spec.name} needs the Python package {', '.join(missing)}, which is not installed: pip install {' '.join(missing)} "
            "(the build that matches your torch, from the same index)."
        )
    if weights is WeightFormat.NF4 and family is not None and family.denoiser != "transformer":
        raise InvalidRequest("weights", f"NF4 is for the big transformers (FLUX, SD3); {spec.name} is small enough as shipped or in fp8")


# -- the readers ------------------------------------------------------------------------------------


def _read_folder(settings: ReadSettings) -> ReadPipeline:
    spec, files, dtype = settings.spec, settings.files, settings.dtype
    family = family_spec(spec.family)
    load_kwargs = dict(family.load_kwargs)
    held = held_encoders(settings, _encoder_folders(files.folder), files)
    load_kwargs.update(held)
    to_quantize = [name for name in family.quantizable if name not in held]
    streamer = None
    if settings.arena is not None and files.lora_file is None:
        # Read once, straight into the arena: no second copy of the denoiser in RAM at any point.
        transformer_class = getattr(diffusers, _component_class(files.folder, "transformer"))
        load_kwargs["transformer"], streamer = load_streamed(
            transformer_class, files.folder / "transformer", settings.device, dtype, settings.arena, stored=denoiser_storage(settings)
        )
    if settings.weights is WeightFormat.NF4 and to_quantize:
        load_kwargs["quantization_config"] = nf4_pipeline_config(dtype, to_quantize)
    load_kwargs.update(_companion(settings, held))
    pipe = getattr(diffusers, spec.pipeline_class).from_pretrained(
        files.folder, dtype=dtype, use_safetensors=True, variant=spec.variant, **load_kwargs
    )
    return _finished(settings, pipe, to_quantize, streamer, frozenset(held))


def _read_pipeline_file(settings: ReadSettings) -> ReadPipeline:
    """A whole pipeline from one file, its configs and tokenizers from the base's folder; nothing is fetched."""
    spec, files = settings.spec, settings.files
    family = family_spec(spec.family)
    pipe = getattr(diffusers, spec.pipeline_class).from_single_file(
        str(files.checkpoint), config=str(files.folder), local_files_only=True, dtype=settings.dtype, **family.load_kwargs
    )
    # A GGUF denoiser is quantized already; the rest of the quantizable components follow the chosen format.
    gguf = files.checkpoint.suffix == ".gguf"
    to_quantize = [name for name in family.quantizable if not (gguf and name == family.denoiser)]
    return _finished(settings, pipe, to_quantize, None)


def _read_denoiser_file(settings: ReadSettings) -> ReadPipeline:
    """The denoiser from its file, in the file's format (GGUF) or NF4 while reading; the rest from the base's folder.
    A safetensors file in diffusers' layout or in the original FLUX / Wan layout is read tensor by tensor under
    diffusers' names (`original_layouts`): with the memory engine holding the denoiser straight into the arena in the
    engine's storage (an fp8 file's bytes as they are, with the file's scale), otherwise into a state dict handed to
    diffusers (a scaled fp8 weight times its scale). Any other file is read by diffusers, then put under the engine."""
    spec, files, dtype = settings.spec, settings.files, settings.dtype
    family = family_spec(spec.family)
    load_kwargs = dict(family.load_kwargs)
    streamer = None
    if settings.arena is not None and family.denoiser == "transformer" and files.lora_file is None:
        load_kwargs[family.denoiser], streamer = _streamed_denoiser_from_file(settings, family)
    else:
        load_kwargs[family.denoiser] = _denoiser_from_file(files, family, dtype, settings.weights)
    held = held_encoders(settings, _encoder_folders(files.folder), files)
    load_kwargs.update(held)
    # A GGUF denoiser is quantized already; a safetensors one follows the chosen format like the other components.
    gguf = files.checkpoint.suffix == ".gguf"
    to_quantize = [
        name for name in family.quantizable
        if not (name == family.denoiser and (gguf or streamer is not None)) and name not in held
    ]
    if settings.weights is WeightFormat.NF4 and to_quantize:
        load_kwargs["quantization_config"] = nf4_pipeline_config(dtype, [name for name in to_quantize if name != family.denoiser])
    load_kwargs.update(_companion(settings, held))
    pipe = getattr(diffusers, spec.pipeline_class).from_pretrained(
        files.folder, dtype=dtype, use_safetensors=True, variant=spec.variant, **load_kwargs
    )
    return _finished(settings, pipe, to_quantize, streamer, frozenset(held))


def _streamed_denoiser_from_file(settings: ReadSettings, family: FamilySpec):
    files, dtype = settings.files, settings.dtype
    denoiser_class = getattr(diffusers, _component_class(files.folder, family.denoiser))
    stored = denoiser_storage(settings)
    weights = _layout_weights(files, family, denoiser_class)
    if weights is not None:
        return load_streamed(
            denoiser_class, files.folder / family.denoiser, settings.device, dtype, settings.arena, stored=stored, weights=weights
        )
    # Layouts only diffusers converts (read whole, then put under the engine) and GGUF (whose blocks stream as stored).
    denoiser = _denoiser_from_file(files, family, dtype, WeightFormat.SHIPPED)
    return denoiser, stream_loaded(denoiser, settings.device, dtype, settings.arena, stored=stored)


def _read_assembled(settings: ReadSettings) -> ReadPipeline:
    """A pipeline no repo holds whole (FramePack): its transformer from the model's own folder, every other
    component from the component repos' subfolders."""
    spec, files, dtype = settings.spec, settings.files, settings.dtype
    # The catalog's class: the repo's config.json may name the authors' own (FramePack's `...Packed`).
    transformer_class = getattr(diffusers, spec.denoiser_class)
    streamer = None
    if settings.arena is not None and files.lora_file is None:
        transformer, streamer = load_streamed(
            transformer_class, files.folder, settings.device, dtype, settings.arena, stored=denoiser_storage(settings)
        )
    else:
        quantization = nf4_model_config(dtype) if settings.weights is WeightFormat.NF4 else None
        transformer = transformer_class.from_pretrained(files.folder, dtype=dtype, use_safetensors=True, quantization_config=quantization)
    folders = {
        name: files.component_folders[source.id] / name
        for source in settings.component_repos for name in source.components if name.startswith(TEXT_ENCODER_PREFIX)
    }
    components = held_encoders(settings, folders, files)
    held = frozenset(components)
    for source in settings.component_repos:
        folder = files.component_folders[source.id]
        for name, class_name in source.components.items():
            if name not in held:
                components[name] = _load_component(class_name, folder / name, dtype)
    pipe = getattr(diffusers, spec.pipeline_class)(transformer=transformer, **components)
    to_quantize = [name for name in family_spec(spec.family).quantizable if name not in held]
    return _finished(settings, pipe, to_quantize, streamer, held)


def _read_native(settings: ReadSettings) -> ReadPipeline:
    """Our own model (Fish Speech: about 1.8 GB in bf16), read onto the device by its class, weights as shipped
    whatever format is asked."""
    model = NATIVE_CLASSES[settings.spec.pipeline_class].from_folder(settings.files.folder, device=settings.device, dtype=settings.dtype)
    names = tuple(model.components())
    return ReadPipeline(model, names, names, on_device=True)


READERS: Mapping[Storage, Reader] = {
    Storage.FOLDER: _read_folder,
    Storage.PIPELINE_FILE: _read_pipeline_file,
    Storage.DENOISER_FILE: _read_denoiser_file,
    Storage.ASSEMBLED: _read_assembled,
    Storage.NATIVE: _read_native,
}


def _finished(
    settings: ReadSettings, pipe, to_quantize: list[str], streamer: BlockStreamer | None, held: frozenset[str] = frozenset()
) -> ReadPipeline:
    """What every diffusers reader does after reading: the prior, a fused LoRA, fp8/int8, aligned CPU weights."""
    spec, files = settings.spec, settings.files
    family = family_spec(spec.family)
    prior_order = _attach_prior(pipe, settings.companion, files, settings.dtype)
    upsampler = _attach_upsampler(pipe, settings.companion, files, settings.dtype)
    _attach_controlnets(pipe, spec, settings.attachments.controlnets, settings.attached_folders or {}, settings.dtype)
    _attach_ip_adapter(pipe, settings.attachments.ip_adapter, settings.attached_folders or {}, settings.dtype)
    if files.lora_file is not None:
        # Fused once at load, then the adapter is dropped: the fast preset costs nothing per step.
        pipe.load_lora_weights(files.lora_file.parent, weight_name=files.lora_file.name)
        pipe.fuse_lora(lora_scale=spec.lora.scale)
        pipe.unload_lora_weights()
        if settings.arena is not None:
            streamer = stream_loaded(pipe.transformer, settings.device, settings.dtype, settings.arena, stored=denoiser_storage(settings))
    if streamer is not None:
        # The engine stores the denoiser's blocks itself (as shipped, int8 or fp8): torchao must not wrap them.
        to_quantize = [name for name in to_quantize if name != family.denoiser]
    quantize_loaded(pipe, to_quantize, settings.weights, denoiser=family.denoiser)
    # Runners report steps themselves; the pipeline's own bar would show every step twice.
    pipe.set_progress_bar_config(disable=True)
    names = tuple(name for name in family.component_roles if getattr(pipe, name, None) is not None)
    if settings.device.type == "cpu":
        # Weights left mapped from their file, at the offset its header gave them, would make a CPU result depend
        # on the file's byte layout, and differ from the memory engine's aligned copies (memory/aligned_weights.py).
        # Not those read from disk as used: a copy would put them in RAM, which the disk tier is there to avoid.
        copied = sum(align_cpu_weights(getattr(pipe, name)) for name in names if name not in settings.on_disk)
        log.debug("%s: %.1f MB of weights copied to aligned memory", spec.id, copied / 1e6)
    # A prior runs first: its image encoder leaves the device when the text encoders come. The latent upsampler runs
    # between the two passes, after the transformer and before the VAE decodes.
    sequence = pipe.model_cpu_offload_seq.split("->")
    if getattr(pipe, CONTROLNET, None) is not None:
        # Called at every step just before the denoiser.
        sequence.insert(sequence.index(family.denoiser), CONTROLNET)
    if upsampler:
        sequence.insert(sequence.index("vae"), LATENT_UPSAMPLER)
    order = tuple(name for name in [*prior_order, *sequence] if name in names)
    return ReadPipeline(pipe, names, order, streamer=streamer, held=held & set(names))


# -- parts ------------------------------------------------------------------------------------------


def _denoiser_from_file(files: ModelFiles, family: FamilySpec, dtype: torch.dtype, weights: WeightFormat):
    """The denoiser of a checkpoint file (a fine-tune or a GGUF), built from the base folder's config: nothing is
    fetched, whatever the file's key layout (original or diffusers)."""
    denoiser_class = getattr(diffusers, _component_class(files.folder, family.denoiser))
    quantization = None
    if files.checkpoint.suffix == ".gguf":
        quantization = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    elif weights is WeightFormat.NF4:
        quantization = nf4_model_config(dtype)
    checkpoint = str(files.checkpoint)
    read = _layout_weights(files, family, denoiser_class)
    if read is not None:
        # Read tensor by tensor under diffusers' names, a scaled fp8 weight times its scale: diffusers' own conversion
        # of the original layouts drops `scale_weight`, and its FLUX conversion assumes FLUX.1's width.
        try:
            checkpoint = read_state_dict(denoiser_class, files.folder / family.denoiser, read, dtype)
        finally:
            read.close()
    return denoiser_class.from_single_file(
        checkpoint, config=str(files.folder), subfolder=family.denoiser, local_files_only=True,
        dtype=dtype, quantization_config=quantization,
    )


def _layout_weights(files: ModelFiles, family: FamilySpec, denoiser_class) -> LayoutWeights | None:
    """The denoiser's safetensors file read under diffusers' names, when its layout is one Atelier maps (diffusers',
    FLUX's or Wan's original); None for a GGUF file or another layout. A scaled fp8 file (`scale_weight` per layer) in
    a layout Atelier cannot map is refused: diffusers' conversion would drop its scales and give wrong pictures."""
    if files.checkpoint.suffix != ".safetensors":
        return None
    shapes = state_shapes(denoiser_class, files.folder / family.denoiser)
    try:
        weights = open_layout(files.checkpoint, denoiser_class.__name__, shapes)
    except UnknownScales as error:
        raise ModelLoadFailed(str(error)) from None
    if weights is None and scaled_keys(WeightsFile(files.checkpoint.parent, stem=files.checkpoint.stem).locations):
        raise ModelLoadFailed(
            f"{files.checkpoint.name} is a scaled fp8 file whose tensors are not those of {denoiser_class.__name__} as "
            f"configured in {files.folder.name} in any layout Atelier reads; read without its scales its pictures would be "
            "wrong. Name the right base in the file's .json sidecar, or use the file's bf16 or plain fp8 release."
        )
    return weights


def _load_component(class_name: str, folder: Path, dtype: torch.dtype):
    """One pipeline component from its folder: a model (diffusers or transformers) in `dtype`, or a tokenizer,
    processor or scheduler."""
    component_class = getattr(diffusers, class_name, None) or getattr(transformers, class_name)
    if issubclass(component_class, torch.nn.Module):
        return component_class.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return component_class.from_pretrained(folder)


def _component_class(folder: Path, component: str) -> str:
    return json.loads((folder / "model_index.json").read_text())[component][1]


def companion_components(companion: CompanionRepo | None, files: ModelFiles, dtype: torch.dtype, encoder=None) -> dict:
    """The components a pipeline's repo leaves out (HiDream's Llama encoder and its tokenizer), loaded from their
    own folder (the encoder unless given, read already), as keyword arguments for the pipeline's `from_pretrained`."""
    if companion is None or not companion.encoder:
        return {}
    if encoder is None:
        encoder_class = getattr(transformers, companion.encoder_class)
        encoder = encoder_class.from_pretrained(files.companion_folder, dtype=dtype, use_safetensors=True)
    return {companion.encoder: encoder, companion.tokenizer: transformers.AutoTokenizer.from_pretrained(files.companion_folder)}


def _companion(settings: ReadSettings, held: dict) -> dict:
    """The companion's components; its encoder held by the memory engine (added to `held`) when the plan says so."""
    companion, files = settings.companion, settings.files
    if companion is None or not companion.encoder:
        return companion_components(companion, files, settings.dtype)
    mine = held_encoders(settings, {companion.encoder: files.companion_folder}, files, {companion.encoder: companion.encoder_class})
    held.update(mine)
    return companion_components(companion, files, settings.dtype, encoder=mine.get(companion.encoder))


# -- text encoders held by the memory engine ---------------------------------------------------------

TEXT_ENCODER_PREFIX = "text_encoder"
# fp8 compute computes the denoiser in fp8; the text encoders are stored in fp8 as with plain fp8.
_ENCODER_STORAGE = {**ENGINE_STORAGE, WeightFormat.FP8_COMPUTE: StoredAs.FP8}


def encoder_storage(settings: ReadSettings, name: str) -> StoredAs:
    """How text encoder `name` is stored: as the RAM plan says, else fp8/int8 when that weight format is chosen and
    the family quantizes it, else as shipped."""
    chosen = settings.stored.get(name)
    if chosen is not None:
        return stored_as(chosen)
    if name in family_spec(settings.spec.family).quantizable:
        return _ENCODER_STORAGE.get(settings.weights, StoredAs.SHIPPED)
    return StoredAs.SHIPPED


def held_encoders(settings: ReadSettings, folders: Mapping[str, Path], files: ModelFiles, classes: Mapping[str, str] = {}) -> dict:
    """The text encoders of `folders` the memory engine reads itself, by name: from disk as used (`on_disk`), from a
    GGUF encoder file the user put in the models folder, or stored as the RAM plan names it (int8/fp8 quantized while
    reading, or as shipped) or the weight format asks. The others (as shipped, from the repo) are left to diffusers."""
    held = {}
    for name, folder in folders.items():
        stored = encoder_storage(settings, name)
        gguf = files.encoder_files.get(name)
        variant = settings.spec.variant
        if name in settings.on_disk and gguf is None:
            # What the file holds is what is used: a mapped weight cannot be stored in another form.
            held[name] = map_encoder(folder, settings.dtype, classes.get(name), variant)
        elif gguf is not None:
            held[name] = read_gguf_encoder(gguf, folder, settings.dtype, stored, classes.get(name))
        elif stored is not StoredAs.SHIPPED or name in settings.stored:
            # Named by the RAM plan, even as shipped: the engine holds it, and it visits the GPU through the engine
            # (diffusers' group offload would pin a second copy of it).
            try:
                held[name] = read_encoder_folder(folder, settings.dtype, stored, classes.get(name), variant)
            except KeyError as missing:
                # A model whose file names its weights otherwise than its modules (transformers renames Llava's on
                # load): transformers reads it, and the weight format applies after (torchao) as for any component.
                log.warning("%s: %s is read by transformers, not the memory engine (%s)", settings.spec.id, name, missing)
        if name in held:
            how = "read from disk as used" if name in settings.on_disk and gguf is None else f"stored {stored.value}"
            log.info("%s: %s from %s, %s", settings.spec.id, name, gguf.name if gguf is not None else folder, how)
    return held


def _encoder_folders(folder: Path) -> dict[str, Path]:
    """The transformers text encoders a diffusers folder's `model_index.json` names, with their subfolders."""
    index = json.loads((folder / "model_index.json").read_text())
    return {
        name: folder / name for name, value in index.items()
        if name.startswith(TEXT_ENCODER_PREFIX) and isinstance(value, list) and value[0] == "transformers" and (folder / name).is_dir()
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


LATENT_UPSAMPLER = "latent_upsampler"


def _attach_upsampler(pipe, companion: CompanionRepo | None, files: ModelFiles, dtype: torch.dtype) -> bool:
    """Load a latent-upsampler companion (LTX-Video 0.9.7's spatial upscaler) as diffusers' docs do,
    `LTXLatentUpsamplePipeline.from_pretrained(repo, vae=pipeline.vae)`: the model's own VAE is passed in, so the
    repo's copy of it is neither downloaded nor read. Its upsampler hangs on the pipeline as `latent_upsampler`, a plain
    attribute like a prior's components; the runner pairs it with the VAE between the two passes."""
    if companion is None or not companion.upsampler_pipeline_class:
        return False
    upsample_class = getattr(diffusers, companion.upsampler_pipeline_class)
    upsample = upsample_class.from_pretrained(files.companion_folder, vae=pipe.vae, dtype=dtype, use_safetensors=True)
    setattr(pipe, LATENT_UPSAMPLER, upsample.latent_upsampler)
    return True


CONTROLNET = "controlnet"


def _attach_controlnets(pipe, spec: ModelSpec, controlnets: tuple[ControlNetSpec, ...], folders: Mapping[str, Path], dtype) -> None:
    """Read each ControlNet once and hang them, as the ControlNet pipeline of the family wraps them (one net per
    control image, a union model repeated for each of its modes), on the loaded pipeline as `controlnet`: a plain
    attribute, placed like any component; the runner builds the ControlNet pipeline around it with `from_pipe`."""
    if not controlnets:
        return
    loaded = {}
    for controlnet in controlnets:
        if controlnet.id not in loaded:
            model_class = getattr(diffusers, controlnet.model_class)
            loaded[controlnet.id] = model_class.from_pretrained(
                folders[controlnet.id], dtype=dtype, use_safetensors=True, variant=controlnet.variant,
            )
    control = CONTROL_PIPELINES[spec.family]
    pipeline_class = control.union_pipeline_class if controlnets[0].union and control.union_pipeline_class else control.pipeline_class
    # The pipeline's own constructor wraps the list in the family's multi-ControlNet model.
    wrapped = getattr(diffusers, pipeline_class).from_pipe(pipe, controlnet=[loaded[controlnet.id] for controlnet in controlnets])
    setattr(pipe, CONTROLNET, wrapped.controlnet)


def _attach_ip_adapter(pipe, adapter: IPAdapterSpec | None, folders: Mapping[str, Path], dtype: torch.dtype) -> None:
    """Load an IP-Adapter into the pipeline as diffusers does (`load_ip_adapter`): its layers join the denoiser's
    attention, its CLIP vision encoder becomes the pipeline's `image_encoder`. XLabs' FLUX.1 adapter names its encoder's
    repo (openai/clip-vit-large-patch14); diffusers' FLUX loader reads it in float16 unless told the job's dtype."""
    if adapter is None:
        return
    folder = str(folders[adapter.source.id])
    if adapter.encoder is not None:
        pipe.load_ip_adapter(
            folder, weight_name=adapter.weight_name, image_encoder_pretrained_model_name_or_path=str(folders[adapter.encoder.id]),
            image_encoder_dtype=dtype,
        )
    else:
        pipe.load_ip_adapter(folder, subfolder=adapter.subfolder, weight_name=adapter.weight_name, image_encoder_folder=adapter.encoder_subfolder)


# -- sizes on disk ----------------------------------------------------------------------------------
# Only the files a read brings into RAM are counted: a repo folder may also hold what the loader never reads (the
# root's single-file checkpoints, ComfyUI's `text_encoders/`, `vae copy/`, fp16 duplicates beside the weights loaded,
# a safety checker the pipeline is loaded without, Meta's `original/`), from an older download or a full snapshot.

WEIGHT_SUFFIXES = (".safetensors", ".pth")


def _precision(name: str) -> str | None:
    """The precision a weight file's name gives (`model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors`),
    None for plain names (`model-00001-of-00002.safetensors`): what diffusers' `variant` selects by."""
    parts = name.rsplit(".", 1)[0].split(".")
    return parts[1].split("-")[0] if len(parts) > 1 else None


def _weights_in(folder: Path, variant: str | None = None) -> int:
    """The weight files directly in `folder` (not its subfolders) of `variant`, in bytes."""
    if not folder.is_dir():
        return 0
    return sum(
        path.stat().st_size for path in folder.iterdir()
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES) and _precision(path.name) == variant
    )


def _repo_bytes(folder: Path | None, components: list[str] | None, variant: str | None = None) -> int:
    """What reading a repo folder brings into RAM: the weights of `components` (the subfolders a diffusers pipeline
    reads), or with None the weights at the root of a folder that is one model (FramePack's transformer, a Llama
    encoder, Fish Speech)."""
    if folder is None or not folder.is_dir():
        return 0
    if components is None:
        return _weights_in(folder)
    return sum(_weights_in(folder / name, variant) for name in components)


def _pipeline_components(spec: ModelSpec, folder: Path, leave_out: set[str] = frozenset()) -> list[str] | None:
    """The weight components a read of `spec`'s folder loads: the family's components (those `model_index.json` may
    name beside them, such as a safety checker, are loaded as None), or None for a folder that is one model."""
    family = FAMILIES.get(spec.family)
    if family is None or not (folder / "model_index.json").is_file():
        return None
    passed_as_none = {name for name, value in family.load_kwargs.items() if value is None}
    return [name for name in family.component_roles if name not in passed_as_none | leave_out]


def _companion_components(spec: ModelSpec) -> list[str] | None:
    """A prior companion (FLUX.1 Redux's) is a diffusers folder whose components join the pipeline as `prior_<name>`;
    of a latent-upsampler companion only `latent_upsampler/` is read; an encoder companion (HiDream's Llama) is one
    model at its folder's root."""
    if spec.companion.upsampler_pipeline_class:
        return [LATENT_UPSAMPLER]
    if not spec.companion.prior_pipeline_class:
        return None
    roles = family_spec(spec.family).component_roles
    return [name.removeprefix(PRIOR_PREFIX) for name in roles if name.startswith(PRIOR_PREFIX)]


def bytes_to_read(spec: ModelSpec, files: ModelFiles) -> int:
    """The weight bytes a read brings into RAM: only the files the reader loads."""
    if files.checkpoint is not None:
        # The file replaces the base's denoiser (or, holding the whole pipeline, all of the base's weights).
        family = family_spec(spec.family)
        needed = files.checkpoint.stat().st_size
        if not family.file_holds_pipeline:
            needed += _repo_bytes(files.folder, _pipeline_components(spec, files.folder, {family.denoiser}), spec.variant)
    else:
        needed = _repo_bytes(files.folder, _pipeline_components(spec, files.folder), spec.variant)
    if files.companion_folder is not None and spec.companion is not None:
        needed += _repo_bytes(files.companion_folder, _companion_components(spec))
    for source in spec.component_repos:
        folder = files.component_folders.get(source.id)
        if folder is not None:
            needed += sum(_weights_in(folder / name) for name in source.components)
    return needed


def denoiser_bytes(spec: ModelSpec, files: ModelFiles) -> int:
    """The bytes of the denoiser the memory engine would hold (0 for a model it does not place: speech)."""
    if files.checkpoint is not None:
        return files.checkpoint.stat().st_size
    family = FAMILIES.get(spec.family)
    if files.component_folders:
        # The model's own folder is its transformer.
        return _weights_in(files.folder)
    return _weights_in(files.folder / family.denoiser, spec.variant) if family else 0
