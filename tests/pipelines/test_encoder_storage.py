"""Text encoders held by the memory engine: stored int8/fp8 (quantized while reading), streamed block by block, read
from disk as used, and read from the community's GGUF encoder files. Tiny encoders in the real layouts."""

import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file

from pipelines.memory.block_streamer import find_blocks
from pipelines.memory.encoder_storage import StoredLinear, read_encoder, read_encoder_folder, build_empty, encoder_class, stored_bytes
from pipelines.memory.encoder_streaming import EncoderStreamer
from pipelines.memory import gguf_encoder
from pipelines.memory.gguf_encoder import gguf_metadata, read_gguf_encoder
from pipelines.memory.mapped_weights import map_encoder
from pipelines.memory.stored_weights import StoredAs
from pipelines.memory.weights_file import WeightsFile
from pipelines.tiny import flux, hidream
from pipelines.tiny.cogview4 import tiny_glm
from pipelines.tiny.gguf_encoder import write_gguf_encoder
from pipelines.tiny.sd3 import tiny_t5
from pipelines.tiny.wan import tiny_umt5

ENCODERS = ["t5", "umt5", "glm", "clip", "llama"]
# Measured on these encoders (2 × 16 tokens), relative to the mean magnitude of the float32 output: the largest and
# the mean difference from the same encoder read in bf16 (docs/memory.md, "Text encoders"). Bounds: about twice that.
QUALITY_BOUNDS = {StoredAs.INT8: (0.12, 0.02), StoredAs.FP8: (0.3, 0.06)}


@pytest.fixture(scope="module")
def encoder_folders(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("encoders")
    for name, model in [("t5", tiny_t5(1, 32)), ("umt5", tiny_umt5(2)), ("glm", tiny_glm(3)), ("clip", flux.tiny_clip(4))]:
        model.save_pretrained(folder / name)
    hidream.build_llama(folder / "llama", 5)
    return {name: folder / name for name in ENCODERS}


def token_ids() -> torch.Tensor:
    return torch.randint(2, 60, (2, 16), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def last_hidden(model, ids=None) -> torch.Tensor:
    return model(token_ids() if ids is None else ids, output_hidden_states=True).hidden_states[-1].float()


def reference(folder: Path, dtype: torch.dtype):
    return encoder_class(folder).from_pretrained(folder, dtype=dtype).eval()


@pytest.mark.parametrize("name, expected", [
    ("t5", "encoder.block.0."), ("umt5", "encoder.block.0."), ("glm", "layers.0."), ("clip", "encoder.layers.0."),
    ("llama", "model.layers.0."),
])
def test_an_encoders_nested_layers_are_its_blocks(encoder_folders, name, expected):
    blocks = find_blocks(reference(encoder_folders[name], torch.float32))
    assert blocks[0][0] == expected and len(blocks) >= 1


def test_a_diffusers_transformers_blocks_are_found_as_before():
    transformer = flux.tiny_transformer(0)
    assert [prefix for prefix, _ in find_blocks(transformer)] == [
        "transformer_blocks.0.", "single_transformer_blocks.0.", "single_transformer_blocks.1.",
    ]


@pytest.mark.parametrize("name", ENCODERS)
def test_an_encoder_read_as_shipped_is_the_one_transformers_reads(encoder_folders, name):
    ours = read_encoder_folder(encoder_folders[name], torch.bfloat16, StoredAs.SHIPPED)
    assert torch.equal(last_hidden(ours), last_hidden(reference(encoder_folders[name], torch.bfloat16)))


@pytest.mark.parametrize("stored", [StoredAs.INT8, StoredAs.FP8])
@pytest.mark.parametrize("name", ENCODERS)
def test_int8_and_fp8_encoders_stay_within_the_stated_distance_of_bf16(encoder_folders, name, stored):
    folder = encoder_folders[name]
    ours = read_encoder_folder(folder, torch.bfloat16, stored)
    linears = [module for _, block in find_blocks(ours) for module in block.modules() if isinstance(module, StoredLinear)]
    assert linears and all(linear.stored.element_size() == 1 for linear in linears)
    shipped = read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED)
    assert stored_bytes(ours) < stored_bytes(shipped)
    scale = last_hidden(reference(folder, torch.float32)).abs().mean()
    difference = (last_hidden(ours) - last_hidden(reference(folder, torch.bfloat16))).abs()
    largest, mean = QUALITY_BOUNDS[stored]
    assert 0 < difference.mean() / scale <= mean
    assert difference.max() / scale <= largest


class CountingSource:
    """A weights file that remembers the most source bytes alive at once."""

    def __init__(self, folder: Path):
        self.weights = WeightsFile(folder, stem="model")
        self.alive = self.most = 0

    def __contains__(self, name):
        return name in self.weights

    def read(self, name):
        tensor = self.weights.read(name)
        self.alive += tensor.nbytes
        self.most = max(self.most, self.alive)
        weakref.finalize(tensor, self._gone, tensor.nbytes)
        return tensor

    def _gone(self, nbytes):
        self.alive -= nbytes


@pytest.mark.parametrize("name", ["umt5", "llama"])
def test_quantizing_while_reading_never_holds_more_than_one_tensor_of_the_shipped_encoder(encoder_folders, name):
    folder = encoder_folders[name]
    source = CountingSource(folder)
    read_encoder(build_empty(encoder_class(folder), folder), source, torch.bfloat16, StoredAs.INT8)
    sizes = sorted(location.nbytes for location in source.weights.locations.values())
    assert source.most <= sizes[-1] < sum(sizes) / 2


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("stored", list(StoredAs))
def test_a_streamed_encoder_computes_exactly_what_the_resident_one_does(encoder_folders, stored, whole):
    folder = encoder_folders["umt5"]
    expected = last_hidden(read_encoder_folder(folder, torch.bfloat16, stored))
    model = read_encoder_folder(folder, torch.bfloat16, stored)
    host = {name: parameter.data for name, parameter in model.named_parameters()}
    streamer = EncoderStreamer(model, torch.device("cpu"), whole=whole)
    seen = []
    block = find_blocks(model)[0][1]
    block.register_forward_pre_hook(lambda module, args: seen.append(
        all(p.data_ptr() != host[n].data_ptr() for n, p in model.named_parameters() if n.startswith("encoder.block.0."))
    ))
    assert torch.equal(last_hidden(model), expected)
    assert seen == [True], "the block computes on its visiting copy"
    assert streamer.copied_bytes == streamer.host_bytes
    streamer.offload()
    assert all(parameter.data_ptr() == host[name].data_ptr() for name, parameter in model.named_parameters()), "back on the host"


def test_the_disk_tier_gives_the_embeddings_of_the_encoder_read_into_ram(encoder_folders, tmp_path):
    folder = tmp_path / "t5-bf16"
    reference(encoder_folders["t5"], torch.bfloat16).save_pretrained(folder)
    mapped = map_encoder(folder, torch.bfloat16)
    assert torch.equal(last_hidden(mapped), last_hidden(read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED)))
    streamer = EncoderStreamer(mapped, torch.device("cpu"))
    assert torch.equal(last_hidden(mapped), last_hidden(read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED)))
    streamer.remove()


MEASURE = """
import json, sys, torch
from pipelines.memory.encoder_storage import read_encoder_folder
from pipelines.memory.mapped_weights import map_encoder
from pipelines.memory.stored_weights import StoredAs

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmHWM", "RssAnon", "RssFile")}

folder, tier, out = sys.argv[1:]
import transformers
transformers.T5EncoderModel  # the model's code is imported before the baseline: 115 MB of it is not the weights'
before = status()
model = map_encoder(folder, torch.bfloat16) if tier == "disk" else read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED)
with torch.no_grad():
    hidden = model(torch.arange(2, 34).reshape(1, 32)).last_hidden_state
after = status()
torch.save(hidden, out + ".pt")
json.dump({"before": before, "after": after}, open(out, "w")); print(tier, {k: (after[k] - before[k]) // 2**20 for k in after})
"""


def test_the_disk_tier_keeps_the_encoder_out_of_the_process_ram(tmp_path):
    """A 270 MB bf16 T5 encoder: read into RAM, the process's anonymous memory grows by its size; read from disk as
    used, it stays out of it (file-backed pages only, which the OS may drop) and gives the same embeddings. (`VmHWM`
    counts both kinds, so it is no measure of this.)"""
    folder = tmp_path / "t5"
    config = transformers.T5Config(vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=8, num_heads=16,
                                   feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                                   architectures=["T5EncoderModel"])
    config.save_pretrained(folder)
    # Random weights written directly (transformers' own initialisation of 135 M parameters takes most of a minute here).
    generator = torch.Generator().manual_seed(0)
    shapes = {name: p.shape for name, p in build_empty(transformers.T5EncoderModel, folder).named_parameters()}
    save_file({name: (torch.randn(shape, generator=generator) * 0.05).to(torch.bfloat16) for name, shape in shapes.items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    encoder_bytes = (folder / "model.safetensors").stat().st_size
    assert encoder_bytes > 250e6
    grown = {}
    for tier in ("ram", "disk"):
        out = tmp_path / f"{tier}.json"
        subprocess.run([sys.executable, "-c", MEASURE, str(folder), tier, str(out)], check=True, cwd=Path(__file__).parents[2])
        figures = json.loads(out.read_text())
        grown[tier] = {key: figures["after"][key] - figures["before"][key] for key in figures["after"]}
    assert grown["ram"]["RssAnon"] > 0.9 * encoder_bytes
    assert grown["disk"]["RssAnon"] < 0.2 * encoder_bytes
    assert grown["disk"]["RssFile"] > 0.5 * encoder_bytes, "the pages it used are the file's"
    assert torch.equal(torch.load(tmp_path / "disk.json.pt"), torch.load(tmp_path / "ram.json.pt"))


@pytest.mark.parametrize("quant, largest, mean", [("Q8_0", 0.08, 0.02), ("F16", 0.005, 0.001)])
@pytest.mark.parametrize("name, prefix", [("t5", "t5-v1_1-xxl-encoder"), ("umt5", "umt5-xxl-encoder")])
def test_a_gguf_encoder_file_gives_the_embeddings_of_the_encoder_it_came_from(
    encoder_folders, tmp_path, monkeypatch, name, prefix, quant, largest, mean
):
    folder = encoder_folders[name]
    path = write_gguf_encoder(folder, tmp_path / f"{prefix}-{quant}.gguf", quant, name=prefix)
    assert gguf_metadata(path)["architecture"] == "t5encoder"
    ours = read_gguf_encoder(path, folder, torch.float32, StoredAs.SHIPPED)
    expected = last_hidden(reference(folder, torch.float32))
    difference = (last_hidden(ours) - expected).abs()
    assert 0 < difference.mean() / expected.abs().mean() <= mean
    assert difference.max() / expected.abs().mean() <= largest
    # The file is one transformers reads too, to the same weights.
    theirs = encoder_class(folder).from_pretrained(tmp_path, gguf_file=path.name, config=encoder_class(folder).config_class.from_pretrained(folder), dtype=torch.float32)
    assert torch.equal(last_hidden(theirs), last_hidden(ours))
    # Dequantized a few rows at a time (UMT5-XXL's embedding has 256k rows), the weights are the same.
    monkeypatch.setattr(gguf_encoder, "ROWS_AT_ONCE", 7)
    assert torch.equal(last_hidden(read_gguf_encoder(path, folder, torch.float32, StoredAs.SHIPPED)), last_hidden(ours))
    stored = read_gguf_encoder(path, folder, torch.bfloat16, StoredAs.INT8)
    assert any(isinstance(module, StoredLinear) for module in stored.modules())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("tier", ["as shipped", "int8", "fp8", "disk"])
def test_on_the_gpu_a_visiting_encoder_gives_the_resident_output_and_goes_back_to_its_host_weights(encoder_folders, tmp_path, tier, whole):
    folder = tmp_path / "umt5"
    reference(encoder_folders["umt5"], torch.bfloat16).save_pretrained(folder)

    def load():
        return map_encoder(folder, torch.bfloat16) if tier == "disk" else read_encoder_folder(folder, torch.bfloat16, StoredAs(tier))

    ids = token_ids().cuda()
    expected = last_hidden(load().to("cuda"), ids)
    model = load()
    streamer = EncoderStreamer(model, torch.device("cuda"), whole=whole)
    assert torch.equal(last_hidden(model, ids), expected)
    streamer.offload()
    assert all(parameter.device.type == "cpu" for parameter in model.parameters())
    assert streamer.copied_bytes == streamer.host_bytes


def test_the_plans_figures_for_held_encoders_follow_the_catalogs_bytes():
    from pipelines.memory.encoder_plan import TRUNK_SHARE, disk_read_bytes, stored_encoder_bytes

    t5_xxl = 9_520_000_000
    assert stored_encoder_bytes(t5_xxl, "as shipped") == t5_xxl
    int8 = stored_encoder_bytes(t5_xxl, "int8", TRUNK_SHARE["T5EncoderModel"])
    assert int8 == stored_encoder_bytes(t5_xxl, "fp8", TRUNK_SHARE["T5EncoderModel"])
    assert 4.8e9 < int8 < 5.0e9
    assert disk_read_bytes(t5_xxl) == t5_xxl


def test_an_int8_encoder_takes_what_the_plan_says(encoder_folders):
    from pipelines.memory.encoder_plan import stored_encoder_bytes

    folder = encoder_folders["umt5"]
    shipped = stored_bytes(read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED))
    stored = stored_bytes(read_encoder_folder(folder, torch.bfloat16, StoredAs.INT8))
    blocks = sum(p.nbytes for _, block in find_blocks(reference(folder, torch.bfloat16)) for p in block.parameters())
    trunk_share = 1 - blocks / shipped
    # The per-row scales are what the estimate leaves out: a few percent for these 32-wide layers, under 0.1% at 4096.
    assert stored_encoder_bytes(shipped, "int8", trunk_share) <= stored <= 1.15 * stored_encoder_bytes(shipped, "int8", trunk_share)


def test_an_encoder_shipped_as_an_fp16_variant_is_read_from_that_file(encoder_folders, tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_bytes((encoder_folders["clip"] / "config.json").read_bytes())
    (folder / "model.fp16.safetensors").write_bytes((encoder_folders["clip"] / "model.safetensors").read_bytes())
    expected = last_hidden(reference(encoder_folders["clip"], torch.bfloat16))
    assert torch.equal(last_hidden(read_encoder_folder(folder, torch.bfloat16, StoredAs.SHIPPED, variant="fp16")), expected)
    assert torch.equal(last_hidden(map_encoder(folder, torch.bfloat16, variant="fp16")), expected)
