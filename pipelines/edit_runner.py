"""Editing an image: by instruction (OmniGen), by repainting a masked area (inpaint) or by growing the canvas and
filling the new area (outpaint); one request in, one saved PNG out.

    1. check the request   2. read the images, build the mask and canvas   3. load (manager.use)
    4. denoise (Stop and progress between steps), decode   5. back to the canvas size, the original kept outside
    the mask   6. save

Modes are data (`pipelines/edit_modes.py`). The FLUX.1 tools' modes (Canny, Depth, Redux variation) are checked here
like the others and run by `pipelines/flux_tools_runner.py`.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import diffusers
import torch
from PIL import Image

from pipelines.catalog import EditDefaults, FamilySpec, ModelSpec, family_spec, model_spec
from pipelines.edit_modes import EDIT_MODES, EditMode, MaskSource, edit_models
from pipelines.errors import InvalidRequest, JobStopped
from pipelines.flux_tools_runner import MODES as TOOL_MODES
from pipelines.flux_tools_runner import ToolRequest, run_flux_tool
from pipelines.flux_tools_runner import size_note as tool_size_note
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.manager import ModelManager
from pipelines.masks import Extension, extended_canvas, feathered, keep_unmasked, read_mask
from pipelines.media import MediaError, image_size
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import in_range, steps_from_picture, whole_number
from pipelines.step_cache import check_speed, step_cache
from presets import Preset

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
MAX_INSTRUCTION_CHARS = 10_000
LIMITS = {
    "steps": (1, 200), "guidance": (0.0, 50.0), "image_guidance": (0.0, 10.0), "feather": (0.0, 256.0), "outpaint": (0, 2048),
    "strength": (0.0, 1.0),
}
OUTPUT_KIND = "edit"
# OmniGen's placeholder for input image N; the bare `<|image_N|>` is read as the same.
PLACEHOLDER = "<img><|image_{}|></img>"
_PLACEHOLDER_PATTERN = re.compile(r"(?:<img>)?<\|image_(\d+)\|>(?:</img>)?")


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
    # What check() decided for the user (placeholders appended, sizes rounded), said with the result.
    notes: tuple[str, ...] = ()
    # Longest side input images are scaled to, from the preset (OmniGen's `max_input_image_size`); set by check().
    max_input_side: int = 0
    # FLUX.1 tools: Canny's thresholds (None: 50 and 200), and a depth map for Depth (else estimated from Image 1).
    canny_low: int | None = None
    canny_high: int | None = None
    depth_map: str | None = None
    # Speed: "off", "balanced" or "fast" (the family's step cache from the catalog); `cache_method` and
    # `cache_threshold` override the level's choice.
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None

    def tool_request(self) -> ToolRequest:
        """The request as the FLUX.1 tools runner takes it (the instruction is its prompt, Image 1 its picture)."""
        return ToolRequest(
            model=self.model, image=self.images[0] if self.images else None, prompt=self.instruction, width=self.width,
            height=self.height, steps=self.steps, guidance=self.guidance, seed=self.seed, canny_low=self.canny_low,
            canny_high=self.canny_high, depth_map=self.depth_map or None, speed=self.speed, cache_method=self.cache_method,
            cache_threshold=self.cache_threshold,
        )

    def check(self, preset: Preset | None = None) -> "EditRequest":
        """A copy with defaults filled in and types normalised; InvalidRequest names the first bad field. `preset`
        (the manager's) sets how big OmniGen's input images may be; without one, the model's own 1024."""
        mode = EDIT_MODES.get(str(self.mode or "instruction"))
        if mode is None:
            raise InvalidRequest("mode", f"{self.mode!r} is not an edit mode; choose one of {', '.join(EDIT_MODES)}")
        models = edit_models(mode.name)
        spec = models.get(self.model)
        if spec is None:
            raise InvalidRequest("model", f"{self.model!r} is not a model for {mode.label}; choose one of {', '.join(models)}")
        family = family_spec(spec.family)
        # A checked request checks again to the same values; what the first check said stays said.
        notes: list[str] = list(self.notes)
        images = _checked_images(self.images, mode, spec)
        instruction = (self.instruction or "").strip()
        if mode.needs_instruction and not instruction:
            raise InvalidRequest("instruction", "must not be empty; say what to make or change")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise InvalidRequest("instruction", f"has {len(instruction)} characters; at most {MAX_INSTRUCTION_CHARS} are accepted")
        if family.instruction is not None:
            instruction, appended = _with_placeholders(instruction, len(images))
            if appended:
                notes.append(f"Placeholders for image {', '.join(map(str, appended))} were added at the end of the instruction.")
        mask = _checked_mask(self.mask, mode, images)
        extension = Extension(*(
            in_range(f"outpaint_{side}", getattr(self, f"outpaint_{side}"), 0, LIMITS["outpaint"])
            for side in ("left", "right", "top", "bottom")
        ))
        if mode.mask is MaskSource.CANVAS:
            if not extension.any:
                raise InvalidRequest("outpaint_left", "Outpaint needs at least one side to extend by more than 0 px")
            rounded = extension.rounded_up(family.size_multiple)
            if rounded != extension:
                notes.append(f"Each side was extended by a multiple of {family.size_multiple} px, as {spec.name} needs: {_sides(rounded)}.")
            extension = rounded
        elif extension.any:
            raise InvalidRequest("outpaint_left", f"only Outpaint extends the canvas; leave the sides at 0 in {mode.label}")
        if mode.task in TOOL_MODES:
            # The FLUX.1 tools check their own size, steps, guidance, thresholds and depth map.
            tool = replace(self, instruction=instruction, images=tuple(images)).tool_request().check()
            if self.width in (None, "") or self.height in (None, ""):
                notes.append(tool_size_note(tool, spec))
            return replace(
                self, instruction=tool.prompt, mode=mode.name, images=tuple(images), width=tool.width, height=tool.height,
                steps=tool.steps, guidance=tool.guidance, seed=tool.seed, canny_low=tool.canny_low, canny_high=tool.canny_high,
                depth_map=tool.depth_map, image_guidance=None, feather=0.0, strength=None, notes=tuple(notes), speed=tool.speed,
                cache_method=tool.cache_method, cache_threshold=tool.cache_threshold,
            )
        max_input_side = _max_input_side(family, preset)
        width, height = self._size(mode, spec, images, max_input_side, notes)
        defaults = spec.defaults
        image_guidance_default = defaults.image_guidance if isinstance(defaults, EditDefaults) else 0.0
        seed = whole_number("seed", self.seed, -1)
        if not -1 <= seed <= MAX_SEED:
            raise InvalidRequest("seed", f"{seed} is out of range; use -1 (random) or 0 to {MAX_SEED}")
        speed = self.speed or "off"
        cache_method, cache_threshold = check_speed(spec.family, speed, self.cache_method, self.cache_threshold)
        # A level asked of a family without a step cache (SD3, OmniGen) runs uncached, and says so.
        no_cache_note = f"Speed {speed}: {spec.name} has no step cache; it ran uncached."
        if speed != "off" and cache_method == "none" and no_cache_note not in notes:
            notes.append(no_cache_note)
        steps = in_range("steps", self.steps, defaults.steps, LIMITS["steps"])
        return replace(
            self, instruction=instruction, mode=mode.name, images=tuple(images), mask=mask, seed=seed, width=width, height=height,
            steps=steps, strength=_checked_strength(self.strength, mode, steps),
            guidance=in_range("guidance", self.guidance, float(defaults.guidance), LIMITS["guidance"]),
            image_guidance=in_range("image_guidance", self.image_guidance, float(image_guidance_default), LIMITS["image_guidance"]),
            outpaint_left=extension.left, outpaint_right=extension.right, outpaint_top=extension.top, outpaint_bottom=extension.bottom,
            feather=in_range("feather", self.feather, 0.0, LIMITS["feather"]), keep_unmasked=bool(self.keep_unmasked),
            notes=tuple(notes), max_input_side=max_input_side, speed=speed, cache_method=cache_method,
            cache_threshold=cache_threshold,
        )

    def _size(self, mode: EditMode, spec: ModelSpec, images: list[str], max_input_side: int, notes: list[str]) -> tuple[int, int]:
        """The output size: the user's, else the first input's (as the model will see it), else the model's default.
        Fill modes keep the image's size (grown by the outpaint sides)."""
        family = family_spec(spec.family)
        if not mode.takes_size:
            if self.width not in (None, "") or self.height not in (None, ""):
                raise InvalidRequest("width", f"{mode.label} keeps the image's size; leave width and height empty")
            return None, None
        default = (spec.defaults.width, spec.defaults.height)
        if images:
            default = _model_input_size(image_size(Path(images[0])), max_input_side, family)
            if self.width in (None, "") and self.height in (None, ""):
                notes.append(
                    f"Output size {default[0]}×{default[1]}: the first image's size, in multiples of {family.size_multiple} px "
                    f"and at most {max_input_side} px a side."
                )
        width = whole_number("width", self.width, default[0])
        height = whole_number("height", self.height, default[1])
        for name, value in (("width", width), ("height", height)):
            if not (family.min_size <= value <= family.max_size and value % family.size_multiple == 0):
                raise InvalidRequest(
                    name, f"{value} is not accepted by {spec.name}; use a multiple of {family.size_multiple} from "
                    f"{family.min_size} to {family.max_size}"
                )
        return width, height

    @property
    def extension(self) -> Extension:
        return Extension(self.outpaint_left, self.outpaint_right, self.outpaint_top, self.outpaint_bottom)


@dataclass(frozen=True)
class EditResult:
    output: SavedOutput | None
    stopped: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    # FLUX.1 Canny and Depth: the edges or depth the model followed, to show beside the input.
    control_image: Image.Image | None = None


def _checked_images(given, mode: EditMode, spec: ModelSpec) -> list[str]:
    if isinstance(given, (str, Path)):
        given = [given]
    images = [str(path) for path in (given or ()) if path]
    rules = family_spec(spec.family).instruction
    most = min(mode.max_images, rules.max_input_images) if rules else mode.max_images
    if len(images) > most:
        raise InvalidRequest("images", f"{len(images)} images were given; {spec.name} takes at most {most} in {mode.label}")
    if len(images) < mode.min_images:
        raise InvalidRequest("images", f"{mode.label} needs an input image")
    for number_, path in enumerate(images, start=1):
        try:
            image_size(Path(path))
        except (MediaError, OSError) as error:
            raise InvalidRequest("images", f"image {number_}: {error}") from None
    return images


def _with_placeholders(instruction: str, image_count: int) -> tuple[str, list[int]]:
    """The instruction with every placeholder in OmniGen's full form and one appended for each image it did not
    mention; and the numbers of those appended. InvalidRequest for a placeholder of an image not given."""
    referred = [int(match) for match in _PLACEHOLDER_PATTERN.findall(instruction)]
    for number_ in referred:
        if not 1 <= number_ <= image_count:
            given = f"only {image_count} image{'s were' if image_count != 1 else ' was'} given" if image_count else "no image was given"
            raise InvalidRequest(
                "instruction", f"{PLACEHOLDER.format(number_)} refers to image {number_}, but {given}; "
                "add the image or remove the placeholder"
            )
    instruction = _PLACEHOLDER_PATTERN.sub(lambda match: PLACEHOLDER.format(match.group(1)), instruction)
    missing = [number_ for number_ in range(1, image_count + 1) if number_ not in referred]
    if missing:
        instruction = " ".join([instruction, *(PLACEHOLDER.format(number_) for number_ in missing)]).strip()
    return instruction, missing


def _checked_strength(strength, mode: EditMode, steps: int) -> float | None:
    """The fill modes' strength (1 when not given); None in the other modes, which have none. At least one step must run."""
    if mode.mask is MaskSource.NONE:
        return None
    strength = in_range("strength", strength, 1.0, LIMITS["strength"])
    if steps_from_picture(steps, strength) < 1:
        raise InvalidRequest("strength", "0 repaints nothing; use more than 0 (1 paints the area anew)")
    return strength


def _checked_mask(mask, mode: EditMode, images: list[str]) -> str | None:
    mask = str(mask) if mask else None
    if mode.mask is not MaskSource.GIVEN:
        if mask:
            raise InvalidRequest("mask", f"{mode.label} takes no mask; leave it empty")
        return None
    if mask is None:
        raise InvalidRequest("mask", "Inpaint needs a mask: paint over the area to repaint, or upload a mask (white = repaint)")
    try:
        mask_size = image_size(Path(mask))
    except (MediaError, OSError) as error:
        raise InvalidRequest("mask", str(error)) from None
    picture_size = image_size(Path(images[0]))
    if mask_size != picture_size:
        raise InvalidRequest(
            "mask", f"is {mask_size[0]}×{mask_size[1]} but the image is {picture_size[0]}×{picture_size[1]}; "
            "a mask must have the image's size"
        )
    if read_mask(mask).getextrema()[1] == 0:
        raise InvalidRequest("mask", "is empty (all black); paint the area to repaint in white")
    return mask


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


def _sides(extension: Extension) -> str:
    return ", ".join(f"{name} {value} px" for name, value in asdict(extension).items() if value)


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


def _workload(spec: ModelSpec, request: EditRequest, run_size: tuple[int, int], pictures: list[Image.Image]) -> Workload:
    """Tokens the denoiser sees: OmniGen's sequence holds the instruction, every input image (as scaled for the
    model) and the output, in three guidance passes with images (two without); a fill model's holds the output and
    the prompt."""
    family = family_spec(spec.family)
    if family.instruction is None:
        return Workload(family.denoiser_tokens(*run_size), family.denoiser_batch(request.guidance))
    input_sizes = [_model_input_size(picture.size, request.max_input_side, family) for picture in pictures]
    tokens = family.denoiser_tokens(*run_size) + sum(width // 16 * (height // 16) for width, height in input_sizes)
    return Workload(tokens, 3 if pictures else 2)


def _call_arguments(spec: ModelSpec, request: EditRequest, pictures: list[Image.Image], canvas, mask, run_size) -> dict:
    """The pipeline's keyword arguments for this mode, beside the shared ones."""
    if family_spec(spec.family).instruction is not None:
        return dict(
            input_images=pictures or None, img_guidance_scale=request.image_guidance,
            max_input_image_size=request.max_input_side,
            # We pass the size ourselves (the first input's by default), so the pipeline's switch stays off.
            use_input_image_size_as_output=False,
        )
    return dict(image=canvas.resize(run_size, Image.Resampling.LANCZOS), mask_image=mask.resize(run_size), strength=request.strength)


def _pipeline_for(pipe, spec: ModelSpec, mode: EditMode):
    """The loaded pipeline, or (for a text-to-image model) its sibling for this mode, sharing the same components."""
    if spec.task is mode.task:
        return pipe
    sibling = getattr(diffusers, getattr(family_spec(spec.family), mode.family_pipeline)).from_pipe(pipe)
    sibling.set_progress_bar_config(disable=True)
    return sibling


def edit_image(request: EditRequest, manager: ModelManager, outputs: OutputStore, job: QueuedJob) -> EditResult:
    # 1. Check before anything loads.
    request = request.check(manager.preset)
    spec = model_spec(request.model)
    family = family_spec(spec.family)
    mode = EDIT_MODES[request.mode]
    if mode.task in TOOL_MODES:
        made = run_flux_tool(request.tool_request(), manager, outputs, job)
        return EditResult(made.output, stopped=made.stopped, seconds=made.seconds, notes=request.notes, control_image=made.control_image)
    seed = request.seed if request.seed >= 0 else random.randint(0, MAX_SEED)
    started = time.monotonic()
    notes = list(request.notes)
    job.report(0.0, f"Loading {spec.name}")

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
        job.check_stop()
        job.report((step + 1) / steps_run, f"Step {step + 1}/{steps_run}")
        return callback_kwargs

    # 3-4. Load (or reuse) the model and denoise. Noise comes from a CPU generator so a seed gives the same image
    # whatever the device and placement.
    workload = _workload(spec, request, run_size, pictures)
    kwargs = dict(
        prompt=request.instruction, width=run_size[0], height=run_size[1], num_inference_steps=request.steps,
        guidance_scale=request.guidance, callback_on_step_end=on_step_end,
        **_call_arguments(spec, request, pictures, canvas, mask, run_size),
    )

    def attempt() -> tuple[Image.Image, dict]:
        with (
            manager.use(spec.id, workload, on_progress=job.report) as pipe,
            step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
        ):
            job.check_stop()
            runner = _pipeline_for(pipe, spec, mode)
            return runner(**kwargs, generator=torch.Generator("cpu").manual_seed(seed)).images[0], cache.record()

    try:
        image, cache_record = with_one_retry(job, attempt)
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
            if key not in ("images", "mask", "notes", "max_input_side", "cache_method", "cache_threshold")
        },
        "prompt": request.instruction,
        "images": [_file_record(path, outputs) for path in request.images],
        "mask": _file_record(request.mask, outputs) if request.mask else None,
        "max_input_image_size": request.max_input_side or None,
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
    job.report(1.0, "Done")
    return EditResult(saved, seconds=time.monotonic() - started, notes=tuple(notes))


def _file_record(path: str, outputs: OutputStore) -> dict:
    return {**outputs.keep_input(path), "size": list(image_size(Path(path)))}
