"""The model catalog: one frozen entry per model, the families and their rules, as data; and `Catalog`, the models
the app knows at run time (these entries and the checkpoint files the model store found).

`schema.py` says what an entry is, `rules.py` what a family is, `families.py` which families there are, and
`image.py`, `video.py` and `audio.py` hold the models. Adding a model of a known family is adding one entry to its
data file; a new family adds a `FamilySpec`, a tiny builder in `pipelines/tiny/` and a runner. Everything is imported
from here: `from pipelines.catalog import MODELS, Task`.
"""

from __future__ import annotations

from typing import Mapping

from pipelines.catalog.audio import AUDIO, AUDIO_DEMOS
from pipelines.catalog.families import DEMO_LICENCE, FAMILIES, LORA_KEY_MARKERS, entry, family_spec
from pipelines.catalog.image import EDIT, FLUX_REDUX_PRIOR, IMAGE, IMAGE_DEMOS, LLAMA_31_ENCODER
from pipelines.catalog.rules import (
    SPEED_LEVELS,
    SPEED_OFF,
    FamilySpec,
    InstructionRules,
    SchedulerChoice,
    SectionRules,
    SpeedSetting,
    VideoRules,
)
from pipelines.catalog.schema import (
    CallDefaults,
    CheckpointFile,
    CompanionRepo,
    ComponentRepo,
    EditDefaults,
    Family,
    LongVideo,
    LoraSpec,
    ModelSpec,
    MusicDefaults,
    Role,
    SpeechDefaults,
    Task,
    VideoDefaults,
    frozen,
)
from pipelines.catalog.video import HUNYUAN, HUNYUANVIDEO_BASE, REDUX_IMAGE_ENCODER, VIDEO, VIDEO_DEMOS

# The order the app lists models in (each task's dropdown, the system tab's table, /models), kept as it grew: real
# models before demos, except that the edit models arrived with their demos.
MODELS: tuple[ModelSpec, ...] = (
    *IMAGE, *AUDIO, *VIDEO, *EDIT, *HUNYUAN, *IMAGE_DEMOS, *AUDIO_DEMOS, *VIDEO_DEMOS,
)

MODELS_BY_ID: Mapping[str, ModelSpec] = frozen({spec.id: spec for spec in MODELS})


class Catalog:
    """The models the app knows: the fixed entries above, then the checkpoint files the last scan of the models
    folder found. The model store owns the one catalog and replaces its files at each scan (one assignment of a
    frozen mapping, so a reader never sees half a scan); tabs and runners read it through the store."""

    def __init__(self, files: tuple[ModelSpec, ...] = ()):
        self._files: Mapping[str, ModelSpec] = frozen({spec.id: spec for spec in files})

    def replace_files(self, specs) -> None:
        self._files = frozen({spec.id: spec for spec in specs})

    def all(self) -> tuple[ModelSpec, ...]:
        """The fixed catalog, then the checkpoint files found by the last scan."""
        return MODELS + tuple(self._files.values())

    def get(self, model_id: str) -> ModelSpec | None:
        return MODELS_BY_ID.get(model_id) or self._files.get(model_id)

    def spec(self, model_id: str) -> ModelSpec:
        """The entry for `model_id` (a fixed entry or a scanned file); KeyError when there is none."""
        found = self.get(model_id)
        if found is None:
            raise KeyError(model_id)
        return found

    def for_task(self, *tasks: Task) -> dict[str, ModelSpec]:
        """The models of these tasks, by id, checkpoint files included."""
        return {spec.id: spec for spec in self.all() if spec.task in tasks}

    def image_models(self) -> dict[str, ModelSpec]:
        return self.for_task(Task.TEXT_TO_IMAGE)

    def video_models(self) -> dict[str, ModelSpec]:
        """Text-to-video and image-to-video models, checkpoint files included."""
        return self.for_task(Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO)


__all__ = [
    # schema.py
    "CallDefaults", "CheckpointFile", "CompanionRepo", "ComponentRepo", "EditDefaults", "Family", "LongVideo",
    "LoraSpec", "ModelSpec", "MusicDefaults", "Role", "SpeechDefaults", "Task", "VideoDefaults", "frozen",
    # rules.py
    "SPEED_LEVELS", "SPEED_OFF", "FamilySpec", "InstructionRules", "SchedulerChoice", "SectionRules", "SpeedSetting",
    "VideoRules",
    # families.py
    "DEMO_LICENCE", "FAMILIES", "LORA_KEY_MARKERS", "entry", "family_spec",
    # the data files
    "FLUX_REDUX_PRIOR", "LLAMA_31_ENCODER", "HUNYUANVIDEO_BASE", "REDUX_IMAGE_ENCODER",
    # this module
    "MODELS", "MODELS_BY_ID", "Catalog",
]
