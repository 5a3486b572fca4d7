"""Attention backends: the chosen one reaches the denoiser's processors; unavailable ones are refused by name."""

import pytest
from diffusers.models.attention_dispatch import AttentionBackendName

from pipelines.catalog import Catalog
from pipelines.speed.attention import ATTENTION_BACKENDS, apply_attention, usable_attention
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.outputs import OutputStore
from presets import ATTENTION_BACKENDS as PRESET_ATTENTION_BACKENDS


def backends_in_use(transformer) -> set:
    return {
        module.processor._attention_backend for module in transformer.modules()
        if hasattr(getattr(module, "processor", None), "_attention_backend")
    }


def test_the_chosen_backend_reaches_the_transformer_and_the_record(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    make = lambda attention: generate_image(
        ImageRequest(prompt="a fox", model="demo-flux", steps=2, seed=1, width=256, height=256, attention=attention).check(manager.store.catalog),
        manager, outputs, QueuedJob(),
    ).outputs[0]
    math = make("sdpa-math")
    with manager.use("demo-flux") as pipe:
        assert backends_in_use(pipe.transformer) == {AttentionBackendName._NATIVE_MATH}
    assert math.parameters["attention"] == "sdpa-math"
    # No choice in the job: the preset's ("sdpa", PyTorch's native attention) is set again.
    preset = make(None)
    with manager.use("demo-flux") as pipe:
        assert backends_in_use(pipe.transformer) == {AttentionBackendName.NATIVE}
    assert preset.parameters["attention"] == "sdpa"


def test_a_model_without_backends_runs_pytorch_attention_and_refuses_others(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    saved = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=1).check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]
    assert saved.parameters["attention"] == "sdpa"
    with pytest.raises(InvalidRequest, match="attention: SD3Transformer2DModel computes attention with PyTorch's own kernel only"):
        generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=1, attention="sdpa-math").check(manager.store.catalog), manager, outputs, QueuedJob())


def test_gpu_backends_are_refused_on_the_cpu_and_when_not_installed(manager):
    with manager.use("demo-flux") as pipe:
        transformer = pipe.transformer
    with pytest.raises(InvalidRequest, match="attention: SageAttention .* needs an NVIDIA GPU"):
        apply_attention(transformer, "sage", "sdpa", "cpu")
    for name in ("sage", "flash", "flash3"):
        if ATTENTION_BACKENDS[name].installed():
            continue
        with pytest.raises(InvalidRequest, match=f"is not installed: install {ATTENTION_BACKENDS[name].package.split(' ')[0]}"):
            apply_attention(transformer, name, "sdpa", "cuda")
    assert usable_attention("cpu") == ["sdpa", "sdpa-math"]


def test_an_unknown_backend_names_the_field():
    with pytest.raises(InvalidRequest, match="attention: 'xformers' is not an attention backend"):
        ImageRequest(prompt="a fox", model="demo-flux", attention="xformers").check(Catalog())


def test_presets_know_the_same_backends():
    assert tuple(ATTENTION_BACKENDS) == PRESET_ATTENTION_BACKENDS
