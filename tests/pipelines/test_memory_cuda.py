"""The memory engine on a real GPU: streamed placements give the resident output exactly, in bf16, and
the peak VRAM stays within the plan. Skipped without CUDA."""

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel, SD3Transformer2DModel, StableDiffusion3Pipeline

from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed
from pipelines.memory.planner import WORKSPACE_BYTES, DenoiserShape, Workload, plan_blocks

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

FAMILIES = {"demo-sd3": (StableDiffusion3Pipeline, SD3Transformer2DModel), "demo-flux": (FluxPipeline, FluxTransformer2DModel)}


def latents(pipe) -> torch.Tensor:
    return pipe("a lighthouse", num_inference_steps=3, width=256, height=256, output_type="latent",
                generator=torch.Generator("cpu").manual_seed(2)).images


@pytest.mark.parametrize("model_id", list(FAMILIES))
@pytest.mark.parametrize("resident", [set(), {0}, {1}, {0, 1}])
@pytest.mark.parametrize("ring_slots", [1, 2, 3])
def test_every_placement_equals_resident_exactly_on_cuda(demo_models_dir, model_id, resident, ring_slots):
    pipeline_class, transformer_class = FAMILIES[model_id]
    folder = demo_models_dir / "demo" / model_id
    expected = latents(pipeline_class.from_pretrained(folder, dtype=torch.bfloat16).to("cuda"))
    model, streamer = load_streamed(transformer_class, folder / "transformer", torch.device("cuda"), torch.bfloat16,
                                    HostArena(pinned=True), ring_slots=ring_slots)
    streamer.place(resident)
    pipe = pipeline_class.from_pretrained(folder, transformer=model, dtype=torch.bfloat16)
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module) and name != "transformer":
            component.to("cuda")
    assert torch.equal(latents(pipe), expected)
    assert torch.equal(latents(pipe), expected), "a second job through the same ring is still exact"


def test_peak_vram_stays_within_the_plan(tmp_path):
    torch.manual_seed(0)
    big = SD3Transformer2DModel(
        sample_size=64, patch_size=2, in_channels=16, out_channels=16, num_layers=12, attention_head_dim=64,
        num_attention_heads=8, joint_attention_dim=256, caption_projection_dim=512, pooled_projection_dim=64, pos_embed_max_size=96,
    ).to(torch.bfloat16)
    big.save_pretrained(tmp_path / "transformer")
    weight_bytes = sum(p.numel() * 2 for p in big.parameters())
    del big
    torch.cuda.empty_cache()
    model, streamer = load_streamed(SD3Transformer2DModel, tmp_path / "transformer", torch.device("cuda"), torch.bfloat16, HostArena(pinned=True))
    tokens = 64 * 64 // 4 + 77
    blocks = streamer.block_bytes
    shape = DenoiserShape(tuple(blocks), weight_bytes - sum(blocks), 512, 2048)
    plan = plan_blocks(shape, Workload(tokens, batch=2), usable_bytes=int(weight_bytes * 0.6) + WORKSPACE_BYTES)
    assert plan.fits and 0 < len(plan.resident) < len(blocks)
    streamer.place(set(plan.resident))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    inputs = dict(
        hidden_states=torch.randn(2, 16, 64, 64, device="cuda", dtype=torch.bfloat16),
        encoder_hidden_states=torch.randn(2, 77, 256, device="cuda", dtype=torch.bfloat16),
        pooled_projections=torch.randn(2, 64, device="cuda", dtype=torch.bfloat16),
        timestep=torch.tensor([500, 500], device="cuda"),
    )
    inputs_bytes = sum(t.numel() * t.element_size() for t in inputs.values())
    with torch.inference_mode():
        model(**inputs)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    assert peak <= plan.device_bytes + inputs_bytes, f"peak {peak / 1e6:.0f} MB above the plan's {plan.device_bytes / 1e6:.0f} MB"
    assert peak < weight_bytes * 0.75, "streaming really keeps weights off the device"


def test_the_pinned_arena_locks_exactly_what_it_holds_and_copies_asynchronously():
    from pipelines.hardware import process_rss_bytes

    arena = HostArena(pinned=True)
    before = process_rss_bytes()
    blocks = [700_000_000] * 7  # 4.9 GB: a single pinned buffer would lock 8 GiB
    arena.start_model(blocks)
    grown = process_rss_bytes() - before
    assert grown < 1.15 * sum(blocks), f"pinning {sum(blocks) / 1e9:.1f} GB grew RSS by {grown / 1e9:.2f} GB"
    views = [arena.take(size) for size in blocks]
    assert all(view.is_pinned() for view in views)
    arena.free()


def test_the_app_gives_the_same_image_on_every_preset_within_its_budget(big_sd3_models_dir, presets, tmp_path):
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from pipelines.image.image_runner import ImageRequest, generate_image
    from pipelines.jobs import QueuedJob
    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore
    from pipelines.outputs import OutputStore

    request = ImageRequest(prompt="a fox", model="demo-sd3", steps=3, seed=5)
    tight = replace(presets["8gb-laptop"], vram_budget_gb=260e6 / 2**30, vram_reserve_gb=0.0)
    images, plans = [], []
    for preset in (presets["24gb"], presets["8gb-laptop"], tight):
        manager = ModelManager(ModelStore(big_sd3_models_dir, offline=True), preset)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        saved = generate_image(request.check(manager.store.catalog), manager, OutputStore(tmp_path), QueuedJob()).outputs[0]
        peak = torch.cuda.max_memory_allocated() - baseline
        assert peak <= preset.usable_vram_bytes, f"{preset.id}: peak {peak / 1e6:.0f} MB over {preset.usable_vram_bytes / 1e6:.0f} MB"
        images.append(np.asarray(Image.open(saved.path)))
        plans.append(manager.status().block_plan)
        manager.unload()
    assert plans[0].streamed_bytes == 0 and plans[2].streamed_bytes > 0
    assert all(np.array_equal(image, images[0]) for image in images)
