import importlib

import diffusers
import pytest

from pipelines.catalog import FAMILIES, MODELS, MODELS_BY_ID, Family, SpeechDefaults, Task, model_spec

REQUIRED = [
    "sd3-medium", "sd35-medium", "sd35-large", "sd3-medium-hyper8", "flux1-dev", "flux1-schnell", "hidream-i1-full",
    "hidream-i1-dev", "hidream-i1-fast", "cogview4-6b", "openaudio-s1-mini",
]
IMAGE_MODELS = [spec for spec in MODELS if spec.task is Task.TEXT_TO_IMAGE]
SPEECH_MODELS = [spec for spec in MODELS if spec.task is Task.TEXT_TO_SPEECH]


def test_required_models_are_in_the_catalog():
    for model_id in REQUIRED:
        assert model_id in MODELS_BY_ID


def test_ids_are_unique():
    assert len({spec.id for spec in MODELS}) == len(MODELS)


@pytest.mark.parametrize("spec", IMAGE_MODELS, ids=lambda spec: spec.id)
def test_image_entry_is_complete_and_consistent(spec):
    family = FAMILIES[spec.family]
    assert hasattr(diffusers, spec.pipeline_class)
    assert not family.img2img_pipeline_class or hasattr(diffusers, family.img2img_pipeline_class)
    assert spec.licence
    assert spec.weight_bytes > 0
    assert spec.defaults.steps >= 1
    assert spec.defaults.scheduler in [choice.name for choice in family.schedulers]
    for size in (spec.defaults.width, spec.defaults.height):
        assert family.min_size <= size <= family.max_size and size % family.size_multiple == 0
    if spec.base:
        base = model_spec(spec.base)
        assert base.family is spec.family and base.demo is spec.demo
    elif not spec.demo:
        assert spec.repo and "/" in spec.repo
    assert set(spec.component_bytes) - {"lora"} <= set(family.component_roles)
    if spec.companion is not None:
        assert spec.companion.encoder in spec.component_bytes, "a companion's bytes count in the download"


@pytest.mark.parametrize("spec", SPEECH_MODELS, ids=lambda spec: spec.id)
def test_speech_entry_is_complete_and_consistent(spec):
    assert spec.family is Family.FISH_SPEECH and isinstance(spec.defaults, SpeechDefaults)
    assert spec.licence and spec.weight_bytes > 0 and spec.folder_marker == "codec.pth"
    assert set(spec.component_bytes) == {"dual_ar", "codec"}
    if not spec.demo:
        assert spec.repo == "fishaudio/openaudio-s1-mini"
        assert {"*.pth", "*.json", "*.tiktoken"} <= set(spec.allow_patterns)


@pytest.mark.parametrize("family", list(Family))
def test_every_family_has_a_demo_model(family):
    assert any(spec.demo and spec.family is family and not spec.base for spec in MODELS)


def test_hyper_sd_is_a_fast_preset_of_sd3_medium():
    hyper = model_spec("sd3-medium-hyper8")
    assert hyper.base == "sd3-medium"
    assert hyper.lora.repo == "ByteDance/Hyper-SD" and hyper.lora.scale == 0.125
    assert hyper.defaults.steps == 8


def test_real_models_are_sized_like_the_published_checkpoints():
    # FLUX's transformer alone is ~23.8 GB in bf16; SD3 Medium's ~4.2 GB.
    assert model_spec("flux1-dev").component_bytes["transformer"] > 20e9
    assert 3e9 < model_spec("sd3-medium").component_bytes["transformer"] < 5e9


def test_demo_models_are_labelled_as_demo():
    for spec in MODELS:
        assert ("demo" in spec.label.lower()) == spec.demo


def test_schedulers_name_real_diffusers_classes():
    for family in FAMILIES.values():
        for choice in family.schedulers:
            assert hasattr(importlib.import_module("diffusers"), choice.class_name)
