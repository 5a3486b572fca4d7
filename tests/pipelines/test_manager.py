import gc
import threading
import time
import weakref

import numpy as np
import pytest
import torch

from pipelines.catalog import MODELS_BY_ID
from pipelines.errors import InvalidRequest, ModelLoadFailed, ModelNotAvailable, NotEnoughMemory, RetryAfterOutOfMemory
from pipelines.hardware import process_rss_bytes
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.placement import Placement


def make_manager(models_dir, preset) -> ModelManager:
    return ModelManager(ModelStore(models_dir, offline=True), preset)


def run_once(pipe, seed=0) -> np.ndarray:
    return pipe("a lighthouse", num_inference_steps=2, width=256, height=256, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


def test_use_loads_once_and_reuses_the_resident_pipeline(models_dir, presets):
    manager = make_manager(models_dir, presets["cpu"])
    with manager.use("demo-sd3") as first:
        pass
    with manager.use("demo-sd3") as second:
        assert second is first
    assert manager.status().model_id == "demo-sd3"


def test_swap_drops_every_reference_to_the_previous_pipeline(models_dir, presets):
    manager = make_manager(models_dir, presets["cpu"])
    with manager.use("demo-sd3") as pipe:
        previous = weakref.ref(pipe)
        transformer = weakref.ref(pipe.transformer)
        del pipe
    with manager.use("demo-flux"):
        gc.collect()
        assert previous() is None and transformer() is None
    assert manager.status().model_id == "demo-flux"


@pytest.mark.parametrize("preset_id", ["cpu", "8gb-laptop"])
def test_swap_returns_the_previous_models_ram(big_sd3_models_dir, presets, preset_id):
    models_dir = big_sd3_models_dir
    model_bytes = sum(p.stat().st_size for p in (models_dir / "demo" / "demo-sd3" / "transformer").glob("*.safetensors"))
    manager = make_manager(models_dir, presets[preset_id])
    with manager.use("demo-flux") as pipe:
        run_once(pipe)
        del pipe
    baseline = process_rss_bytes()
    with manager.use("demo-sd3") as pipe:
        run_once(pipe)
        loaded = process_rss_bytes() - baseline
        del pipe
    with manager.use("demo-flux") as pipe:
        run_once(pipe)
        del pipe
    after_swap = process_rss_bytes() - baseline
    assert loaded > 0.6 * model_bytes, "the measurement must see the model being resident"
    assert after_swap < 0.15 * model_bytes, f"{after_swap / 1e6:.0f} MB still held after the swap"


@pytest.mark.parametrize("preset_id", ["cpu", "8gb-laptop"])  # diffusers' loader, and the memory engine's
def test_a_corrupt_weights_file_fails_clearly_and_leaves_nothing_loaded(models_dir, presets, preset_id):
    manager = make_manager(models_dir, presets[preset_id])
    with manager.use("demo-flux"):
        pass
    weights = models_dir / "demo" / "demo-sd3" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadFailed, match="demo-sd3"):
        with manager.use("demo-sd3"):
            pass
    assert manager.status().model_id is None
    with manager.use("demo-flux") as pipe:
        assert run_once(pipe).shape == (1, 256, 256, 3)


def test_unknown_model_is_an_invalid_request(models_dir, presets):
    with pytest.raises(InvalidRequest, match="model"):
        with make_manager(models_dir, presets["cpu"]).use("no-such-model"):
            pass


def test_a_real_model_missing_offline_says_what_to_download(models_dir, presets):
    manager = make_manager(models_dir, presets["cpu"])
    with pytest.raises(ModelNotAvailable) as error:
        with manager.use("sd3-medium"):
            pass
    message = str(error.value)
    assert "stabilityai/stable-diffusion-3-medium-diffusers" in message and str(models_dir / "sd3-medium") in message
    assert manager.status().model_id is None


def test_flux_redux_missing_offline_says_how_to_get_flux_dev_and_the_redux_prior(models_dir, presets):
    manager = make_manager(models_dir, presets["cpu"])
    with pytest.raises(ModelNotAvailable) as error:
        with manager.use("flux1-redux-dev"):
            pass
    message = str(error.value)
    # Each command carries the entry's download filter (one --include per pattern) before --local-dir.
    include = " ".join(f'--include "{pattern}"' for pattern in MODELS_BY_ID["flux1-dev"].allow_patterns)
    assert f"hf download black-forest-labs/FLUX.1-dev {include} --local-dir {models_dir / 'flux1-dev'}" in message
    assert "hf download black-forest-labs/FLUX.1-Redux-dev" in message and str(models_dir / "flux1-redux-dev") in message


def test_out_of_memory_steps_down_once_then_unloads_and_the_next_job_works(models_dir, presets):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with pytest.raises(RetryAfterOutOfMemory):
        with manager.use("demo-sd3"):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    assert manager.status().model_id == "demo-sd3", "the first out-of-memory keeps the model, one notch leaner"
    with pytest.raises(NotEnoughMemory, match="also after stepping the plan down") as second:
        with manager.use("demo-sd3"):
            raise torch.OutOfMemoryError("CUDA out of memory (injected again)")
    assert not isinstance(second.value, RetryAfterOutOfMemory)
    assert manager.status().model_id is None
    with manager.use("demo-sd3") as pipe:
        assert run_once(pipe).shape == (1, 256, 256, 3)


def test_jobs_from_two_threads_never_overlap(models_dir, presets):
    manager = make_manager(models_dir, presets["cpu"])
    spans, errors = [], []

    def job(model_id):
        try:
            with manager.use(model_id):
                start = time.monotonic()
                time.sleep(0.2)
                spans.append((start, time.monotonic()))
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=job, args=(m,)) for m in ("demo-sd3", "demo-flux", "demo-sd3", "demo-flux")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("preset_id", ["8gb-laptop", "6gb", "24gb"])
def test_offloaded_and_streamed_placements_give_the_resident_output(models_dir, presets, preset_id):
    resident = make_manager(models_dir, presets["cpu"])
    with resident.use("demo-sd3") as pipe:
        expected = run_once(pipe, seed=4)
    resident.unload()
    placed = make_manager(models_dir, presets[preset_id])
    with placed.use("demo-sd3") as pipe:
        actual = run_once(pipe, seed=4)
    assert np.array_equal(actual, expected)


def test_each_preset_places_components_as_it_says(models_dir, presets):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with manager.use("demo-sd3"):
        plan = manager.status().plan
    assert set(plan.components.values()) == {Placement.OFFLOAD}
    assert "transformer" not in plan.components, "the memory engine places the denoiser"
    assert plan.vae_tiling
    manager.set_preset(presets["6gb"])
    assert manager.status().model_id is None, "changing the preset unloads"
    with manager.use("demo-sd3"):
        assert manager.status().block_plan is not None


@pytest.mark.parametrize("model_id, encoders", [
    ("demo-hidream", ["text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4"]),
    ("demo-cogview4", ["text_encoder"]),
    # FLUX.1 Redux: its prior's image encoder and embedder run first, then the text encoders.
    ("demo-flux-redux", ["prior_image_encoder", "prior_image_embedder", "text_encoder", "text_encoder_2"]),
])
def test_8gb_laptop_offloads_every_text_encoder_and_the_denoiser_sends_the_last_one_back(models_dir, presets, model_id, encoders):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with manager.use(model_id) as pipe:
        plan = manager.status().plan
        assert [plan.components[name] for name in encoders] == [Placement.OFFLOAD] * len(encoders)
        # Encoders run in turn: each one's offload hook sends the one before it back to RAM when it starts.
        hooks = [getattr(pipe, name)._hf_hook for name in encoders]
        assert hooks[0].prev_module_hook is None
        assert all(hook.prev_module_hook.model is getattr(pipe, name) for hook, name in zip(hooks[1:], encoders))
        # Two pre-hooks on the denoiser: the block streamer's, and the one sending the last encoder back to RAM.
        assert len(pipe.transformer._forward_pre_hooks) == 2
    manager.unload()


def test_a_cublas_allocation_failure_counts_as_out_of_memory(models_dir, presets):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with pytest.raises(RetryAfterOutOfMemory):
        with manager.use("demo-sd3"):
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with manager.use("demo-sd3"):
            raise RuntimeError("shape mismatch")  # any other error is not mistaken for one


def test_an_out_of_memory_while_placing_the_model_is_retried_too(models_dir, presets, monkeypatch):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with manager.use("demo-sd3"):
        pass
    residency = manager._loaded.residency
    monkeypatch.setattr(residency, "admit", lambda workload: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory (placing)")))
    with pytest.raises(RetryAfterOutOfMemory):
        with manager.use("demo-sd3"):
            pass


def test_after_a_job_that_succeeds_a_later_out_of_memory_may_step_down_again(models_dir, presets):
    manager = make_manager(models_dir, presets["8gb-laptop"])
    with manager.use("demo-sd3") as pipe:
        pipe.vae.disable_tiling()  # leaves the VAE as one leaner notch
    with pytest.raises(RetryAfterOutOfMemory):
        with manager.use("demo-sd3"):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    with manager.use("demo-sd3") as pipe:
        assert run_once(pipe).shape == (1, 256, 256, 3)  # the retry succeeds on the leaner plan
    with pytest.raises(RetryAfterOutOfMemory):
        with manager.use("demo-sd3"):
            raise torch.OutOfMemoryError("CUDA out of memory (a later job)")
    assert manager.status().model_id == "demo-sd3"


def test_an_out_of_memory_with_nothing_leaner_left_refuses_at_once(models_dir, presets):
    manager = make_manager(models_dir, presets["8gb-laptop"])  # the demo's blocks: streamed by the engine on this preset
    with manager.use("demo-sd3"):
        pass
    residency = manager._loaded.residency
    residency.step_down = lambda: False
    with pytest.raises(NotEnoughMemory, match="no leaner plan exists") as refused:
        with manager.use("demo-sd3"):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    assert not isinstance(refused.value, RetryAfterOutOfMemory) and manager.status().model_id is None


def test_the_reader_gets_the_ram_plans_storages_and_disk_tier(models_dir, presets, monkeypatch):
    """The manager loads by the plan /plan shows: with the tiny FLUX planned as the real FLUX.1 dev on a 16 GB machine
    (its denoiser only fits in int8, both text encoders are read from disk as used), the reader in the reader table is told exactly so."""
    from pipelines import manager as manager_module
    from pipelines.catalog import Catalog
    from pipelines.loading import loaders
    from pipelines.memory.job_plan import plan_job, read_choices

    plans, seen = [], []

    def plan_as_flux_dev(spec, preset, ram_bytes, **kwargs):
        plans.append(plan_job(Catalog().spec("flux1-dev"), preset, ram_bytes, weights=kwargs.get("weights")))
        return plans[-1]

    real_reader = loaders.READERS[loaders.Storage.FOLDER]
    monkeypatch.setattr(manager_module, "plan_job", plan_as_flux_dev)
    monkeypatch.setitem(loaders.READERS, loaders.Storage.FOLDER, lambda settings: seen.append(settings) or real_reader(settings))
    manager = ModelManager(ModelStore(models_dir, offline=True), presets["8gb-laptop"], ram_bytes=16 * 10**9)
    with manager.use("demo-flux") as pipe:
        assert type(pipe).__name__ == "FluxPipeline"
    (settings,) = seen
    assert (dict(settings.stored), settings.on_disk) == read_choices(plans[0])
    # T5 on disk is used as its file stores it: the plan names no storage for it.
    assert settings.stored["transformer"] == "int8" and "text_encoder_2" not in settings.stored
    assert settings.on_disk == {"text_encoder", "text_encoder_2"}
    # A machine with room for it as shipped: every component as shipped, T5 still read from disk (it runs once a job).
    seen.clear()
    roomy = ModelManager(ModelStore(models_dir, offline=True), presets["8gb-laptop"], ram_bytes=64 * 10**9)
    with roomy.use("demo-flux"):
        pass
    assert set(seen[0].stored.values()) == {"as shipped"} and seen[0].on_disk == {"text_encoder_2"}
