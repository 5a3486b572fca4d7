"""Storage formats inside the memory engine, on the CPU: int8 and fp8 blocks give the bf16 output within a stated
tolerance, streamed and resident placements of one storage give the same output exactly, a streamed int8 block copies
about half the bytes of bf16, and ComfyUI's fp8 single files load straight into fp8 storage."""

import pytest
import torch
from diffusers import FluxTransformer2DModel, WanTransformer3DModel

from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, stream_loaded
from pipelines.memory.stored_weights import StoredAs, dequantize, quantize
from pipelines.memory.weights_file import WeightsFile
from pipelines.tiny.checkpoint_files import write_fp8_file

# Relative error (‖quantized − bf16‖ / ‖bf16‖) of one forward of the tiny transformers, measured 0.4 % (int8) and
# 0.6 % (fp8) on demo-flux; the bounds leave room for other seeds and models, and are far below a broken storage (~100 %).
TOLERANCE = {StoredAs.INT8: 0.02, StoredAs.FP8: 0.04}
DTYPE = torch.bfloat16


def flux_inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 256, 64, generator=generator).to(DTYPE),
        encoder_hidden_states=torch.randn(1, 20, 32, generator=generator).to(DTYPE),
        pooled_projections=torch.randn(1, 32, generator=generator).to(DTYPE), timestep=torch.tensor([0.5], dtype=DTYPE),
        img_ids=torch.zeros(256, 3), txt_ids=torch.zeros(20, 3), guidance=torch.tensor([3.5], dtype=DTYPE),
    )


def wan_inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 16, 3, 8, 8, generator=generator).to(DTYPE), timestep=torch.tensor([500]),
        encoder_hidden_states=torch.randn(1, 12, 32, generator=generator).to(DTYPE),
    )


MODELS = {"flux": (FluxTransformer2DModel, "demo-flux", flux_inputs), "wan": (WanTransformer3DModel, "demo-wan", wan_inputs)}


def run(model_key: str, folder, stored: StoredAs, resident: set[int], forwards: int = 1, **load) -> tuple[list[torch.Tensor], object]:
    model_class, _, inputs = MODELS[model_key]
    model, streamer = load_streamed(model_class, folder, torch.device("cpu"), DTYPE, HostArena(pinned=False), stored=stored, **load)
    streamer.place(resident)
    with torch.no_grad():
        outputs = [model(**inputs(), return_dict=False)[0] for _ in range(forwards)]
    return outputs, streamer


def folder_of(demo_models_dir, model_key: str):
    return demo_models_dir / "demo" / MODELS[model_key][1] / "transformer"


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


@pytest.mark.parametrize("model_key", ["flux", "wan"])
@pytest.mark.parametrize("stored", [StoredAs.INT8, StoredAs.FP8])
def test_quantized_storage_gives_the_bf16_output_within_tolerance(demo_models_dir, model_key, stored):
    folder = folder_of(demo_models_dir, model_key)
    [expected], _ = run(model_key, folder, StoredAs.SHIPPED, set())
    [actual], streamer = run(model_key, folder, stored, set())
    error = relative_error(actual, expected)
    assert 0 < error < TOLERANCE[stored], f"{stored.value}: relative error {error:.4f}"
    quantized = [t for block in streamer.blocks for t in block.tensors if t.stored_dtype is not None]
    assert quantized and all(t.shape.numel() * 1 == t.nbytes for t in quantized), "every block Linear weight is stored in one byte"


@pytest.mark.parametrize("model_key", ["flux", "wan"])
@pytest.mark.parametrize("stored", [StoredAs.INT8, StoredAs.FP8])
def test_streamed_and_resident_placements_of_one_storage_give_the_same_output(demo_models_dir, model_key, stored):
    folder = folder_of(demo_models_dir, model_key)
    all_blocks = set(range(len(run(model_key, folder, stored, set())[1].blocks)))
    expected, _ = run(model_key, folder, stored, all_blocks, forwards=2)
    for resident in (set(), {0}, {1}):
        actual, _ = run(model_key, folder, stored, resident, forwards=2)  # the ring carries over between forwards
        assert all(torch.equal(a, e) for a, e in zip(actual, expected)), f"resident {resident}"


def test_a_streamed_int8_block_copies_about_half_the_bytes_of_bf16(tmp_path):
    # Wide enough that the Linear weights dominate a block, as in the real models (tiny ones are mostly biases and norms).
    torch.manual_seed(0)
    FluxTransformer2DModel(
        patch_size=1, in_channels=64, out_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=64,
        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(16, 16, 32),
    ).to(DTYPE).save_pretrained(tmp_path)
    copied = {}
    for stored in (StoredAs.SHIPPED, StoredAs.INT8):
        _, streamer = run("flux", tmp_path, stored, set())
        copied[stored] = streamer.streamed_copy_bytes
    ratio = copied[StoredAs.INT8] / copied[StoredAs.SHIPPED]
    assert 0.5 <= ratio < 0.53, f"int8 blocks copy {ratio:.3f} of the bf16 bytes"


def test_a_model_streamed_after_loading_stores_its_blocks_as_asked(demo_models_dir):
    folder = folder_of(demo_models_dir, "flux")
    [expected], _ = run("flux", folder, StoredAs.INT8, set())
    model = FluxTransformer2DModel.from_pretrained(folder)  # in the file's dtype, as the folder's reader quantizes from it
    streamer = stream_loaded(model, torch.device("cpu"), DTYPE, HostArena(pinned=False), stored=StoredAs.INT8)
    streamer.place({0})
    with torch.no_grad():
        assert torch.equal(model(**flux_inputs(), return_dict=False)[0], expected)


def test_quantizing_is_per_output_channel_and_round_trips_within_one_step():
    torch.manual_seed(0)
    weight = torch.randn(64, 48) * torch.logspace(-3, 1, 64).unsqueeze(1)  # rows of very different magnitudes
    for stored, relative_step in ((StoredAs.INT8, 1 / 127), (StoredAs.FP8, 1 / 8)):
        restored = dequantize(quantize(weight, stored), torch.float32)
        row_max = weight.abs().amax(dim=1, keepdim=True)
        assert ((restored - weight).abs() <= row_max * relative_step).all(), stored.value


@pytest.mark.parametrize("scaled", [False, True])
def test_fp8_single_files_load_straight_into_fp8_storage(demo_models_dir, tmp_path, scaled):
    """A `*_fp8_e4m3fn.safetensors` file and a scaled one (`scale_weight` per layer): their bytes are kept as stored,
    with the file's scale, and the forward matches the file's values expanded by hand."""
    folder = folder_of(demo_models_dir, "flux")
    name = "flux_scaled_fp8" if scaled else "flux_fp8_e4m3fn"
    source = WeightsFile(folder)
    write_fp8_file(source, tmp_path / f"{name}.safetensors", scaled, fp8_names=lambda key: key.endswith("weight") and len(source.locations[key].shape) == 2)
    source.close()
    [from_file], streamer = run("flux", folder, StoredAs.FP8, {0}, weights=WeightsFile(tmp_path, stem=name))
    shipped = WeightsFile(tmp_path, stem=name)
    block = streamer.blocks[1]
    tensor = next(t for t in block.tensors if t.stored_dtype is not None)
    stored = tensor.destination(block.host)
    assert torch.equal(stored.data.view(torch.uint8), shipped.read(tensor.name).view(torch.uint8)), "fp8 bytes as stored"
    scale_key = tensor.name.removesuffix("weight") + "scale_weight"
    expected_scale = float(shipped.read(scale_key)) if scaled else 1.0
    assert torch.all(stored.scale == expected_scale)
    [reference], _ = run("flux", folder, StoredAs.SHIPPED, set())
    assert relative_error(from_file, reference) < TOLERANCE[StoredAs.FP8]
    # Read into int8 storage instead, the fp8 values are scaled first: still the model's output.
    [as_int8], _ = run("flux", folder, StoredAs.INT8, set(), weights=WeightsFile(tmp_path, stem=name))
    assert relative_error(as_int8, reference) < TOLERANCE[StoredAs.FP8] + TOLERANCE[StoredAs.INT8]
