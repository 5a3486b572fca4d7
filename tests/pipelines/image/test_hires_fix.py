"""Hires fix: the image is enlarged and repainted at a low strength in the same job; the record says so, and keeps
the first pass's size where Reuse settings reads it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.outputs import read_parameters


def make(manager, outputs, **values):
    request = ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=3, width=256, height=256, **values)
    return generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]


def test_hires_fix_makes_the_image_scale_times_bigger_and_records_both_passes(manager, outputs):
    saved = make(manager, outputs, hires_scale=1.5, hires_strength=0.5)
    assert Image.open(saved.path).size == (384, 384)
    recorded = read_parameters(saved.path)
    assert (recorded["hires_scale"], recorded["hires_strength"]) == (1.5, 0.5)
    assert (recorded["width"], recorded["height"]) == (256, 256), "the first pass's size, which Reuse settings gives back"
    assert recorded["hires"] == {"size": [384, 384], "upscaler": "lanczos", "steps_run": 1}


def test_the_second_pass_repaints_and_strength_0_only_enlarges(manager, outputs):
    plain = np.asarray(Image.open(make(manager, outputs).path).resize((384, 384), Image.Resampling.LANCZOS))
    enlarged = np.asarray(Image.open(make(manager, outputs, hires_scale=1.5, hires_strength=0.0).path))
    repainted = np.asarray(Image.open(make(manager, outputs, hires_scale=1.5, hires_strength=0.5).path))
    assert np.array_equal(enlarged, plain)
    assert not np.array_equal(repainted, plain)


def test_hires_off_by_default_records_no_second_pass(manager, outputs):
    recorded = read_parameters(make(manager, outputs).path)
    assert recorded["hires_scale"] == 1.0 and recorded["hires"] is None


@pytest.mark.parametrize("values, field", [
    (dict(hires_scale=5), "hires_scale"),
    (dict(hires_scale=0.5), "hires_scale"),
    (dict(hires_scale=2, hires_strength=1.5), "hires_strength"),
    (dict(hires_scale=2, model="demo-hidream"), "hires_scale"),
])
def test_bad_hires_values_are_refused_naming_the_field(manager, values, field):
    given = dict(prompt="a fox", model="demo-sd3") | values
    with pytest.raises(InvalidRequest) as refused:
        ImageRequest(**given).check(manager.store.catalog)
    assert refused.value.field == field
