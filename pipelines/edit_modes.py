"""The Edit tab's modes as data: what each takes (how many images, a mask, a size) and which models serve it.

The models a mode offers are those made for its task, plus the text-to-image models whose family has the mode's
sibling pipeline (SD3 inpaints with the SD3 weights already on disk). A new mode (a control image, a variation) is
one more entry here, with the task its models are made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pipelines.catalog import ModelSpec, Task, all_models, family_spec


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


EDIT_MODES = {
    mode.name: mode for mode in (
        EditMode("instruction", "Instruction (OmniGen)", Task.INSTRUCTION_EDIT, MaskSource.NONE, 0, 3, takes_size=True, needs_instruction=True),
        EditMode("inpaint", "Inpaint", Task.INPAINT, MaskSource.GIVEN, 1, 1, family_pipeline="inpaint_pipeline_class"),
        EditMode("outpaint", "Outpaint", Task.INPAINT, MaskSource.CANVAS, 1, 1, family_pipeline="inpaint_pipeline_class"),
        # FLUX.1 tools (pipelines/flux_tools_runner.py). Depth may follow a depth map alone, without Image 1.
        EditMode("canny", "Canny edges (FLUX.1)", Task.CANNY_TO_IMAGE, MaskSource.NONE, 1, 1, takes_size=True, needs_instruction=True, control="canny"),
        EditMode("depth", "Depth (FLUX.1)", Task.DEPTH_TO_IMAGE, MaskSource.NONE, 0, 1, takes_size=True, needs_instruction=True, control="depth"),
        EditMode("redux", "Variation (FLUX.1 Redux)", Task.IMAGE_VARIATION, MaskSource.NONE, 1, 1, takes_size=True),
    )
}


def edit_models(mode_name: str) -> dict[str, ModelSpec]:
    """The models that can run `mode_name`, by id, edit models first."""
    mode = EDIT_MODES[mode_name]
    made_for = [spec for spec in all_models() if spec.task is mode.task]
    by_family = [
        spec for spec in all_models()
        if mode.family_pipeline and spec.task is Task.TEXT_TO_IMAGE and getattr(family_spec(spec.family), mode.family_pipeline)
    ]
    return {spec.id: spec for spec in made_for + by_family}
