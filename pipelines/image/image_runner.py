"""Text to image: one request in, saved PNGs out.

    1. the checked job (`ImageRequest.check` makes it once)   2. load (manager.use)   3. set the sampler
    4. for each image of the batch: denoise (Stop and progress between steps), decode; the hires fix, if asked
    5. save
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import diffusers
import torch
from PIL import Image

from pipelines.catalog import Catalog, FamilySpec, ModelSpec, family_spec
from pipelines.speed.attention import apply_attention, check_attention
from pipelines.loading.checkpoint_files import checkpoint_record
from pipelines.speed.compiled_blocks import CompileReport, check_compile, compiled_blocks, inductor_cache_dir
from pipelines.errors import InvalidRequest, JobStopped, UnknownModel
from pipelines.image.controlnets import (
    NO_CONDITIONING, Conditioning, check_conditioning, control_kwargs, control_pipeline, prepare_control, record as conditioning_record,
    reference_images,
)
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.lora_library import ActiveLora, parse_lora_list
from pipelines.manager import ModelManager
from pipelines.media import MediaError, file_digest, image_size
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import (
    MAX_PROMPT_CHARS, batch_seeds, checked_guidance, checked_prompt, checked_seed, checked_size, checked_steps, checked_text, number,
    resolved_seed, steps_from_picture, whole_number,
)
from pipelines.speed.step_cache import check_speed, step_cache
from pipelines.loading.weight_formats import WEIGHT_FORMATS

log = logging.getLogger(__name__)

MAX_BATCH = 16
DEFAULT_STRENGTH = 0.6
# Hires fix: how much bigger the second pass makes the image (1 = off), and how much of it that pass repaints.
MAX_HIRES_SCALE = 4.0
DEFAULT_HIRES_STRENGTH = 0.35


@dataclass(frozen=True)
class ImageRequest:
    """Inputs as a person or a script gave them; `None` means the model's default."""

    prompt: str
    model: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = -1
    batch: int = 1
    scheduler: str | None = None
    # Image to image: the picture to start from (a file) and how much of it to repaint (0 keeps it, 1 ignores it).
    init_image: str | None = None
    strength: float | None = None
    # LoRAs from the library with their weights: "name:weight" entries (a string or a list), or LoraChoices.
    loras: str | tuple = ()
    # How the big weights are stored (as shipped, fp8, int8, nf4); None means the preset's choice.
    weights: str | None = None
    # Speed: "off", "balanced" or "fast" (the family's step cache from the catalog); `cache_method` and
    # `cache_threshold` override the level's choice.
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None
    # "on": the denoiser's repeated blocks run compiled (pipelines/speed/compiled_blocks.py); the first job compiles them.
    compile: str = "off"
    # The denoiser's attention backend (pipelines/speed/attention.py); None means the preset's.
    attention: str | None = None
    # ControlNets: control pictures (files), each with its type, strength (0-2) and the part of the schedule it acts on
    # (start < end, 0-1); lists of one value apply to every picture (pipelines/image/controlnets.py).
    control_images: tuple = ()
    control_types: tuple | str = ()
    control_strengths: tuple | str = ()
    control_starts: tuple | str = ()
    control_ends: tuple | str = ()
    # IP-Adapter: reference pictures and how strongly they steer (0: not at all); None picks the model's first adapter.
    ip_adapter_images: tuple = ()
    ip_adapter_scale: float | None = 0.0
    ip_adapter: str | None = None
    # Hires fix (`_hires_fix`): the image is enlarged `hires_scale`× and repainted at `hires_strength`; 1 is off.
    hires_scale: float = 1.0
    hires_strength: float = DEFAULT_HIRES_STRENGTH

    def check(self, catalog: Catalog) -> "ImageJob":
        """The job this request asks for, every value filled in and in range; InvalidRequest names the first bad field."""
        models = catalog.image_models()
        spec = models.get(self.model)
        if spec is None:
            raise UnknownModel(self.model, "an image model", models)
        family = family_spec(spec.family)
        defaults = spec.defaults
        prompt = checked_prompt(self.prompt)
        negative = checked_text("negative_prompt", self.negative_prompt, MAX_PROMPT_CHARS)
        if negative and not family.supports_negative_prompt:
            raise InvalidRequest("negative_prompt", f"{spec.name} does not use a negative prompt; leave it empty")
        init_image = str(self.init_image) if self.init_image else None
        default_width, default_height = defaults.width, defaults.height
        if init_image is not None:
            default_width, default_height = start_image_size(init_image, spec, family)
        width, height = checked_size(self.width, self.height, (default_width, default_height), family, spec.name)
        if family.max_pixels and width * height > family.max_pixels:
            square = math.isqrt(family.max_pixels) // family.size_multiple * family.size_multiple
            raise InvalidRequest(
                "width", f"{width}×{height} is {width * height:,} pixels; {spec.name} takes at most {family.max_pixels:,} "
                f"(for example {square}×{square})"
            )
        steps = checked_steps(self.steps, defaults.steps)
        guidance = checked_guidance(self.guidance, defaults.guidance)
        seed = checked_seed(self.seed)
        batch = whole_number("batch", self.batch, 1)
        if not 1 <= batch <= MAX_BATCH:
            raise InvalidRequest("batch", f"{batch} is out of range; use 1 to {MAX_BATCH}")
        scheduler = self.scheduler or defaults.scheduler
        names = [choice.name for choice in family.schedulers]
        if scheduler not in names:
            raise InvalidRequest("scheduler", f"{scheduler!r} is not available for {spec.name}; choose one of {', '.join(names)}")
        strength = number("strength", self.strength, DEFAULT_STRENGTH)
        if not 0.0 <= strength <= 1.0:
            raise InvalidRequest("strength", f"{strength} is out of range; use 0 (keep the image) to 1 (ignore it)")
        loras = parse_lora_list(self.loras)
        weights = self.weights or None
        if weights is not None and weights not in WEIGHT_FORMATS:
            raise InvalidRequest("weights", f"{weights!r} is not a weight format; choose one of {', '.join(WEIGHT_FORMATS)}")
        cache_method, cache_threshold = check_speed(spec.family, self.speed, self.cache_method, self.cache_threshold)
        compile_choice = check_compile(self.compile, cache_method)
        weights_spec = catalog.get(spec.base) if spec.base and catalog.get(spec.base) else spec
        conditioning = check_conditioning(self, spec, weights_spec, width, height)
        hires_scale, hires_strength = _checked_hires(self.hires_scale, self.hires_strength, spec, family, width, height)
        request = replace(
            self, prompt=prompt, negative_prompt=negative, width=width, height=height, steps=steps,
            guidance=guidance, seed=seed, batch=batch, scheduler=scheduler, init_image=init_image, strength=strength,
            loras=loras, weights=weights, speed=self.speed or "off", cache_method=cache_method, cache_threshold=cache_threshold,
            compile=compile_choice, attention=check_attention(self.attention), hires_scale=hires_scale, hires_strength=hires_strength,
            **_conditioning_values(conditioning),
        )
        return ImageJob(request, spec, family, batch_seeds(resolved_seed(seed), batch), conditioning)


@dataclass(frozen=True)
class ImageJob:
    """A checked request: its values as they will run, the model's entry and its family's rules, and the seeds of
    the batch (drawn once, when the job is made, for -1)."""

    request: ImageRequest
    spec: ModelSpec
    family: FamilySpec
    seeds: tuple[int, ...]
    # ControlNets and IP-Adapter, as checked.
    conditioning: Conditioning = NO_CONDITIONING


def _conditioning_values(conditioning: Conditioning) -> dict:
    """The request's control and IP-Adapter fields as they will run (lists spelled out for every picture)."""
    controls = conditioning.controls
    return dict(
        control_images=tuple(c.path for c in controls), control_types=tuple(c.kind for c in controls),
        control_strengths=tuple(c.strength for c in controls), control_starts=tuple(c.start for c in controls),
        control_ends=tuple(c.end for c in controls), ip_adapter_images=conditioning.reference_images,
        ip_adapter_scale=conditioning.ip_scale, ip_adapter=conditioning.ip_adapter.id if conditioning.ip_adapter else None,
    )


def start_image_size(path: str, spec: ModelSpec, family: FamilySpec) -> tuple[int, int]:
    """The size made from a start image by default: its own, to the nearest sides the family takes. InvalidRequest
    naming `init_image` for a model without image to image, or a file that is no image."""
    if not family.img2img_pipeline_class:
        raise InvalidRequest("init_image", f"{spec.name} has no image-to-image mode; leave the start image empty")
    try:
        return family.fitted_size(image_size(Path(path)))
    except MediaError as error:
        raise InvalidRequest("init_image", str(error)) from None


@dataclass(frozen=True)
class ImageResult:
    outputs: list[SavedOutput]
    stopped: bool = False
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    # Set when the model renders another size than the one asked for (HiDream's fixed pixel area).
    size_note: str = ""
    # Set when this job compiled the transformer blocks: what the first run cost.
    compile_note: str = ""
    # What was done to the control pictures (resized to the job's size).
    control_note: str = ""
    # The control pictures as the ControlNets saw them (kept copies), to show beside the inputs.
    prepared_controls: list[str] = field(default_factory=list)


def _start_image(request: ImageRequest) -> Image.Image:
    with Image.open(request.init_image) as image:
        picture = image.convert("RGB")
    if picture.size != (request.width, request.height):
        picture = picture.resize((request.width, request.height), Image.Resampling.LANCZOS)
    return picture


@contextmanager
def _sampler(pipe, name: str, spec: ModelSpec):
    """Swap in the sampler for one job and put the model's own back afterwards."""
    choice = family_spec(spec.family).scheduler(name)
    original = pipe.scheduler
    if type(original).__name__ != choice.class_name:
        # The model's timestep shift is `shift` in flow-matching schedulers, `flow_shift` in the flow-sigma solvers.
        shift = original.config.get("shift", original.config.get("flow_shift", 1.0))
        overrides = {**choice.config_overrides, choice.shift_parameter: shift}
        pipe.scheduler = getattr(diffusers, choice.class_name).from_config(original.config, **overrides)
    try:
        yield
    finally:
        pipe.scheduler = original


def _for_task(pipe, spec: ModelSpec, image_to_image: bool, conditioning: Conditioning = NO_CONDITIONING):
    """The loaded pipeline, or its image-to-image or ControlNet sibling sharing the same components (nothing more in
    memory)."""
    if conditioning.controls:
        return control_pipeline(pipe, spec, conditioning)
    if not image_to_image:
        return pipe
    sibling = getattr(diffusers, family_spec(spec.family).img2img_pipeline_class).from_pipe(pipe)
    sibling.set_progress_bar_config(disable=True)
    return sibling


def _first_image(output) -> Image.Image:
    """The image of an image pipeline's output, or the first frame of a video pipeline's (Wan, one frame)."""
    images = getattr(output, "images", None)
    return images[0] if images is not None else output.frames[0][0]


def _make_image(manager, spec, workload, request, queued, kwargs, seed, loras: list[ActiveLora], conditioning=NO_CONDITIONING, prepared=()):
    """One image, from the seed's noise, with the chosen sampler, LoRAs, ControlNets, IP-Adapter, step cache and
    compiled blocks; and what the cache and the compiler did."""
    with (
        manager.use(
            spec.id, workload, on_progress=queued.report, weights=request.weights, loras=loras, attachments=conditioning.attachments,
        ) as pipe,
        _sampler(pipe, request.scheduler, spec),
        compiled_blocks(pipe, spec.family, request.compile == "on", inductor_cache_dir(manager.store.models_dir)) as compiled,
        step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
    ):
        queued.check_stop()
        denoiser = getattr(pipe, family_spec(spec.family).denoiser)
        attention = apply_attention(denoiser, request.attention, manager.preset.attention, manager.execution_device())
        runner = _for_task(pipe, spec, "image" in kwargs, conditioning)
        extra = {}
        if conditioning.controls:
            extra = control_kwargs(runner, spec, conditioning, list(prepared), request.width, request.height, seed)
        if conditioning.ip_adapter is not None:
            pipe.set_ip_adapter_scale(conditioning.ip_scale)
            pictures = reference_images(conditioning)
            # Several pictures for the one adapter are given as its list; XLabs' FLUX adapter takes one.
            extra["ip_adapter_image"] = [pictures] if conditioning.ip_adapter.several_images else pictures[0]
        # SDE samplers draw their step noise from the global generator, not the one passed in.
        torch.manual_seed(seed)
        image = _first_image(runner(**kwargs, **extra, generator=torch.Generator("cpu").manual_seed(seed)))
    return image, cache.record(), compiled, attention


def generate_image(job: ImageJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob) -> ImageResult:
    # 1. The job was checked when it was made; the LoRAs are found in the library as it is now.
    request, spec, family, seeds = job.request, job.spec, job.family, list(job.seeds)
    loras = manager.store.loras.resolve(request.loras, spec)
    started = time.monotonic()
    saved: list[SavedOutput] = []
    size_note = compile_note = ""
    queued.report(0.0, f"Loading {spec.name}")

    start_image = _start_image(request) if request.init_image else None
    conditioning = job.conditioning
    # The control pictures as the ControlNets will see them, made once for the batch and kept with the results.
    prepared = [prepare_control(control, request.width, request.height, manager.store.models_dir) for control in conditioning.controls]
    prepared_records = [_kept_picture(outputs, picture) for picture in prepared]
    control_note = " ".join(conditioning.notes)
    if control_note:
        queued.report(0.0, control_note)
    checkpoint = checkpoint_record(spec.checkpoint)
    # Image to image denoises only the last `strength` of the schedule.
    steps_run = request.steps if start_image is None else max(1, steps_from_picture(request.steps, request.strength))

    # 2. Load (or reuse) the model; the manager plans memory for this size, or refuses before anything runs.
    workload = Workload(family.denoiser_tokens(request.width, request.height), family.denoiser_batch(request.guidance))
    for index, seed in enumerate(seeds):
        label = f"Image {index + 1}/{len(seeds)}"

        def on_step_end(pipeline, step, timestep, callback_kwargs, _label=label, _index=index):
            queued.check_stop()
            queued.report((_index + (step + 1) / steps_run) / len(seeds), f"{_label} · step {step + 1}/{steps_run}")
            return callback_kwargs

        # 3-4. Denoise and decode. Noise comes from a CPU generator so a seed gives the same image
        # whatever the device and placement.
        image_started = time.monotonic()
        kwargs = dict(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            callback_on_step_end=on_step_end,
            **family.call_kwargs,
        )
        if family.supports_negative_prompt:
            kwargs["negative_prompt"] = request.negative_prompt or None
        if start_image is not None:
            kwargs.update(image=start_image, strength=request.strength)
        try:
            if start_image is not None and request.strength == 0.0:
                image = start_image.copy()  # nothing to repaint: the input is the result
                cache_record = {"method": "none", "threshold": 0.0, "denoiser_calls": 0, "calls_skipped": 0}
                compiled, attention = CompileReport(enabled=False), None
            else:
                image, cache_record, compiled, attention = with_one_retry(
                    queued, lambda: _make_image(manager, spec, workload, request, queued, kwargs, seed, loras, conditioning, prepared)
                )
            first_size = image.size
            # 4b. Hires fix (optional): enlarged, then repainted at a low strength, in this job.
            image, hires_record = _hires_fix(manager, job, queued, image, seed, loras, label) if request.hires_scale > 1 else (image, None)
        except JobStopped:
            log.info("stopped after %d of %d images", len(saved), len(seeds))
            return ImageResult(saved, stopped=True, seconds=time.monotonic() - started, seeds=seeds[: len(saved)])

        # 5. Save with everything needed to reproduce it.
        parameters = {
            **{
                key: value for key, value in asdict(request).items()
                if key not in (
                    "seed", "batch", "init_image", "strength", "loras", "weights", "cache_method", "cache_threshold", "control_images",
                    "ip_adapter_images",
                )
            },
            # The control and reference pictures kept by content, what the ControlNets saw, and which models ran.
            **conditioning_record(conditioning, outputs, prepared_records),
            "init_image": outputs.keep_input(request.init_image) if start_image else None,
            "strength": request.strength if start_image else None,
            "seed": seed,
            "batch_index": index,
            "model_name": spec.name,
            "repo": spec.repo or (manager.store.catalog.spec(spec.base).repo if spec.base else None),
            "checkpoint": checkpoint,
            "weights": request.weights or manager.preset.weights,
            # The step cache that ran and how many denoiser calls it skipped.
            "step_cache": cache_record,
            # Whether the blocks ran compiled, and what compiling cost in this job (0 graphs: reused).
            "compiled_blocks": compiled.record(),
            # The attention backend the denoiser ran with (PyTorch's where the model takes no other).
            "attention": attention,
            # The checkpoint's identity: the model (and its repo), and the step-distillation LoRA fused into it.
            "lora": {**asdict(spec.lora), "sha256": file_digest(manager.store.lora_path(spec))} if spec.lora else None,
            "loras": [lora.record() for lora in loras],
            "demo": spec.demo,
            **run_record(manager, image_started),
        }
        # The size made is the one recorded; what was asked stays beside it. With the hires fix, width and height are
        # the first pass's (what Reuse settings gives back) and `hires` holds the file's size.
        parameters.update(width=first_size[0], height=first_size[1], requested_size=[request.width, request.height])
        parameters["hires"] = hires_record
        saved.append(outputs.save_image(image, parameters))
        if compiled.note():
            compile_note = compiled.note()
            queued.report((index + 1) / len(seeds), compile_note)
        if first_size != (request.width, request.height):
            size_note = _size_note(spec, family, request, first_size)
            queued.report((index + 1) / len(seeds), size_note)
    queued.report(1.0, "Done")
    return ImageResult(
        saved, seconds=time.monotonic() - started, seeds=seeds, size_note=size_note, compile_note=compile_note, control_note=control_note,
        prepared_controls=[str(outputs.kept_input(entry)) for entry in prepared_records],
    )


def _kept_picture(outputs: OutputStore, picture: Image.Image) -> dict:
    """A prepared control picture kept by content in the outputs folder, as an input is."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prepared-control.png"
        picture.save(path, format="PNG")
        return outputs.keep_input(path)


def _size_note(spec: ModelSpec, family: FamilySpec, request: ImageRequest, made: tuple[int, int]) -> str:
    note = f"Asked for {request.width}×{request.height}, made {made[0]}×{made[1]}"
    area = family.fixed_pixel_area
    if area:
        side = math.isqrt(area)
        note += f": {spec.name} always renders the pixel area of {side}×{side}, keeping the aspect ratio"
    return note + "."


def _checked_hires(scale, strength, spec: ModelSpec, family: FamilySpec, width: int, height: int) -> tuple[float, float]:
    """The hires fix's scale and strength, in range and usable with this model at this size; InvalidRequest names the
    field otherwise."""
    scale = number("hires_scale", scale, 1.0)
    strength = number("hires_strength", strength, DEFAULT_HIRES_STRENGTH)
    if not 1.0 <= scale <= MAX_HIRES_SCALE:
        raise InvalidRequest("hires_scale", f"{scale:g} is out of range; use 1 (off) to {MAX_HIRES_SCALE:g}")
    if not 0.0 <= strength <= 1.0:
        raise InvalidRequest("hires_strength", f"{strength:g} is out of range; use 0 (only enlarge) to 1 (repaint all)")
    if scale == 1.0:
        return scale, strength
    if not family.img2img_pipeline_class or family.fixed_pixel_area:
        why = "has no image-to-image mode" if not family.img2img_pipeline_class else "always renders the same pixel area"
        raise InvalidRequest("hires_scale", f"{spec.name} {why}, so it has no hires fix; use 1")
    big_width, big_height = hires_size(family, width, height, scale)
    too_big = max(round(width * scale), round(height * scale)) > family.max_size
    if too_big or (family.max_pixels and big_width * big_height > family.max_pixels):
        raise InvalidRequest(
            "hires_scale", f"{width}×{height} at ×{scale:g} is more than {spec.name} makes (sides up to {family.max_size}"
            + (f", {family.max_pixels:,} pixels" if family.max_pixels else "") + "); use a smaller scale"
        )
    return scale, strength


def hires_size(family: FamilySpec, width: int, height: int, scale: float) -> tuple[int, int]:
    """The second pass's size: `scale` × the first's, to the nearest sides the family makes."""
    return family.nearest_size(width * scale), family.nearest_size(height * scale)


def _hires_fix(manager, job: ImageJob, queued: QueuedJob, image: Image.Image, seed: int, loras, label: str) -> tuple[Image.Image, dict]:
    """Hires fix, in the same job: the first image enlarged (Lanczos: the second pass repaints the detail, and a plain
    resize keeps the result the same on every machine whatever upscalers it has), then image to image with the same
    model, prompt and seed at `hires_strength`. Returns the image and its record."""
    request, spec, family = job.request, job.spec, job.family
    size = hires_size(family, image.width, image.height, request.hires_scale)
    enlarged = image.resize(size, Image.Resampling.LANCZOS)
    if request.hires_strength == 0.0:
        return enlarged, {"size": list(size), "upscaler": "lanczos", "steps_run": 0}
    steps_run = max(1, steps_from_picture(request.steps, request.hires_strength))

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        queued.check_stop()
        queued.report(min(0.99, (step + 1) / steps_run), f"{label} · hires fix {size[0]}×{size[1]} · step {step + 1}/{steps_run}")
        return callback_kwargs

    kwargs = dict(
        prompt=request.prompt, width=size[0], height=size[1], num_inference_steps=request.steps, guidance_scale=request.guidance,
        callback_on_step_end=on_step_end, image=enlarged, strength=request.hires_strength, **family.call_kwargs,
    )
    if family.supports_negative_prompt:
        kwargs["negative_prompt"] = request.negative_prompt or None
    workload = Workload(family.denoiser_tokens(*size), family.denoiser_batch(request.guidance))
    made, *_ = with_one_retry(queued, lambda: _make_image(manager, spec, workload, request, queued, kwargs, seed, loras))
    return made, {"size": list(made.size), "upscaler": "lanczos", "steps_run": steps_run}
