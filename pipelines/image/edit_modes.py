"""The Edit tab's modes as data: what each takes (how many images, a mask, a size) and which models serve it; and the
checks every mode makes the same way, whichever runner then runs it.

The models a mode offers are those made for its task, plus the text-to-image models whose family has the mode's
sibling pipeline (SD3 inpaints with the SD3 weights already on disk). A new mode (a control image, a variation) is
one more entry here, with the task its models are made for. The instruction, inpaint and outpaint modes run on
`pipelines/image/edit_runner.py`; the FLUX.1 tools' modes (`flux_tool`) on `pipelines/image/flux_tools_runner.py`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from pipelines.catalog import Catalog, FamilySpec, ModelSpec, Task, family_spec
from pipelines.errors import InvalidRequest, UnknownModel
from pipelines.image.masks import Extension, read_mask
from pipelines.media import MediaError, image_size
from pipelines.request_values import checked_prompt, in_range

OUTPAINT_LIMITS = (0, 2048)
SIDES = ("left", "right", "top", "bottom")
# OmniGen's placeholder for input image N; the bare `<|image_N|>` is read as the same.
PLACEHOLDER = "<img><|image_{}|></img>"
_PLACEHOLDER_PATTERN = re.compile(r"(?:<img>)?<\|image_(\d+)\|>(?:</img>)?")


class MaskSource(str, Enum):
    NONE = "none"
    # Painted in the browser or uploaded.
    GIVEN = "given"
    # The area an extended canvas adds.
    CANVAS = "canvas"


@dataclass(frozen=True)
class EditMode:
    name: str
    label: str
    # Models made for this task are offered in this mode.
    task: Task
    mask: MaskSource
    min_images: int
    max_images: int
    # The FamilySpec field naming a sibling pipeline that lets text-to-image models of the family serve this mode.
    family_pipeline: str = ""
    # Whether the output size is the user's to choose (fill modes keep the image's, or the extended canvas's, size).
    takes_size: bool = False
    # Whether an empty instruction is refused (a fill model may fill from the surroundings alone).
    needs_instruction: bool = False
    # The control picture the mode makes from the input (FLUX.1 tools: "canny" edges or "depth"), shown beside it.
    control: str = ""
    # Run by the FLUX.1 tools runner (a ToolRequest), not the edit runner.
    flux_tool: bool = False


EDIT_MODES = {
    mode.name: mode for mode in (
        EditMode("instruction", "Instruction (OmniGen)", Task.INSTRUCTION_EDIT, MaskSource.NONE, 0, 3, takes_size=True, needs_instruction=True),
        EditMode("inpaint", "Inpaint", Task.INPAINT, MaskSource.GIVEN, 1, 1, family_pipeline="inpaint_pipeline_class"),
        EditMode("outpaint", "Outpaint", Task.INPAINT, MaskSource.CANVAS, 1, 1, family_pipeline="inpaint_pipeline_class"),
        # FLUX.1 tools (pipelines/image/flux_tools_runner.py). Depth may follow a depth map alone, without Image 1.
        EditMode(
            "canny", "Canny edges (FLUX.1)", Task.CANNY_TO_IMAGE, MaskSource.NONE, 1, 1, takes_size=True, needs_instruction=True,
            control="canny", flux_tool=True,
        ),
        EditMode(
            "depth", "Depth (FLUX.1)", Task.DEPTH_TO_IMAGE, MaskSource.NONE, 0, 1, takes_size=True, needs_instruction=True,
            control="depth", flux_tool=True,
        ),
        EditMode("redux", "Variation (FLUX.1 Redux)", Task.IMAGE_VARIATION, MaskSource.NONE, 1, 1, takes_size=True, flux_tool=True),
    )
}


def edit_models(mode_name: str, catalog: Catalog) -> dict[str, ModelSpec]:
    """The models that can run `mode_name`, by id, edit models first."""
    mode = EDIT_MODES[mode_name]
    models = catalog.all()
    made_for = [spec for spec in models if spec.task is mode.task]
    by_family = [
        spec for spec in models
        if mode.family_pipeline and spec.task is Task.TEXT_TO_IMAGE and getattr(family_spec(spec.family), mode.family_pipeline)
    ]
    return {spec.id: spec for spec in made_for + by_family}


def checked_mode(name) -> EditMode:
    mode = EDIT_MODES.get(str(name or "instruction"))
    if mode is None:
        raise InvalidRequest("mode", f"{name!r} is not an edit mode; choose one of {', '.join(EDIT_MODES)}")
    return mode


@dataclass(frozen=True)
class ModeInputs:
    """What every mode checks the same way, each file read once: the mode's model, the input images and their sizes,
    the instruction (with OmniGen's placeholders), the mask and its size, the outpaint sides (rounded to the model's
    size step) and what was decided for the user."""

    mode: EditMode
    spec: ModelSpec
    family: FamilySpec
    images: tuple[str, ...]
    image_sizes: tuple[tuple[int, int], ...]
    instruction: str
    mask: str | None
    mask_size: tuple[int, int] | None
    extension: Extension
    notes: tuple[str, ...]


def check_mode_inputs(mode: EditMode, model: str, catalog: Catalog, images, instruction, mask, sides: dict) -> ModeInputs:
    """The inputs as `mode` takes them; InvalidRequest names the first bad one. `sides` holds the outpaint sides by name."""
    models = edit_models(mode.name, catalog)
    spec = models.get(model)
    if spec is None:
        raise UnknownModel(model, "one of", models, head=f"{model!r} is not a model for {mode.label}")
    family = family_spec(spec.family)
    notes: list[str] = []
    images, image_sizes = _checked_images(images, mode, spec)
    instruction = (instruction or "").strip()
    if instruction or mode.needs_instruction:
        instruction = checked_prompt(instruction, "instruction", "say what to make or change")
    if family.instruction is not None:
        instruction, appended = _with_placeholders(instruction, len(images))
        if appended:
            notes.append(f"Placeholders for image {', '.join(map(str, appended))} were added at the end of the instruction.")
    mask, mask_size = _checked_mask(mask, mode, image_sizes)
    extension = Extension(*(in_range(f"outpaint_{side}", sides.get(side, 0), 0, OUTPAINT_LIMITS) for side in SIDES))
    if mode.mask is MaskSource.CANVAS:
        if not extension.any:
            raise InvalidRequest("outpaint_left", "Outpaint needs at least one side to extend by more than 0 px")
        rounded = extension.rounded_up(family.size_multiple)
        if rounded != extension:
            notes.append(f"Each side was extended by a multiple of {family.size_multiple} px, as {spec.name} needs: {_sides(rounded)}.")
        extension = rounded
    elif extension.any:
        raise InvalidRequest("outpaint_left", f"only Outpaint extends the canvas; leave the sides at 0 in {mode.label}")
    return ModeInputs(mode, spec, family, images, image_sizes, instruction, mask, mask_size, extension, tuple(notes))


def _checked_images(given, mode: EditMode, spec: ModelSpec) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    if isinstance(given, (str, Path)):
        given = [given]
    images = tuple(str(path) for path in (given or ()) if path)
    rules = family_spec(spec.family).instruction
    most = min(mode.max_images, rules.max_input_images) if rules else mode.max_images
    if len(images) > most:
        raise InvalidRequest("images", f"{len(images)} images were given; {spec.name} takes at most {most} in {mode.label}")
    if len(images) < mode.min_images:
        raise InvalidRequest("images", f"{mode.label} needs an input image")
    sizes = []
    for number, path in enumerate(images, start=1):
        try:
            sizes.append(image_size(Path(path)))
        except MediaError as error:
            raise InvalidRequest("images", f"Image {number}: {error}") from None
        except OSError as error:  # the upload vanished or cannot be opened; its text repeats the full path
            raise InvalidRequest("images", f"Image {number}: {Path(path).name} could not be read ({error.strerror or type(error).__name__})") from None
    return images, tuple(sizes)


def _with_placeholders(instruction: str, image_count: int) -> tuple[str, list[int]]:
    """The instruction with every placeholder in OmniGen's full form and one appended for each image it did not
    mention; and the numbers of those appended. InvalidRequest for a placeholder of an image not given."""
    referred = [int(match) for match in _PLACEHOLDER_PATTERN.findall(instruction)]
    for number in referred:
        if not 1 <= number <= image_count:
            given = f"only {image_count} image{'s were' if image_count != 1 else ' was'} given" if image_count else "no image was given"
            raise InvalidRequest(
                "instruction", f"{PLACEHOLDER.format(number)} refers to image {number}, but {given}; "
                "add the image or remove the placeholder"
            )
    instruction = _PLACEHOLDER_PATTERN.sub(lambda match: PLACEHOLDER.format(match.group(1)), instruction)
    missing = [number for number in range(1, image_count + 1) if number not in referred]
    if missing:
        instruction = " ".join([instruction, *(PLACEHOLDER.format(number) for number in missing)]).strip()
    return instruction, missing


def _checked_mask(mask, mode: EditMode, image_sizes) -> tuple[str | None, tuple[int, int] | None]:
    mask = str(mask) if mask else None
    if mode.mask is not MaskSource.GIVEN:
        if mask:
            raise InvalidRequest("mask", f"{mode.label} takes no mask; leave it empty")
        return None, None
    if mask is None:
        raise InvalidRequest("mask", "Inpaint needs a mask: paint over the area to repaint, or upload a mask (white = repaint)")
    try:
        mask_size = image_size(Path(mask))
    except MediaError as error:
        raise InvalidRequest("mask", str(error)) from None
    except OSError as error:
        raise InvalidRequest("mask", f"{Path(mask).name} could not be read ({error.strerror or type(error).__name__})") from None
    picture_size = image_sizes[0]
    if mask_size != picture_size:
        raise InvalidRequest(
            "mask", f"is {mask_size[0]}×{mask_size[1]} but the image is {picture_size[0]}×{picture_size[1]}; "
            "a mask must have the image's size"
        )
    if read_mask(mask).getextrema()[1] == 0:
        raise InvalidRequest("mask", "is empty (all black); paint the area to repaint in white")
    return mask, mask_size


def _sides(extension: Extension) -> str:
    return ", ".join(f"{name} {value} px" for name, value in asdict(extension).items() if value)
