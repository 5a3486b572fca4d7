"""bench/bench_memory.py --smoke: every mode of the GPU benchmark runs on the CPU on a tiny Wan transformer and lands in
the table, with outputs checked against the resident run and the laptop link's waits accounted per copied byte."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_memory.py"
TITLE = "Wan2.1-1.3B transformer, 832×480×81"
AS_SHIPPED = ("diffusers", "diffusers-lowmem", "ours", "diffusers-laptop", "ours-laptop")
QUANTIZED = ("ours-int8", "ours-fp8", "ours-int8-laptop")
ALL_MODES = ("resident",) + AS_SHIPPED + QUANTIZED + ("ours-gguf-q8",)
LAPTOP_GBPS = 13.0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "memory.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--models", "wan13b", "--repeats", "1", "--out", str(out),
         "--laptop-gbps", str(LAPTOP_GBPS)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            rows[row["mode"]] = row
    table = {}
    for line in out.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == TITLE:
            table[cells[1]] = cells
    return rows, table, out.read_text()


def test_every_mode_has_a_row_in_the_written_table(smoke):
    rows, table, text = smoke
    assert sorted(table) == sorted(ALL_MODES)
    assert sorted(rows) == sorted(ALL_MODES)
    assert "on the CPU" in text and f"stretched to {LAPTOP_GBPS:g} GB/s" in text
    for mode in ALL_MODES:
        assert "error" not in rows[mode], rows[mode].get("error")


def test_weights_as_shipped_give_the_resident_output_exactly(smoke):
    _, table, _ = smoke
    for mode in AS_SHIPPED:
        assert table[mode][-1] == "equal", (mode, table[mode])


def test_int8_and_fp8_storage_stay_close_to_the_resident_output(smoke):
    rows, table, _ = smoke
    for mode in QUANTIZED:
        match = re.fullmatch(r"max diff ([0-9.e+-]+)% of max", table[mode][-1])
        assert match, (mode, table[mode])
        assert 0 < float(match.group(1)) < 2, (mode, table[mode])
    # One byte a Linear weight instead of the CPU's fp32 four: the blocks take well under half the bytes.
    assert rows["ours-int8"]["resident_gb"] + rows["ours-int8"]["streamed_gb"] < 0.5 * (rows["ours"]["resident_gb"] + rows["ours"]["streamed_gb"])


def test_a_gguf_q8_file_streams_its_blocks_as_stored(smoke):
    rows, table, _ = smoke
    row = rows["ours-gguf-q8"]
    assert "unavailable" not in row, row["unavailable"]
    assert row["streamed_gb"] > 0
    # Q8_0 keeps a byte a weight plus a 2-byte scale every 32: about int8's bytes.
    assert row["streamed_gb"] < 1.1 * rows["ours-int8"]["streamed_gb"]
    match = re.fullmatch(r"max diff ([0-9.e+-]+)% of max", table["ours-gguf-q8"][-1])
    assert match and 0 < float(match.group(1)) < 2, table["ours-gguf-q8"]


def test_ours_streams_part_of_the_blocks_and_the_slow_link_holds_every_copy(smoke):
    rows, _, _ = smoke
    for mode in ("ours", "ours-laptop", "ours-int8-laptop"):
        assert rows[mode]["resident_gb"] > 0 and rows[mode]["streamed_gb"] > 0, rows[mode]
    # Two forwards (one timed after the first), each copying every streamed block at least once over the slow link.
    for mode in ("ours-laptop", "ours-int8-laptop", "diffusers-laptop"):
        least = 2 * rows[mode]["streamed_gb"] * 1e9 / (LAPTOP_GBPS * 1e9)
        assert rows[mode]["link_wait_s"] >= least * 0.999, rows[mode]
    assert "link_wait_s" not in rows["ours"]
