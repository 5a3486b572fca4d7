"""Low precision from the hardware: bf16 where the GPU has it, fp16 on older GPUs, fp32 on the CPU; fp8 compute only
on GPUs with fp8 tensor cores. Decided from a hardware description, so fake capabilities check every case."""

import pytest

from pipelines.errors import InvalidRequest
from pipelines.hardware import compute_dtype_for, fp8_compute_problem
from pipelines.loading.weight_formats import WeightFormat, weight_format

TURING, AMPERE, ADA, HOPPER = (7, 5), (8, 6), (8, 9), (9, 0)


@pytest.mark.parametrize(
    "preset_dtype, device, capability, expected",
    [
        ("bfloat16", "cpu", None, "float32"),
        ("bfloat16", "cuda", TURING, "float16"),
        ("bfloat16", "cuda", AMPERE, "bfloat16"),
        ("bfloat16", "cuda", HOPPER, "bfloat16"),
        ("float16", "cuda", AMPERE, "float16"),
        ("float32", "cuda", TURING, "float32"),
    ],
)
def test_compute_dtype_follows_the_gpu(preset_dtype, device, capability, expected):
    assert compute_dtype_for(preset_dtype, device, capability) == expected


@pytest.mark.parametrize("device, capability", [("cuda", ADA), ("cuda", HOPPER)])
def test_fp8_compute_is_offered_from_ada_on(device, capability):
    assert fp8_compute_problem(device, capability) is None
    assert weight_format("fp8 compute", device, capability) is WeightFormat.FP8_COMPUTE


@pytest.mark.parametrize(
    "device, capability, message",
    [("cpu", None, "this machine runs on the CPU"), ("cuda", AMPERE, "this GPU has 8.6"), ("cuda", TURING, "this GPU has 7.5")],
)
def test_fp8_compute_is_refused_without_fp8_tensor_cores(device, capability, message):
    with pytest.raises(InvalidRequest, match=f"weights: fp8 compute needs .*{message}.*choose fp8"):
        weight_format("fp8 compute", device, capability)


def test_an_image_job_asking_fp8_compute_on_the_cpu_is_refused(demo_models_dir, presets, tmp_path):
    from pipelines.image.image_runner import ImageRequest, generate_image
    from pipelines.jobs import QueuedJob
    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore
    from pipelines.outputs import OutputStore

    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])
    with pytest.raises(InvalidRequest, match="fp8 compute needs an NVIDIA GPU"):
        generate_image(ImageRequest(prompt="a fox", model="demo-flux", weights="fp8 compute").check(manager.store.catalog), manager, OutputStore(tmp_path), QueuedJob())
    assert manager.status().model_id is None
