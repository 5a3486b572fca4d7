"""Faults in the middle of a job: nothing half-written, the manager clean, the next job right."""

import errno
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import outputs as outputs_module
from pipelines.errors import ModelLoadFailed, OutputNotWritable
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import OutputStore

REQUEST = ImageRequest(prompt="a fox", model="demo-sd3", steps=3, seed=5)


@pytest.fixture
def manager(models_dir, presets):
    return ModelManager(ModelStore(models_dir, offline=True), presets["cpu"])


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def every_file(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_failure_mid_denoising_leaves_no_output_and_the_next_job_is_right(manager, tmp_path):
    reference = pixels(generate_image(REQUEST.check(manager.store.catalog), manager, OutputStore(tmp_path / "reference"), QueuedJob()).outputs[0].path)

    def fail_at_step_two(fraction, text):
        if "step 2/" in text:
            raise RuntimeError("injected failure")

    outputs = OutputStore(tmp_path / "outputs")
    with pytest.raises(RuntimeError, match="injected"):
        generate_image(REQUEST.check(manager.store.catalog), manager, outputs, QueuedJob(fail_at_step_two))
    assert every_file(outputs.root) == []
    # The manager's lock is free (a thread can take it) and the model it holds still gives the same image.
    taken = []
    thread = threading.Thread(target=lambda: taken.append(manager.status()))
    thread.start()
    thread.join(5)
    assert taken and taken[0].model_id == "demo-sd3"
    after = generate_image(REQUEST.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert np.array_equal(pixels(after.outputs[0].path), reference)


def test_a_full_disk_mid_write_is_a_clear_error_and_leaves_nothing_behind(manager, tmp_path, monkeypatch):
    def write_half_then_fail(path, data):
        with open(path, "xb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs_module, "_write_synced", write_half_then_fail)
    outputs = OutputStore(tmp_path / "outputs")
    with pytest.raises(OutputNotWritable, match=r"outputs.*No space left on device"):
        generate_image(REQUEST.check(manager.store.catalog), manager, outputs, QueuedJob())
    assert every_file(outputs.root) == []
    monkeypatch.undo()
    assert len(generate_image(REQUEST.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs) == 1


def test_weights_load_only_from_safetensors_never_from_a_pickle(manager, models_dir, monkeypatch):
    folder = models_dir / "demo" / "demo-sd3" / "transformer"
    weights = folder / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), folder / "diffusion_pytorch_model.bin")
    weights.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ModelLoadFailed, match=r"could not be loaded from .*demo-sd3.*safetensors"):
        with manager.use("demo-sd3"):
            pass
    assert manager.status().model_id is None


def test_no_code_path_trusts_remote_code_or_unpickles_without_weights_only():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [p for folder in ("pipelines", "tabs") for p in (root / folder).rglob("*.py")] + [root / "app.py"]
    for source in sources:
        text = source.read_text()
        assert "trust_remote_code=True" not in text, source
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{source}: {line.strip()}"
