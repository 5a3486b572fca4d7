"""Editing an image: by instruction (OmniGen), by repainting a masked area (inpaint) or by growing the canvas and
filling the new area (outpaint); one job in, one saved PNG out.

    1. the checked job (`EditRequest.check` makes it once)   2. read the images, build the mask and canvas
    3. load (manager.use)   4. denoise (Stop and progress between steps), decode   5. back to the canvas size, the
    original kept outside the mask   6. save

Modes are data (`pipelines/image/edit_modes.py`), which also checks what every mode takes the same way. The FLUX.1 tools'
modes (Canny, Depth, Redux variation) are run by `pipelines/image/flux_tools_runner.py`: the Edit tab sends them there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

import diffusers
import torch
from PIL import Image

from pipelines.catalog import Catalog, EditDefaults, FamilySpec, ModelSpec
from pipelines.image.edit_modes import SIDES, EditMode, MaskSource, ModeInputs, check_mode_inputs, checked_mode
from pipelines.errors import InvalidRequest, JobStopped
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.manager import ModelManager
from pipelines.image.masks import Extension, extended_canvas, feathered, keep_unmasked, read_mask
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import (
    checked_guidance, checked_seed, checked_size, checked_steps, in_range, resolved_seed, steps_from_picture,
)
from pipelines.speed.step_cache import check_speed, step_cache
from presets import Preset

log = logging.getLogger(__name__)

# FLUX.1 Fill runs at guidance 30 by default and takes more; the image models' 30 would refuse its range.
MAX_EDIT_GUIDANCE = 50.0
LIMITS = {"image_guidance": (0.0, 10.0), "feather": (0.0, 256.0), "strength": (0.0, 1.0)}
OUTPUT_KIND = "edit"


@dataclass(frozen=True)
class EditRequest:
    """Inputs as a person or a script gave them; `None` means the model's default."""

    instruction: str
    model: str
    mode: str = "instruction"
    # Input image files; the instruction refers to image N as <img><|image_N|></img>.
    images: tuple = ()
    # A mask file (white = repaint), for Inpaint.
    mask: str | None = None
    steps: int | None = None
    guidance: float | None = None
    image_guidance: float | None = None
    seed: int = -1
    width: int | None = None
    height: int | None = None
    # Outpaint: pixels added on each side (rounded up to the model's size multiple).
    outpaint_left: int = 0
    outpaint_right: int = 0
    outpaint_top: int = 0
    outpaint_bottom: int = 0
    # Mask edge softening, as a Gaussian blur radius in pixels.
    feather: float = 0.0
    # Paste the original back wherever the (feathered) mask is black.
    keep_unmasked: bool = True
    # Inpaint/Outpaint: how much of the masked area is repainted, as the share of the schedule run from the picture
    # noised (1, the default: painted anew; lower keeps more of what is there). None means 1.
    strength: float | None = None
    # The FLUX.1 tools' values, which /edit_image takes in every mode: recorded as given, used by the tools runner.
    canny_low: int | None = None
    canny_high: int | None = None
    depth_map: str | None = None
    # Speed: "off", "balanced" or "fast" (the family's step cache from the catalog); `cache_method` and
    # `cache_threshold` override the level's choice.
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None

    def check(self, catalog: Catalog, preset: Preset | None = None) -> "EditJob":
        """The job this request asks for, every value filled in and in range; InvalidRequest names the first bad field.
        `preset` (the manager's) sets how big OmniGen's input images may be; without one, the model's own 1024."""
        mode = checked_mode(self.mode)
        if mode.flux_tool:
            raise InvalidRequest("mode", f"{mode.label} is a FLUX.1 tool; the FLUX.1 tools runner takes it as a ToolRequest")
        sides = {side: getattr(self, f"outpaint_{side}") for side in SIDES}
        inputs = check_mode_inputs(mode, self.model, catalog, self.images, self.instruction, self.mask, sides)
        spec, family, notes = inputs.spec, inputs.family, list(inputs.notes)
        max_input_side = _max_input_side(family, preset)
        width, height = self._size(inputs, max_input_side, notes)
        defaults = spec.defaults
        image_guidance_default = defaults.image_guidance if isinstance(defaults, EditDefaults) else 0.0
        seed = checked_seed(self.seed)
        speed = self.speed or "off"
        cache_method, cache_threshold = check_speed(spec.family, speed, self.cache_method, self.cache_threshold)
        # A level asked of a family without a step cache (SD3, OmniGen) runs uncached, and says so.
        if speed != "off" and cache_method == "none":
            notes.append(f"Speed {speed}: {spec.name} has no step cache; it ran uncached.")
        steps = checked_steps(self.steps, defaults.steps)
        extension = inputs.extension
        request = replace(
            self, instruction=inputs.instruction, mode=mode.name, images=inputs.images, mask=inputs.mask, seed=seed, width=width,
            height=height, steps=steps, strength=_checked_strength(self.strength, mode, steps),
            guidance=checked_guidance(self.guidance, float(defaults.guidance), MAX_EDIT_GUIDANCE),
            image_guidance=in_range("image_guidance", self.image_guidance, float(image_guidance_default), LIMITS["image_guidance"]),
            outpaint_left=extension.left, outpaint_right=extension.right, outpaint_top=extension.top, outpaint_bottom=extension.bottom,
            feather=in_range("feather", self.feather, 0.0, LIMITS["feather"]), keep_unmasked=bool(self.keep_unmasked), speed=speed,
            cache_method=cache_method, cache_threshold=cache_threshold,
        )
        return EditJob(request, spec, family, mode, resolved_seed(seed), inputs.image_sizes, inputs.mask_size, max_input_side, tuple(notes))

    def _size(self, inputs: ModeInputs, max_input_side: int, notes: list[str]) -> tuple[int | None, int | None]:
        """The output size: the user's, else the first input's (as the model will see it), else the model's default.
        Fill modes keep the image's size (grown by the outpaint sides)."""
        mode, spec, family = inputs.mode, inputs.spec, inputs.family
        if not mode.takes_size:
            if self.width not in (None, "") or self.height not in (None, ""):
                raise InvalidRequest("width", f"{mode.label} keeps the image's size; leave width and height empty")
            return None, None
        default = (spec.defaults.width, spec.defaults.height)
        if inputs.images:
            default = _model_input_size(inputs.image_sizes[0], max_input_side, family)
            if self.width in (None, "") and self.height in (None, ""):
                notes.append(
                    f"Output size {default[0]}×{default[1]}: the first image's size, in multiples of {family.size_multiple} px "
                    f"and at most {max_input_side} px a side."
                )
        width, height = checked_size(self.width, self.height, default, family, spec.name)
        return width, height

    @property
    def extension(self) -> Extension:
        return Extension(self.outpaint_left, self.outpaint_right, self.outpaint_top, self.outpaint_bottom)


@dataclass(frozen=True)
class EditJob:
    """A checked request: its values as they will run, the model's entry and its family's rules, the mode, the seed
    drawn for -1, the input images' and the mask's sizes (read once), the longest side OmniGen's inputs are scaled to
    (from the preset; 0 for the fill models) and what was decided for the user (said with the result)."""

    request: EditRequest
    spec: ModelSpec
    family: FamilySpec
    mode: EditMode
    seed: int
    image_sizes: tuple[tuple[int, int], ...]
    mask_size: tuple[int, int] | None
    max_input_side: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class EditResult:
    output: SavedOutput | None
    stopped: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    # FLUX.1 Canny and Depth: the edges or depth the model followed, to show beside the input.
    control_image: Image.Image | None = None


def _checked_strength(strength, mode: EditMode, steps: int) -> float | None:
    """The fill modes' strength (1 when not given); None in the other modes, which have none. At least one step must run."""
    if mode.mask is MaskSource.NONE:
        return None
    strength = in_range("strength", strength, 1.0, LIMITS["strength"])
    if steps_from_picture(steps, strength) < 1:
        raise InvalidRequest("strength", "0 repaints nothing; use more than 0 (1 paints the area anew)")
    return strength


def _max_input_side(family: FamilySpec, preset: Preset | None) -> int:
    rules = family.instruction
    if rules is None:
        return 0
    if preset is None:
        return rules.cpu_input_side
    return rules.max_input_side(preset.device, preset.vram_budget_gb)


def _model_input_size(size: tuple[int, int], max_side: int, family: FamilySpec) -> tuple[int, int]:
    """An input image's size as OmniGen's processor makes it: scaled down to `max_side`, then cropped to multiples of 16."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    multiple = family.size_multiple
    return tuple(max(round(side * scale) // multiple * multiple, family.min_size) for side in (width, height))


def _run_size(canvas: tuple[int, int], family: FamilySpec) -> tuple[int, int]:
    """The size the model runs a canvas at: the canvas's aspect ratio, scaled into the family's bounds when it is
    outside them, in multiples of its size step. The result is scaled back to the canvas."""
    width, height = canvas
    scale = 1.0
    if max(width, height) > family.max_size:
        scale = family.max_size / max(width, height)
    elif min(width, height) < family.min_size:
        scale = family.min_size / min(width, height)
    multiple = family.size_multiple
    return tuple(min(max(round(side * scale / multiple) * multiple, family.min_size), family.max_size) for side in canvas)


def _opened(path: str, mode: str = "RGB") -> Image.Image:
    with Image.open(path) as picture:
        return picture.convert(mode)


def _workload(job: EditJob, run_size: tuple[int, int]) -> Workload:
    """Tokens the denoiser sees: OmniGen's sequence holds the instruction, every input image (as scaled for the
    model) and the output, in three guidance passes with images (two without); a fill model's holds the output and
    the prompt."""
    family = job.family
    if family.instruction is None:
        return Workload(family.denoiser_tokens(*run_size), family.denoiser_batch(job.request.guidance))
    input_sizes = [_model_input_size(size, job.max_input_side, family) for size in job.image_sizes]
    tokens = family.denoiser_tokens(*run_size) + sum(width // 16 * (height // 16) for width, height in input_sizes)
    return Workload(tokens, 3 if job.image_sizes else 2)


def _call_arguments(job: EditJob, pictures: list[Image.Image], canvas, mask, run_size) -> dict:
    """The pipeline's keyword arguments for this mode, beside the shared ones."""
    request = job.request
    if job.family.instruction is not None:
        return dict(
            input_images=pictures or None, img_guidance_scale=request.image_guidance,
            max_input_image_size=job.max_input_side,
            # We pass the size ourselves (the first input's by default), so the pipeline's switch stays off.
            use_input_image_size_as_output=False,
        )
    return dict(image=canvas.resize(run_size, Image.Resampling.LANCZOS), mask_image=mask.resize(run_size), strength=request.strength)


def _pipeline_for(pipe, job: EditJob):
    """The loaded pipeline, or (for a text-to-image model) its sibling for this mode, sharing the same components."""
    if job.spec.task is job.mode.task:
        return pipe
    sibling = getattr(diffusers, getattr(job.family, job.mode.family_pipeline)).from_pipe(pipe)
    sibling.set_progress_bar_config(disable=True)
    return sibling


def edit_image(job: EditJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob) -> EditResult:
    # 1. The job was checked when it was made.
    request, spec, family, mode, seed = job.request, job.spec, job.family, job.mode, job.seed
    started = time.monotonic()
    notes = list(job.notes)
    queued.report(0.0, f"Loading {spec.name}")

    # 2. The input images; for the fill modes the canvas (grown for outpaint) and the mask of what to repaint.
    pictures = [_opened(path) for path in request.images]
    canvas = mask = None
    if mode.mask is MaskSource.GIVEN:
        canvas, mask = pictures[0], read_mask(request.mask)
    elif mode.mask is MaskSource.CANVAS:
        canvas, mask = extended_canvas(pictures[0], request.extension)
    if mask is not None:
        mask = feathered(mask, request.feather)
        run_size = _run_size(canvas.size, family)
        if run_size != canvas.size:
            notes.append(f"Run at {run_size[0]}×{run_size[1]} (multiples of {family.size_multiple} px) and scaled back to {canvas.width}×{canvas.height}.")
    else:
        run_size = (request.width, request.height)

    # A fill below strength 1 runs only the last `steps × strength` of the schedule.
    steps_run = steps_from_picture(request.steps, request.strength) if request.strength is not None else request.steps

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        queued.check_stop()
        queued.report((step + 1) / steps_run, f"Step {step + 1}/{steps_run}")
        return callback_kwargs

    # 3-4. Load (or reuse) the model and denoise. Noise comes from a CPU generator so a seed gives the same image
    # whatever the device and placement.
    workload = _workload(job, run_size)
    kwargs = dict(
        prompt=request.instruction, width=run_size[0], height=run_size[1], num_inference_steps=request.steps,
        guidance_scale=request.guidance, callback_on_step_end=on_step_end,
        **_call_arguments(job, pictures, canvas, mask, run_size),
    )

    def attempt() -> tuple[Image.Image, dict]:
        with (
            manager.use(spec.id, workload, on_progress=queued.report) as pipe,
            step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
        ):
            queued.check_stop()
            runner = _pipeline_for(pipe, job)
            return runner(**kwargs, generator=torch.Generator("cpu").manual_seed(seed)).images[0], cache.record()

    try:
        image, cache_record = with_one_retry(queued, attempt)
    except JobStopped:
        log.info("edit stopped")
        return EditResult(None, stopped=True, seconds=time.monotonic() - started, notes=tuple(notes))

    # 5. Back to the canvas's size; the original outside the mask when asked.
    if canvas is not None:
        if image.size != canvas.size:
            image = image.resize(canvas.size, Image.Resampling.LANCZOS)
        if request.keep_unmasked:
            image = keep_unmasked(image, canvas, mask)

    # 6. Save with everything needed to reproduce it, and which inputs it was made from.
    parameters = {
        **{
            key: value for key, value in asdict(request).items()
            if key not in ("images", "mask", "cache_method", "cache_threshold")
        },
        "prompt": request.instruction,
        "images": [_file_record(path, size, outputs) for path, size in zip(request.images, job.image_sizes)],
        "mask": _file_record(request.mask, job.mask_size, outputs) if request.mask else None,
        "max_input_image_size": job.max_input_side or None,
        # The step cache that ran and how many denoiser calls it skipped.
        "step_cache": cache_record,
        "seed": seed,
        "width": image.width,
        "height": image.height,
        "model_name": spec.name,
        "repo": spec.repo,
        "demo": spec.demo,
        "notes": notes,
        **run_record(manager, started),
    }
    saved = outputs.save_image(image, parameters, kind=OUTPUT_KIND)
    queued.report(1.0, "Done")
    return EditResult(saved, seconds=time.monotonic() - started, notes=tuple(notes))


def _file_record(path: str, size: tuple[int, int], outputs: OutputStore) -> dict:
    return {**outputs.keep_input(path), "size": list(size)}
