"""Quantizing while reading never holds the model in bf16: a 390 MB bf16 transformer loaded with int8 storage raises the
process's peak RSS by about its int8 size, far below its bf16 size. And the laptop bench runs end to end on tiny
configs (the full-size run is in docs/memory.md)."""

import json
import subprocess
import sys
from pathlib import Path

from pipelines.memory.host_arena import ALIGNMENT
from pipelines.memory.stored_weights import CHUNK_ELEMENTS

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench" / "bench_laptop.py"
MB = 1_000_000
# What may come on top of the int8 arena and the trunk: each of the 8 reading threads keeps a staging buffer of the
# largest tensor it read (in the file's dtype) and a float32 chunk it quantizes in, plus the allocator's slack.
READING_THREADS, SLACK_BYTES = 8, 100 * MB

# FLUX's layout, 512 wide (the real one is 3072) with many blocks: the model is big beside one tensor, as the real
# one is (its largest tensor is 0.3 % of it). 10 double and 24 single blocks.
MEDIUM_FLUX = dict(
    patch_size=1, in_channels=64, out_channels=None, num_layers=10, num_single_layers=24, attention_head_dim=128,
    num_attention_heads=4, joint_attention_dim=512, pooled_projection_dim=256, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_an_int8_load_never_holds_the_bf16_weights(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.bench_laptop import write_part

    written = write_part("flux", MEDIUM_FLUX, tmp_path)
    assert written > 350 * MB
    done = bench("--child", "flux", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    growth = (result["load_peak_rss_gb"] - result["baseline_rss_gb"]) * 1e9
    stored = (result["arena_gb"] + result["trunk_gb"]) * 1e9
    largest_tensor = 512 * (512 + 2048) * 2  # a single block's output projection, 512 × 2560 in bf16
    margin = READING_THREADS * (largest_tensor + 4 * CHUNK_ELEMENTS + ALIGNMENT) + SLACK_BYTES
    assert stored < 0.6 * written, "int8 keeps about half the bytes"
    assert growth <= stored + margin, f"peak RSS grew {growth / MB:.0f} MB for {stored / MB:.0f} MB stored (+ {margin / MB:.0f} MB margin)"
    assert growth < 0.75 * written, f"peak RSS grew {growth / MB:.0f} MB: the {written / MB:.0f} MB bf16 model was held"


def test_the_laptop_bench_runs_on_tiny_configs(tmp_path):
    done = bench("--smoke", "--models", "flux", "--caps", "", "--dir", str(tmp_path / "bench"))
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| FLUX.1 dev transformer") or line.startswith("| T5-XXL")]
    assert len(table) == 2 and not any("failed" in line for line in table), done.stdout
    assert not (tmp_path / "bench").exists(), "the checkpoints are deleted afterwards"
