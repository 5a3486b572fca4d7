"""Compiled blocks on the CPU: the same image as eager, compiled once per resident model, refused where it cannot run."""

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog import Catalog
from pipelines.speed.compiled_blocks import inductor_cache_dir
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.outputs import OutputStore


def pixels(saved) -> np.ndarray:
    return np.asarray(Image.open(saved.path)).astype(int)


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_image_and_compile_only_once(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    make = lambda compile: generate_image(
        ImageRequest(prompt="a fox", model="demo-wan-image", steps=2, seed=4, compile=compile).check(manager.store.catalog), manager, outputs, QueuedJob()
    )
    eager = make("off")
    first = make("on")
    second = make("on")
    after = make("off")

    first_record = first.outputs[0].parameters["compiled_blocks"]
    assert first_record["compile"] == "on" and first_record["graphs_compiled"] >= 1
    assert "Compiling the transformer blocks: first run took" in first.compile_note
    # Same shapes, same resident model: nothing compiles again, and the job says nothing about compiling.
    assert second.outputs[0].parameters["compiled_blocks"]["graphs_compiled"] == 0 and second.compile_note == ""
    assert eager.outputs[0].parameters["compiled_blocks"] == {"compile": "off", "graphs_compiled": 0, "first_call_seconds": None}
    # Inductor fuses float operations in another order: pixels may differ by a rounding step, no more.
    assert np.abs(pixels(first.outputs[0]) - pixels(eager.outputs[0])).max() <= 2
    np.testing.assert_array_equal(pixels(second.outputs[0]), pixels(first.outputs[0]))
    np.testing.assert_array_equal(pixels(after.outputs[0]), pixels(eager.outputs[0]))
    # Kernels land in the app's cache folder, where the next start finds them.
    assert any(inductor_cache_dir(manager.store.models_dir).iterdir())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"compile": "maybe"}, "compile: 'maybe' is not a choice"),
        ({"compile": "on", "speed": "fast"}, "compile: compiled blocks and step caching do not combine"),
    ],
)
def test_bad_compile_settings_name_the_field(fields, message):
    with pytest.raises(InvalidRequest, match=message):
        ImageRequest(prompt="a fox", model="demo-flux", **fields).check(Catalog())


def test_a_model_without_repeated_blocks_refuses_compiling(manager, tmp_path):
    with pytest.raises(InvalidRequest, match="SD3Transformer2DModel declares no repeated blocks"):
        generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=1, compile="on").check(manager.store.catalog), manager, OutputStore(tmp_path), QueuedJob())
