"""The memory engine without a GPU: the planner's decisions for given budgets, admission, recovery after an
out-of-memory, and streamed placements that give the resident output exactly."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel, HunyuanVideoFramepackTransformer3DModel, SD3Transformer2DModel

from pipelines.errors import NotEnoughMemory
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.memory.aligned_weights import align_cpu_weights
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed
from pipelines.memory.planner import GIB, WORKSPACE_BYTES, DenoiserShape, Workload, activation_bytes, plan_blocks, spread
from pipelines.memory.weights_file import WeightsFile
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import OutputStore

MB = 1_000_000

# Wan2.1-14B as the planner sees it: 40 blocks of 0.70 GB, 0.47 GB of trunk, width 5120, FFN 13824.
WAN14B = DenoiserShape(tuple([702_000_000] * 40), 465_000_000, 5120, 13824)
FLUX = DenoiserShape(tuple([680_000_000] * 19 + [283_000_000] * 38), 128_000_000, 3072, 12288)


def test_a_bigger_budget_keeps_more_blocks_resident():
    workload = Workload(4608)
    resident = [len(plan_blocks(FLUX, workload, int(gib * GIB)).resident) for gib in (4, 7.25, 12, 22.5, 40)]
    assert resident == sorted(resident) and resident[0] < resident[-1] == 57
    assert plan_blocks(FLUX, workload, 40 * GIB).streamed_bytes == 0


def test_the_plan_fits_its_budget_and_streams_the_rest():
    plan = plan_blocks(FLUX, Workload(4608), int(7.25 * GIB))
    assert plan.fits and plan.device_bytes <= 7.25 * GIB
    assert plan.resident_bytes + plan.streamed_bytes == sum(FLUX.block_bytes)
    assert plan.ring_bytes == 2 * 680_000_000, "the ring holds the largest streamed block"


def test_bigger_requests_reserve_more_activation_memory_and_keep_fewer_blocks():
    small = plan_blocks(WAN14B, Workload(21 * 30 * 52 // 4), 24 * GIB)
    large = plan_blocks(WAN14B, Workload(21 * 30 * 52), 24 * GIB)
    assert large.activation_bytes > small.activation_bytes
    assert len(large.resident) < len(small.resident)
    single = activation_bytes(WAN14B, Workload(1000)) - WORKSPACE_BYTES
    assert activation_bytes(WAN14B, Workload(1000, batch=2)) - WORKSPACE_BYTES == 2 * single


def test_a_request_that_cannot_fit_even_fully_streamed_is_refused_by_the_planner():
    plan = plan_blocks(WAN14B, Workload(21 * 60 * 104), int(7.25 * GIB))
    assert not plan.fits and "even with every block streamed" in plan.notes[0]


def test_pinned_chunks_are_powers_of_two_that_hold_every_block_without_straddling():
    from pipelines.memory.host_arena import _layout_fits, pinned_chunk_sizes

    for blocks in ([680_000_000] * 19 + [283_000_000] * 38, [702_000_000] * 40, [97_792, 152_576] * 6, [5]):
        chunks = pinned_chunk_sizes(blocks)
        assert all(size & (size - 1) == 0 for size in chunks)
        assert _layout_fits(chunks, blocks)
        assert sum(chunks) <= 1.1 * sum(blocks) + max(chunks[-1], 2**20), "little is locked beyond the weights"


def test_the_arena_is_reused_for_a_model_that_fits_and_hands_out_separate_views():
    arena = HostArena(pinned=False)
    arena.start_model([1000, 3000])
    first = [arena.take(1000), arena.take(3000)]
    first[0].fill_(1)
    first[1].fill_(2)
    assert int(first[0].sum()) == 1000 and arena.used_bytes >= 4000
    capacity = arena.capacity_bytes
    arena.start_model([2000])
    assert arena.capacity_bytes == capacity and arena.used_bytes == 0
    with pytest.raises(MemoryError):
        arena.take(10_000)


def test_resident_blocks_are_spread_through_the_forward():
    assert spread(4, 40) == [0, 10, 20, 30]
    assert spread(0, 10) == [] and spread(12, 10) == list(range(10))


def test_stepping_down_keeps_fewer_blocks_resident():
    workload = Workload(4608)
    plan = plan_blocks(FLUX, workload, 12 * GIB)
    leaner = plan_blocks(FLUX, workload, 12 * GIB, demote=len(plan.resident) // 4)
    assert len(leaner.resident) == len(plan.resident) - len(plan.resident) // 4 and leaner.fits


def test_weights_are_read_into_our_buffer_and_a_truncated_file_is_named(demo_models_dir, tmp_path):
    folder = demo_models_dir / "demo" / "demo-sd3" / "transformer"
    weights = WeightsFile(folder)
    name = next(iter(weights.locations))
    expected = SD3Transformer2DModel.from_pretrained(folder).state_dict()[name]
    assert torch.equal(weights.read(name), expected)
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    data = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated"):
        truncated = WeightsFile(tmp_path)
        for key in truncated.locations:
            truncated.read(key)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("transformer_class, model_id", [(SD3Transformer2DModel, "demo-sd3"), (FluxTransformer2DModel, "demo-flux")])
def test_streamed_blocks_give_the_resident_output_exactly(demo_models_dir, transformer_class, model_id, dtype):
    folder = demo_models_dir / "demo" / model_id / "transformer"
    reference = transformer_class.from_pretrained(folder, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    if transformer_class is SD3Transformer2DModel:
        inputs = dict(hidden_states=torch.randn(2, 16, 32, 32, generator=generator), encoder_hidden_states=torch.randn(2, 20, 64, generator=generator),
                      pooled_projections=torch.randn(2, 64, generator=generator), timestep=torch.tensor([10, 10]))
    else:
        inputs = dict(hidden_states=torch.randn(1, 256, 64, generator=generator), encoder_hidden_states=torch.randn(1, 20, 32, generator=generator),
                      pooled_projections=torch.randn(1, 32, generator=generator), timestep=torch.tensor([0.5]),
                      img_ids=torch.zeros(256, 3), txt_ids=torch.zeros(20, 3), guidance=torch.tensor([3.5]))
    inputs = {k: v.to(dtype) if v.is_floating_point() and k not in ("img_ids", "txt_ids") else v for k, v in inputs.items()}
    with torch.no_grad():
        expected = reference(**inputs, return_dict=False)[0]
    arena = HostArena(pinned=False)
    for resident in (set(), {0}, {1}, {0, 1}):
        model, streamer = load_streamed(transformer_class, folder, torch.device("cpu"), dtype, arena)
        streamer.place(resident)
        for _ in range(2):  # the ring carries over from one forward to the next
            with torch.no_grad():
                assert torch.equal(model(**inputs, return_dict=False)[0], expected)


def framepack_section(window: int, generator: torch.Generator) -> dict:
    """The transformer's inputs for one FramePack section of `window` latent frames at 64×64 px, laid out as the
    pipeline lays them for its last section (picture, section, then 1×, 2× and 4× history)."""
    history = (1, 2, 16)
    _, latents, clean, history_2x, history_4x = torch.arange(1 + window + sum(history)).split([1, window, *history])

    def noise(frames: int) -> torch.Tensor:
        return torch.randn(1, 16, frames, 8, 8, generator=generator)

    return dict(
        hidden_states=noise(window), timestep=torch.tensor([700.0]), guidance=torch.tensor([10_000.0]),
        encoder_hidden_states=torch.randn(1, 7, 16, generator=generator), encoder_attention_mask=torch.ones(1, 7, dtype=torch.int64),
        pooled_projections=torch.randn(1, 32, generator=generator), image_embeds=torch.randn(1, 16, 16, generator=generator),
        indices_latents=latents, latents_clean=noise(2), indices_latents_clean=torch.cat([torch.tensor([0]), clean]),
        latents_history_2x=noise(2), indices_latents_history_2x=history_2x, latents_history_4x=noise(16),
        indices_latents_history_4x=history_4x,
    )


def test_streamed_framepack_blocks_give_the_resident_output_exactly_section_after_section(demo_models_dir):
    folder = demo_models_dir / "demo" / "demo-framepack"
    reference = HunyuanVideoFramepackTransformer3DModel.from_pretrained(folder)
    # As the manager does on the CPU: this file puts every tensor 8 bytes past a 64-byte boundary, where MKL rounds
    # differently from the aligned copies the engine makes.
    align_cpu_weights(reference)
    generator = torch.Generator().manual_seed(0)
    sections = [framepack_section(window, generator) for window in (2, 3)]  # the ring carries over a change of size
    with torch.no_grad():
        expected = [reference(**inputs, return_dict=False)[0] for inputs in sections]
    arena = HostArena(pinned=False)
    for resident in (set(), {0}, {1}, {0, 1}):
        model, streamer = load_streamed(HunyuanVideoFramepackTransformer3DModel, folder, torch.device("cpu"), torch.float32, arena)
        streamer.place(resident)
        with torch.no_grad():
            for inputs, output in zip(sections, expected):
                assert torch.equal(model(**inputs, return_dict=False)[0], output)


def tight_preset(presets, usable_mb: float):
    return replace(presets["8gb-laptop"], vram_budget_gb=usable_mb * MB / GIB, vram_reserve_gb=0.0)


def test_a_tight_preset_streams_part_of_the_model_and_the_image_is_unchanged(big_sd3_models_dir, presets, tmp_path):
    request = ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=3)
    outputs = OutputStore(tmp_path)
    resident = ModelManager(ModelStore(big_sd3_models_dir, offline=True), presets["cpu"])
    expected = np.asarray(__import__("PIL.Image").Image.open(generate_image(request.check(resident.store.catalog), resident, outputs, QueuedJob()).outputs[0].path))
    resident.unload()
    tight = ModelManager(ModelStore(big_sd3_models_dir, offline=True), tight_preset(presets, 300))
    result = generate_image(request.check(tight.store.catalog), tight, outputs, QueuedJob())
    plan = tight.status().block_plan
    assert plan.fits and 0 < len(plan.resident) < 12 and plan.streamed_bytes > 0
    actual = np.asarray(__import__("PIL.Image").Image.open(result.outputs[0].path))
    assert np.array_equal(actual, expected)


def test_admission_refuses_a_job_that_cannot_fit_and_names_the_memory(demo_models_dir, presets, tmp_path):
    manager = ModelManager(ModelStore(demo_models_dir, offline=True), tight_preset(presets, 1.0))
    with pytest.raises(NotEnoughMemory) as refused:
        generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=2, width=1024, height=1024).check(manager.store.catalog), manager, OutputStore(tmp_path), QueuedJob())
    assert "GiB of GPU memory" in str(refused.value) and "allows" in str(refused.value)
    assert not list(tmp_path.rglob("*.png"))


def test_an_out_of_memory_mid_job_steps_down_retries_and_still_delivers(demo_models_dir, presets, tmp_path, monkeypatch):
    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["8gb-laptop"])
    request = ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=9)
    expected = generate_image(request.check(manager.store.catalog), manager, OutputStore(tmp_path / "a"), QueuedJob()).outputs[0].path
    calls = {"n": 0}
    original = SD3Transformer2DModel.forward

    def fails_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SD3Transformer2DModel, "forward", fails_once)
    result = generate_image(request.check(manager.store.catalog), manager, OutputStore(tmp_path / "b"), QueuedJob())
    assert len(result.outputs) == 1 and calls["n"] > 2
    assert manager.status().model_id == "demo-sd3"
    image = __import__("PIL.Image").Image
    assert np.array_equal(np.asarray(image.open(result.outputs[0].path)), np.asarray(image.open(expected)))


def test_int8_weights_are_streamed_by_the_engine_in_half_the_bytes_and_the_image_stays_close(big_sd3_models_dir, presets, tmp_path):
    outputs = OutputStore(tmp_path)
    request = ImageRequest(prompt="a fox", model="demo-sd3", steps=2, seed=3)
    images = {}
    plans = {}
    for weights in ("as shipped", "int8"):
        manager = ModelManager(ModelStore(big_sd3_models_dir, offline=True), tight_preset(presets, 300))
        result = generate_image(replace(request, weights=weights).check(manager.store.catalog), manager, outputs, QueuedJob())
        images[weights] = np.asarray(__import__("PIL.Image").Image.open(result.outputs[0].path)).astype(int)
        plans[weights] = manager.status().block_plan
        assert plans[weights] is not None and plans[weights].fits, weights  # the engine holds the denoiser in both
        manager.unload()
    held = {weights: plan.resident_bytes + plan.streamed_bytes for weights, plan in plans.items()}
    assert held["int8"] < 0.6 * held["as shipped"]
    difference = np.abs(images["int8"] - images["as shipped"])
    assert difference.any() and difference.mean() < 4.0
