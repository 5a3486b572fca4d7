"""Memory engine benchmark: full-size random-weight transformers under a VRAM cap.

    python bench/bench_memory.py                    # on a CUDA machine: FLUX.1, Wan2.1-14B, Wan2.1-1.3B
    python bench/bench_memory.py --models wan13b    # one model
    python bench/bench_memory.py --smoke            # CPU, small configs: checks the script itself

For each model it writes random weights once (a diffusers folder on local disk, so every mode loads the
same file from a warm page cache), then runs each mode in its own process so peak RSS is that mode's:
  resident   the whole transformer on the GPU, no cap (the compute reference)
  diffusers  diffusers' group offload, block level, one block per group, CUDA stream, under the cap
  ours       our planner + block streamer (pinned arena, partial residency), under the cap
It prints a markdown table and writes it to bench/results/memory.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

GIB = 1024**3

MODELS = {
    "flux": dict(
        cls="FluxTransformer2DModel", title="FLUX.1 [dev] transformer, 1024×1024",
        config=dict(guidance_embeds=True),
        smoke=dict(num_layers=2, num_single_layers=4, num_attention_heads=4, attention_head_dim=32, joint_attention_dim=128,
                   pooled_projection_dim=32, axes_dims_rope=(8, 12, 12), guidance_embeds=True),
    ),
    "wan14b": dict(
        cls="WanTransformer3DModel", title="Wan2.1-14B transformer, 832×480×81",
        config=dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", text_dim=4096, freq_dim=256, in_channels=16, out_channels=16, patch_size=(1, 2, 2)),
        smoke=dict(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=6, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", text_dim=64, freq_dim=32, in_channels=16, out_channels=16, patch_size=(1, 2, 2)),
    ),
    "wan13b": dict(
        cls="WanTransformer3DModel", title="Wan2.1-1.3B transformer, 832×480×81",
        config=dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", text_dim=4096, freq_dim=256, in_channels=16, out_channels=16, patch_size=(1, 2, 2)),
        smoke=dict(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=4, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", text_dim=64, freq_dim=32, in_channels=16, out_channels=16, patch_size=(1, 2, 2)),
    ),
}


def model_class(name: str):
    import diffusers

    return getattr(diffusers, MODELS[name]["cls"])


def make_inputs(name: str, device, dtype, smoke: bool) -> dict:
    generator = torch.Generator("cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    if name == "flux":
        side = 16 if smoke else 64  # 1024 px / 8 (VAE) / 2 (packing)
        text = 16 if smoke else 512
        width = 128 if smoke else 4096
        return dict(
            hidden_states=randn(1, side * side, 64), encoder_hidden_states=randn(1, text, width),
            pooled_projections=randn(1, 32 if smoke else 768), timestep=torch.tensor([0.5], device=device, dtype=dtype),
            img_ids=torch.zeros(side * side, 3, device=device), txt_ids=torch.zeros(text, 3, device=device),
            guidance=torch.tensor([3.5], device=device, dtype=dtype), return_dict=False,
        )
    frames, height, width = (3, 16, 16) if smoke else (21, 60, 104)  # 81 frames, 480×832 px
    text = 16 if smoke else 512
    return dict(
        hidden_states=randn(1, 16, frames, height, width), encoder_hidden_states=randn(1, text, 64 if smoke else 4096),
        timestep=torch.tensor([500], device=device), return_dict=False,
    )


def workload_tokens(name: str, smoke: bool) -> int:
    if name == "flux":
        return (16 * 16 + 16) if smoke else (4096 + 512)
    return (3 * 8 * 8) if smoke else (21 * 30 * 52)


def write_random_weights(name: str, folder: Path, smoke: bool) -> int:
    """Random weights with the real shapes, saved as a diffusers folder; returns their bytes."""
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    cls = model_class(name)
    with init_empty_weights():
        model = cls(**MODELS[name]["smoke" if smoke else "config"])
    model.save_config(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device).manual_seed(1)
    tensors = {}
    for key, parameter in model.state_dict().items():
        value = torch.randn(parameter.shape, generator=generator, device=device, dtype=torch.float32) * 0.02
        tensors[key] = value.to(torch.bfloat16).cpu()
    save_file(tensors, folder / "diffusion_pytorch_model.safetensors")
    return sum(t.numel() * 2 for t in tensors.values())


def peak_rss_bytes() -> int:
    """This process's peak RSS. Not getrusage: its ru_maxrss survives exec, so a worker would report the
    parent's peak (the parent held the random weights while writing them)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_forwards(model, inputs, repeats: int, device) -> tuple[float, float, torch.Tensor]:
    """(first forward seconds, median seconds of the following ones, output)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            sync()
            started = time.perf_counter()
            output = model(**inputs)[0]
            sync()
            times.append(time.perf_counter() - started)
    return times[0], statistics.median(times[1:]), output


def measure_bandwidth(device) -> dict:
    if device.type != "cuda":
        return {"pinned_gbps": float("nan"), "pageable_gbps": float("nan")}
    size = 2 * GIB
    destination = torch.empty(size, dtype=torch.uint8, device=device)
    result = {}
    for label, pinned in (("pinned_gbps", True), ("pageable_gbps", False)):
        source = torch.empty(size, dtype=torch.uint8, pin_memory=pinned)
        destination.copy_(source, non_blocking=pinned)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(3):
            destination.copy_(source, non_blocking=pinned)
        torch.cuda.synchronize()
        result[label] = 3 * size / (time.perf_counter() - started) / 1e9
    return result


def worker(args) -> None:
    """One (model, mode) in a fresh process; prints one JSON line."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    folder = Path(args.folder)
    cls = model_class(args.model)
    cap = int(args.cap_gib * GIB)
    if device.type == "cuda" and args.mode != "resident":
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / torch.cuda.get_device_properties(device).total_memory))
    inputs = make_inputs(args.model, device, dtype, args.smoke)
    result = {"model": args.model, "mode": args.mode}
    arena_seconds = 0.0
    started = time.perf_counter()
    if args.mode == "resident":
        model = cls.from_pretrained(folder, dtype=dtype).to(device)
    elif args.mode == "diffusers":
        model = cls.from_pretrained(folder, dtype=dtype)
        model.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=device.type == "cuda",
        )
    else:
        from pipelines.memory.block_streamer import find_blocks
        from pipelines.memory.host_arena import HostArena
        from pipelines.memory.loader import load_streamed
        from pipelines.memory.planner import Workload, denoiser_shape, plan_blocks

        arena = HostArena(pinned=device.type == "cuda")
        # The app pins its arena at the first model and reuses it for the next: the first load (which pins)
        # is timed apart, and the swap-in that counts is a second load into the same arena.
        first_model, first_streamer = load_streamed(cls, folder, device, dtype, arena, ring_slots=args.ring)
        del first_model, first_streamer
        arena_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model, streamer = load_streamed(cls, folder, device, dtype, arena, ring_slots=args.ring)
        blocks = streamer.block_bytes
        shape = denoiser_shape(model, blocks)
        plan = plan_blocks(shape, Workload(workload_tokens(args.model, args.smoke)), cap - int(args.reserve_gib * GIB), args.ring)
        streamer.place(set(plan.resident))
        result.update(
            resident_gb=plan.resident_bytes / 1e9, streamed_gb=plan.streamed_bytes / 1e9, ring_slots=plan.ring_slots,
            predicted_peak_gib=plan.device_bytes / GIB, resident_blocks=len(plan.resident), blocks=len(blocks),
        )
        assert len(find_blocks(model)) == len(blocks)
    setup = time.perf_counter() - started
    first, per_forward, output = time_forwards(model, inputs, args.repeats, device)
    result.update(
        setup_s=setup, arena_s=arena_seconds, first_forward_s=first, forward_s=per_forward,
        peak_vram_gib=torch.cuda.max_memory_reserved() / GIB if device.type == "cuda" else float("nan"),
        peak_alloc_gib=torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else float("nan"),
        peak_rss_gb=peak_rss_bytes() / 1e9,
        output_checksum=float(output.float().abs().mean()),
    )
    torch.save(output.cpu(), Path(args.folder) / f"output-{args.mode}.pt")
    print("RESULT " + json.dumps(result), flush=True)


def run_mode(args, name: str, folder: Path, mode: str) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--model", name, "--folder", str(folder),
               "--cap-gib", str(args.cap_gib), "--reserve-gib", str(args.reserve_gib), "--repeats", str(args.repeats),
               "--ring", str(args.ring)] + (["--smoke"] if args.smoke else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"model": name, "mode": mode, "error": (done.stderr or done.stdout)[-600:]}
    return json.loads(lines[-1][len("RESULT "):])


def table(rows: list[dict], bandwidth: dict, args) -> str:
    pinned = bandwidth["pinned_gbps"]
    lines = [
        "| model | mode | s / forward | × limit | peak VRAM GiB (allocated; planned) | peak RSS GB | set-up s (first load with pinning) | first forward s | resident / streamed GB | output = resident |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["mode"]] = row
    for name, modes in by_model.items():
        compute = modes.get("resident", {}).get("forward_s")
        for mode, row in modes.items():
            if "error" in row:
                lines.append(f"| {MODELS[name]['title']} | {mode} | failed: {row['error'][-120:].strip()!r} | | | | | | | |")
                continue
            limit_text, split, same = "", "", ""
            if mode == "ours" and compute:
                limit = max(compute, row["streamed_gb"] / pinned) if pinned == pinned else compute
                limit_text = f"{row['forward_s'] / limit:.2f}"
                split = f"{row['resident_gb']:.1f} / {row['streamed_gb']:.1f}"
            if mode != "resident":
                same = row.get("equal_to_resident", "")
            arena = f" ({row['arena_s']:.1f})" if row.get("arena_s") else ""
            vram = f"{row['peak_vram_gib']:.2f} ({row['peak_alloc_gib']:.2f}"
            vram += f"; {row['predicted_peak_gib']:.2f})" if "predicted_peak_gib" in row else ")"
            lines.append(
                f"| {MODELS[name]['title']} | {mode} | {row['forward_s']:.3f} | {limit_text} | {vram} | "
                f"{row['peak_rss_gb']:.1f} | {row['setup_s']:.1f}{arena} | {row['first_forward_s']:.2f} | {split} | {same} |"
            )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    header = (
        f"Measured {dt.date.today().isoformat()} on {device}; cap {args.cap_gib:g} GiB for diffusers and ours "
        f"(resident runs uncapped as the compute reference); host→GPU {pinned:.1f} GB/s pinned, "
        f"{bandwidth['pageable_gbps']:.1f} GB/s pageable. × limit = ours / max(resident s, streamed bytes / pinned bandwidth).\n\n"
    )
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="flux,wan14b,wan13b")
    parser.add_argument("--modes", default="resident,diffusers,ours")
    parser.add_argument("--cap-gib", type=float, default=8.0)
    parser.add_argument("--reserve-gib", type=float, default=0.75, help="kept free under the cap for the CUDA context and fragmentation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ring", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.md"))
    parser.add_argument("--worker")
    parser.add_argument("--model")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        worker(args)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bandwidth = measure_bandwidth(device)
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
            folder = Path(work) / name
            folder.mkdir()
            started = time.perf_counter()
            weight_bytes = write_random_weights(name, folder, args.smoke)
            print(f"{name}: {weight_bytes / 1e9:.2f} GB of random weights written in {time.perf_counter() - started:.0f} s", flush=True)
            for mode in args.modes.split(","):
                row = run_mode(args, name, folder, mode)
                print(json.dumps(row), flush=True)
                rows.append(row)
            reference = folder / "output-resident.pt"
            for row in rows:
                if row["model"] == name and row["mode"] != "resident" and reference.exists() and "error" not in row:
                    same = torch.equal(torch.load(reference), torch.load(folder / f"output-{row['mode']}.pt"))
                    row["equal_to_resident"] = "yes" if same else "no"
        # Written after every model, so a long run that is cut short keeps what it measured.
        text = table(rows, bandwidth, args)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
