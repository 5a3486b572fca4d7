"""The planner's second activation model: blocks run in token chunks only when whole blocks would not fit."""

from dataclasses import replace

import pytest

from pipelines.memory.planner import (
    GIB, LEAN_HELD_WIDTHS, WORKSPACE_BYTES, DenoiserShape, Workload, activation_bytes, lean_activation_bytes, plan_blocks,
    skyreels_lean_held,
)

# Wan2.1-14B as stored in int8: 40 blocks of 0.35 GB, 0.57 GB of trunk, a 0.70 GB scratch, width 5120, FFN 13,824.
WAN14B = DenoiserShape(tuple([354_000_000] * 40), 572_000_000, 5120, 13824, scratch_bytes=702_000_000, lean=True)
USABLE = int(5.7 * GIB)


def test_a_job_whole_blocks_fit_gets_the_same_plan_as_a_model_without_a_lean_forward():
    small = Workload(8_000)
    assert plan_blocks(WAN14B, small, USABLE) == plan_blocks(replace(WAN14B, lean=False), small, USABLE)
    assert plan_blocks(WAN14B, small, USABLE).chunk_tokens == 0


def test_720p_wan_runs_lean_in_the_largest_chunk_that_fits_with_activations_as_counted():
    workload = Workload(76_112)  # 1280×720×81 and the text
    plan = plan_blocks(WAN14B, workload, USABLE)
    assert not plan_blocks(replace(WAN14B, lean=False), workload, USABLE).fits
    assert plan.fits and plan.chunk_tokens == 2048 and plan.device_bytes <= USABLE
    fixed = plan.device_bytes - plan.activation_bytes
    assert fixed + lean_activation_bytes(WAN14B, workload, 4096) > USABLE, "the next larger chunk would not fit"
    held = LEAN_HELD_WIDTHS * 5120 * 76_112 * 2
    chunk = 6 * 13824 * 2048 * 2
    assert plan.activation_bytes == held + chunk + WORKSPACE_BYTES == lean_activation_bytes(WAN14B, workload, 2048)
    assert plan.activation_bytes < activation_bytes(WAN14B, workload) / 3
    assert plan.notes[0].startswith("blocks run in token chunks of 2048 tokens") and "not measured on a GPU" in plan.notes[0]


def test_a_tighter_card_gets_a_smaller_chunk_then_a_refusal():
    workload = Workload(76_112)
    base = WAN14B.trunk_bytes + 2 * WAN14B.block_bytes[0] + WAN14B.scratch_bytes
    tight = base + lean_activation_bytes(WAN14B, workload, 2048)
    assert plan_blocks(WAN14B, workload, tight).chunk_tokens == 2048
    refused = plan_blocks(WAN14B, workload, base + lean_activation_bytes(WAN14B, workload, 1024) - 1)
    assert not refused.fits and "and run in token chunks" in refused.notes[0]


def test_vace_hints_leave_the_device_and_are_counted_in_host_ram():
    vace = replace(WAN14B, held_width=8 * 5120)
    plan = plan_blocks(vace, Workload(76_112), USABLE)
    assert plan.fits and plan.host_bytes == 8 * 5120 * 76_112 * 2
    assert plan.activation_bytes == lean_activation_bytes(WAN14B, Workload(76_112), plan.chunk_tokens)


def test_skyreels_v2_holds_its_modulation_per_token_with_whole_blocks_and_per_frame_when_lean():
    """SkyReels V2 DF 14B at 960×544×97 (51,000 tokens and the text): its own forward holds 7 widths per token outside
    its blocks; its lean model forward 7 widths per latent frame, for at most 25 frames (1.8 MB): it fits lean."""
    skyreels = replace(WAN14B, model_held_width=7 * 5120, lean_model_held=skyreels_lean_held(5120))
    workload = Workload(51_512)
    assert skyreels.lean_model_held == 7 * 5120 * 25
    assert pytest.approx(activation_bytes(skyreels, workload) - activation_bytes(WAN14B, workload)) == 7 * 5120 * 51_512 * 2
    assert lean_activation_bytes(skyreels, workload, 8192) - lean_activation_bytes(WAN14B, workload, 8192) == 7 * 5120 * 25 * 2
    plan = plan_blocks(skyreels, workload, USABLE)
    assert plan.fits and plan.chunk_tokens == 8192 and plan.device_bytes <= USABLE
    # Counted per token, as before the lean model forward, the same job did not fit.
    per_token = replace(WAN14B, lean_model_held=7 * 5120 * 51_512)
    assert not plan_blocks(per_token, workload, USABLE).fits


def test_the_planner_reads_skyreels_v2s_held_activations_from_the_loaded_model():
    from pipelines.memory.planner import denoiser_shape
    from pipelines.tiny import skyreels_v2, wan

    model = skyreels_v2.tiny_transformer(1)
    shape = denoiser_shape(model, [1000] * len(model.blocks), lean=True)
    width = wan.TRANSFORMER_CONFIG["num_attention_heads"] * wan.TRANSFORMER_CONFIG["attention_head_dim"]
    assert (shape.model_held_width, shape.lean_model_held) == (7 * width, 7 * width * 25)
    wan_shape = denoiser_shape(wan.tiny_transformer(1, image_to_video=False), [1000] * 2, lean=True)
    assert (wan_shape.model_held_width, wan_shape.lean_model_held) == (0, 0)
