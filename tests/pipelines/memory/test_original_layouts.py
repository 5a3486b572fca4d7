"""Single files in the original FLUX (Black Forest Labs) and Wan (Alibaba) key layouts, read tensor by tensor under
diffusers' names: the table agrees with diffusers' own conversion, a bf16 file reads back exactly, and fp8 files
(plain, scaled with one `scale_weight` per layer, scaled per row) load into fp8 storage as stored, their fused layers
split with the scale each part needs, and give the bf16 file's output within fp8 tolerance."""

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers, convert_wan_transformer_to_diffusers

from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, read_real, state_shapes
from pipelines.memory.original_layouts import FLUX_BFL, WAN_ORIGINAL, UnknownScales, layout_segments, open_layout
from pipelines.memory.stored_weights import StoredAs
from pipelines.memory.weights_file import WeightsFile
from pipelines.tiny.checkpoint_files import PLAIN_FP8, SCALED_FP8, SCALED_PER_ROW, TensorEntry, write_original_layout_file, write_safetensors
from tests.pipelines.memory.test_stored_weights import DTYPE, MODELS, TOLERANCE, folder_of, relative_error

LAYOUTS = {"flux": FLUX_BFL, "wan": WAN_ORIGINAL}


def write_original(demo_models_dir, tmp_path, model_key: str, fp8: str | None):
    """The demo model's transformer as a single file in its original layout, bf16 or in fp8 as `fp8` says."""
    folder = folder_of(demo_models_dir, model_key)
    source = WeightsFile(folder)
    path = tmp_path / f"{model_key}-{(fp8 or 'bf16').replace(' ', '_')}.safetensors"
    shapes = state_shapes(MODELS[model_key][0], folder)
    write_original_layout_file(path, LAYOUTS[model_key], shapes, source.read, fp8=fp8, dtype=DTYPE)
    source.close()
    return path, shapes


def run_file(model_key: str, folder, path, shapes, stored: StoredAs):
    model_class, _, inputs = MODELS[model_key]
    weights = open_layout(path, model_class.__name__, shapes)
    assert weights is not None and weights.layout is LAYOUTS[model_key]
    model, streamer = load_streamed(model_class, folder, torch.device("cpu"), DTYPE, HostArena(pinned=False), stored=stored, weights=weights)
    streamer.place(set())
    with torch.no_grad():
        return model(**inputs(), return_dict=False)[0], streamer


def numbered(shape: tuple[int, ...], key_index: int) -> torch.Tensor:
    """A one-column tensor whose rows say which file tensor and which row they came from."""
    return (torch.arange(shape[0] if shape else 1, dtype=torch.float64) + key_index * 1_000_000).reshape(-1, 1)


@pytest.mark.parametrize("model_key", ["flux", "wan-i2v", "wan-vace"])
def test_the_layout_table_places_every_row_where_diffusers_conversion_puts_it(demo_models_dir, model_key):
    from pipelines.tiny import wan

    if model_key == "flux":
        # diffusers' FLUX conversion fixes the width at FLUX.1's 3072: the table is checked at that width, on shapes only.
        config = {**FluxTransformer2DModel.load_config(folder_of(demo_models_dir, "flux")), "num_layers": 1, "num_single_layers": 2,
                  "num_attention_heads": 24, "attention_head_dim": 128, "axes_dims_rope": (16, 56, 56)}
        with init_empty_weights():
            shapes = {name: tuple(t.shape) for name, t in FluxTransformer2DModel.from_config(config).state_dict().items()}
        convert = convert_flux_transformer_checkpoint_to_diffusers
    else:
        # Wan I2V's image branch and VACE's control blocks beside the plain blocks.
        with init_empty_weights():
            model = wan.tiny_transformer(0, image_to_video=True) if model_key == "wan-i2v" else wan.tiny_vace_transformer(0)
        shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        convert = convert_wan_transformer_to_diffusers
    segments = layout_segments(LAYOUTS[model_key.split("-")[0]], shapes)
    rows = {}
    for parts in segments.values():
        for segment in parts:
            rows[segment.key] = max(rows.get(segment.key, 0), segment.start + segment.rows)
    index = {key: number for number, key in enumerate(sorted(rows))}
    original = {key: numbered((rows[key],), index[key]) for key in rows}
    converted = convert(dict(original))
    assert set(converted) == set(shapes)
    for name, parts in segments.items():
        ours = torch.cat([original[s.key][s.start : s.start + s.rows] for s in parts])
        assert torch.equal(ours, converted[name].reshape(-1, 1)), name


@pytest.mark.parametrize("model_key", ["flux", "wan"])
def test_a_bf16_file_in_the_original_layout_reads_back_every_tensor_exactly(demo_models_dir, tmp_path, model_key):
    path, shapes = write_original(demo_models_dir, tmp_path, model_key, None)
    weights = open_layout(path, MODELS[model_key][0].__name__, shapes)
    source = WeightsFile(folder_of(demo_models_dir, model_key))
    assert weights.layout is LAYOUTS[model_key] and not weights.scaled
    for name in shapes:
        assert torch.equal(weights.read(name), source.read(name).to(DTYPE)), name
    assert "double_blocks.0.img_attn.qkv.weight" in weights.file or "blocks.0.self_attn.q.weight" in weights.file


@pytest.mark.parametrize("model_key", ["flux", "wan"])
@pytest.mark.parametrize("fp8", [PLAIN_FP8, SCALED_FP8, SCALED_PER_ROW])
def test_fp8_files_in_the_original_layouts_load_as_stored_and_give_the_bf16_files_output(demo_models_dir, tmp_path, model_key, fp8):
    folder = folder_of(demo_models_dir, model_key)
    bf16_path, shapes = write_original(demo_models_dir, tmp_path, model_key, None)
    fp8_path, _ = write_original(demo_models_dir, tmp_path, model_key, fp8)
    expected, _ = run_file(model_key, folder, bf16_path, shapes, StoredAs.SHIPPED)
    actual, streamer = run_file(model_key, folder, fp8_path, shapes, StoredAs.FP8)
    error = relative_error(actual, expected)
    assert 0 < error < TOLERANCE[StoredAs.FP8], f"{fp8}: relative error {error:.4f}"
    # The first block's weights hold the file's bytes as stored; a part of a fused layer (FLUX's qkv) its rows of it.
    file = WeightsFile(tmp_path, stem=fp8_path.stem)
    block = streamer.blocks[0]
    first = "transformer_blocks.0." if model_key == "flux" else "blocks.0."
    name = first + ("attn.to_k.weight" if model_key == "flux" else "attn1.to_k.weight")
    key = "double_blocks.0.img_attn.qkv" if model_key == "flux" else "blocks.0.self_attn.k"
    tensor = next(t for t in block.tensors if t.name == name)
    stored = tensor.destination(block.host)
    rows = stored.data.shape[0]
    start = rows if model_key == "flux" else 0  # k is the second third of qkv
    whole = file.read(f"{key}.weight")
    assert torch.equal(stored.data.view(torch.uint8), whole[start : start + rows].view(torch.uint8)), "fp8 bytes as stored"
    if fp8 == PLAIN_FP8:
        assert torch.all(stored.scale == 1)
    elif fp8 == SCALED_FP8:
        assert torch.all(stored.scale == file.read(f"{key}.scale_weight")), "one scale per layer: each part takes it whole"
    else:
        assert torch.equal(stored.scale, file.read(f"{key}.scale_weight")[start : start + rows]), "per-row scales split with the rows"
    # Read into int8 storage instead, the fp8 values are scaled first: still the bf16 file's output.
    as_int8, _ = run_file(model_key, folder, fp8_path, shapes, StoredAs.INT8)
    assert relative_error(as_int8, expected) < TOLERANCE[StoredAs.FP8] + TOLERANCE[StoredAs.INT8]


def test_the_scale_is_what_makes_a_scaled_file_right(demo_models_dir, tmp_path):
    """The check above fails for a reader that drops the scales: the stored fp8 values alone are far from the weights."""
    path, shapes = write_original(demo_models_dir, tmp_path, "flux", SCALED_FP8)
    weights = open_layout(path, "FluxTransformer2DModel", shapes)
    name = "single_transformer_blocks.0.proj_mlp.weight"  # the last rows of a fused `linear1`
    scaled, unscaled = read_real(weights, name), weights.read(name).float()
    reference = WeightsFile(folder_of(demo_models_dir, "flux")).read(name).float()
    assert relative_error(scaled, reference) < TOLERANCE[StoredAs.FP8] < relative_error(unscaled, reference)


def test_a_file_with_scales_of_another_kind_is_refused_not_read_without_them(demo_models_dir, tmp_path):
    path, shapes = write_original(demo_models_dir, tmp_path, "wan", PLAIN_FP8)
    file = WeightsFile(tmp_path, stem=path.stem)
    entries = [TensorEntry(name, location.shape, location.dtype, lambda name=name: file.read(name)) for name, location in file.locations.items()]
    entries.append(TensorEntry("blocks.0.self_attn.q.weight_scale", (), torch.float32, lambda: torch.tensor(0.01)))
    other = tmp_path / "wan-other-scales.safetensors"
    write_safetensors(other, entries)
    with pytest.raises(UnknownScales, match="weight_scale"):
        open_layout(other, "WanTransformer3DModel", shapes)
    assert open_layout(path, "WanTransformer3DModel", shapes) is not None


def test_a_file_of_another_size_matches_no_layout(demo_models_dir, tmp_path):
    path, shapes = write_original(demo_models_dir, tmp_path, "flux", SCALED_FP8)
    wider = {name: (shape[0] * 2, *shape[1:]) if name.endswith("to_q.weight") else shape for name, shape in shapes.items()}
    assert open_layout(path, "FluxTransformer2DModel", wider) is None


CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from diffusers import FluxTransformer2DModel
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, state_shapes
from pipelines.memory.original_layouts import open_layout
from pipelines.memory.stored_weights import StoredAs

def hwm():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) * 1024

folder, path = sys.argv[2], sys.argv[3]
weights = open_layout(path, "FluxTransformer2DModel", state_shapes(FluxTransformer2DModel, folder))
baseline = hwm()
model, streamer = load_streamed(FluxTransformer2DModel, folder, torch.device("cpu"), torch.bfloat16, HostArena(pinned=False),
                                stored=StoredAs.FP8, weights=weights)
stored = [t.stored_dtype for block in streamer.blocks for t in block.tensors if t.stored_dtype is not None]
print(json.dumps({"growth": hwm() - baseline, "fp8_weights": len(stored), "all_fp8": set(stored) == {torch.float8_e4m3fn}}))
"""


def test_reading_a_scaled_fp8_file_in_the_original_layout_never_holds_the_bf16_weights(tmp_path):
    """A 290 MB scaled fp8 FLUX file in BFL's layout (a 570 MB model in bf16) read into fp8 storage raises the peak RSS
    by about the file's size, not the bf16 size: each tensor goes from its rows of the file straight into the arena."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from pipelines.tiny.checkpoint_files import model_shapes, random_entries
    from tests.pipelines.memory.test_quantize_while_reading import MB, MEDIUM_FLUX, SLACK_BYTES

    config = {**MEDIUM_FLUX, "num_single_layers": 48}
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel", **config}))
    entries = {entry.name: entry for entry in random_entries(model_shapes(FluxTransformer2DModel, config), torch.float32, seed=0)}
    shapes = {name: entry.shape for name, entry in entries.items()}
    bf16_bytes = sum(torch.Size(shape).numel() * 2 for shape in shapes.values())
    path = tmp_path / "flux1-big_fp8_e4m3fn_scaled.safetensors"
    written = write_original_layout_file(path, FLUX_BFL, shapes, lambda name: entries[name].make(), fp8=SCALED_FP8)
    assert 250 * MB < written < 0.55 * bf16_bytes
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(folder), str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["all_fp8"] and result["fp8_weights"] > 100
    assert result["growth"] <= written + SLACK_BYTES, f"peak RSS grew {result['growth'] / MB:.0f} MB for a {written / MB:.0f} MB file"
    assert result["growth"] < 0.75 * bf16_bytes, f"peak RSS grew {result['growth'] / MB:.0f} MB: the {bf16_bytes / MB:.0f} MB bf16 model was held"
