"""Memory engine benchmark: full-size random-weight transformers on what a real 8 GB card gives.

    python bench/bench_memory.py                        # on a CUDA machine: FLUX.1, Wan2.1-14B, Wan2.1-1.3B, every mode
    python bench/bench_memory.py --models wan13b        # one model
    python bench/bench_memory.py --modes resident,ours,ours-laptop
    python bench/bench_memory.py --tiny                 # tiny configs, every mode in its own process (a quick GPU check)
    python bench/bench_memory.py --smoke                # tiny configs, on the CPU, in one process: checks the script itself

For each model it writes random weights once (a diffusers folder on local disk, so every mode loads the same file
from a warm page cache; plus a GGUF Q8_0 file of the same weights when a GGUF mode runs), then runs each mode in its
own process so peak RSS is that mode's:

  resident          the whole transformer on the GPU, no cap (the compute reference)
  diffusers         diffusers' group offload at its fastest (below), under the cap
  diffusers-lowmem  the same with the group offload's own `low_cpu_mem_usage=True`: pins each group as it is copied
                    instead of pinning a second copy of the model up front (its least RAM, slower)
  ours              our planner + block streamer (pinned arena, partial residency), weights as shipped (bf16)
  ours-int8         the same, block Linear weights stored int8 (one scale a row), expanded on the GPU before each block
  ours-fp8          the same, stored fp8 e4m3 (one scale a row)
  ours-gguf-q8      a GGUF Q8_0 file of the same weights, read by diffusers' GGUF loader, its blocks streamed as stored
  diffusers-laptop, ours-laptop, ours-int8-laptop
                    diffusers' offload, ours and ours-int8 with the host link slowed to a laptop's (--laptop-gbps)

The baseline at its best (diffusers 0.42.1, `ModelMixin.enable_group_offload`):
- `use_stream=True`: copies run on a side stream, overlapping the previous group's compute.
- `record_stream=True`: without it diffusers synchronises the host with the compute stream at every group's offload
  (so the freed device memory cannot be reused early); with it the allocator tracks that use instead and nothing waits.
- `non_blocking=True`: without it each tensor's copy is synchronous with the host, so the side stream overlaps nothing.
- `from_pretrained(..., low_cpu_mem_usage=True)`: the model is built empty and filled from the file, not built with
  random weights and then overwritten (diffusers' default already; passed so the run does not depend on it).
- One block per group, block level: the smallest device footprint with full overlap (diffusers' documented setting).

The cap: a real 8 GB card is not 8 GiB to PyTorch. The driver keeps some of it (PyTorch reports an RTX 3070's total
as 7.78 GiB on Linux: `--card-gib`), and the CUDA context (the driver's state, cuBLAS's handle, the loaded kernels)
takes more outside PyTorch's allocator. Each capped worker measures its own context at start (total - free - what
PyTorch holds, after one bf16 matrix product has loaded cuBLAS) and sets `set_per_process_memory_fraction` so that
PyTorch may reserve card - context, what that card would leave it; the figures are printed, and the memory outside the
allocator is measured again at the end (kernels loaded lazily during the run grow it: the row says by how much).
Our planner plans with that same allowance less the allocator margin the app keeps (`ALLOCATOR_MARGIN_BYTES`), as the
app does from the free memory it reads.

The laptop rows: a 3070 laptop's GPU hangs off PCIe 4.0 ×8 (about 13 GB/s of host→GPU copy, pinned), against the
~50 GB/s of the measuring machine. The bench stretches every host→device copy of the mode to bytes / --laptop-gbps:
after each copy it queues a GPU-side wait (`torch.cuda._sleep`, calibrated against CUDA events at start) on the stream
that copied, of bytes / laptop rate - bytes / this machine's pinned rate, and, for ours, records the block's "copy
done" event after that wait, so the block waits for the slow copy and the ring slot stays busy as long as a slow link
would keep it. This is done by wrapping the streamer's copy issue (and diffusers' group onload) in this script, not in
the product. On the CPU (--smoke) the wait is a host sleep of bytes / rate. What it shows is the copy-bound part of a
laptop's step: the compute is still the measuring GPU's (a 3070 laptop computes roughly 10-20× slower than an H100),
so a laptop's step is about max(its own compute, what this row shows).

It prints a markdown table and writes it to bench/results/memory.md (--out).
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
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

GIB = 1024**3
# What PyTorch reports as an 8 GB RTX 3070's total memory on Linux ("7.78 GiB total capacity" in its out-of-memory
# messages): the 8 GiB on the box less what the driver keeps.
CARD_GIB = 7.78
# Host→GPU copy of a 3070 laptop: PCIe 4.0 ×8 gives 15.75 GB/s raw, about 13 GB/s of pinned copy in practice.
LAPTOP_GBPS = 13.0
GGUF_FILE = "transformer-Q8_0.gguf"


@dataclass(frozen=True)
class Mode:
    engine: str  # "resident", "diffusers" or "ours"
    stored: str = "as shipped"  # ours: "as shipped", "int8", "fp8", "gguf-q8"
    laptop: bool = False  # host link slowed to --laptop-gbps
    pin_on_the_fly: bool = False  # diffusers: its group offload's own low_cpu_mem_usage=True


MODES = {
    "resident": Mode("resident"),
    "diffusers": Mode("diffusers"),
    "diffusers-lowmem": Mode("diffusers", pin_on_the_fly=True),
    "ours": Mode("ours"),
    "ours-int8": Mode("ours", stored="int8"),
    "ours-fp8": Mode("ours", stored="fp8"),
    "ours-gguf-q8": Mode("ours", stored="gguf-q8"),
    "diffusers-laptop": Mode("diffusers", laptop=True),
    "ours-laptop": Mode("ours", laptop=True),
    "ours-int8-laptop": Mode("ours", stored="int8", laptop=True),
}

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


class Unavailable(Exception):
    """A mode this checkout or this machine cannot run; the row says why."""


def model_class(name: str):
    import diffusers

    return getattr(diffusers, MODELS[name]["cls"])


def make_inputs(name: str, device, dtype, tiny: bool) -> dict:
    generator = torch.Generator("cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    if name == "flux":
        side = 16 if tiny else 64  # 1024 px / 8 (VAE) / 2 (packing)
        text = 16 if tiny else 512
        width = 128 if tiny else 4096
        return dict(
            hidden_states=randn(1, side * side, 64), encoder_hidden_states=randn(1, text, width),
            pooled_projections=randn(1, 32 if tiny else 768), timestep=torch.tensor([0.5], device=device, dtype=dtype),
            img_ids=torch.zeros(side * side, 3, device=device), txt_ids=torch.zeros(text, 3, device=device),
            guidance=torch.tensor([3.5], device=device, dtype=dtype), return_dict=False,
        )
    frames, height, width = (3, 16, 16) if tiny else (21, 60, 104)  # 81 frames, 480×832 px
    text = 16 if tiny else 512
    return dict(
        hidden_states=randn(1, 16, frames, height, width), encoder_hidden_states=randn(1, text, 64 if tiny else 4096),
        timestep=torch.tensor([500], device=device), return_dict=False,
    )


def workload_tokens(name: str, tiny: bool) -> int:
    if name == "flux":
        return (16 * 16 + 16) if tiny else (4096 + 512)
    return (3 * 8 * 8) if tiny else (21 * 30 * 52)


def write_random_weights(name: str, folder: Path, tiny: bool, device) -> int:
    """Random weights with the real shapes, saved as a diffusers folder; returns their bytes."""
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    cls = model_class(name)
    with init_empty_weights():
        model = cls(**MODELS[name]["smoke" if tiny else "config"])
    model.save_config(folder)
    generator = torch.Generator(device).manual_seed(1)
    tensors = {}
    for key, parameter in model.state_dict().items():
        value = torch.randn(parameter.shape, generator=generator, device=device, dtype=torch.float32) * 0.02
        tensors[key] = value.to(torch.bfloat16).cpu()
    save_file(tensors, folder / "diffusion_pytorch_model.safetensors")
    return sum(t.numel() * 2 for t in tensors.values())


def write_q8_gguf(folder: Path) -> int:
    """The folder's weights as a GGUF file: 2-D weights whose rows split into Q8_0's 32-value blocks in Q8_0, the rest
    in F32 (as published GGUF transformers keep norms and biases), diffusers' key names. Written one tensor at a time
    (the header first, from the shapes), so only one tensor is ever held. Returns the file's bytes."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    q8 = gguf.GGMLQuantizationType.Q8_0
    path = folder / GGUF_FILE
    source = folder / "diffusion_pytorch_model.safetensors"
    with safe_open(source, "pt") as weights:
        names = list(weights.keys())
        quantized = {}
        writer = gguf.GGUFWriter(str(path), arch="transformer")
        for name in names:
            shape = tuple(weights.get_slice(name).get_shape())
            quantized[name] = len(shape) == 2 and shape[-1] % 32 == 0
            if quantized[name]:
                byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, q8)
                writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=q8)
            else:
                writer.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for name in names:
            value = weights.get_tensor(name).float().numpy()
            writer.write_tensor_data(gguf.quants.quantize(value, q8) if quantized[name] else value)
        writer.close()
    return path.stat().st_size


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


def pinned_copy_gbps(device, size: int) -> float:
    """Host→device copy rate from pinned memory, best of three."""
    destination = torch.empty(size, dtype=torch.uint8, device=device)
    source = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    destination.copy_(source, non_blocking=True)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        destination.copy_(source, non_blocking=True)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return size / best / 1e9


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


# -- the cap ----------------------------------------------------------------------------------------


def outside_allocator_bytes(device) -> tuple[int, int]:
    """(device memory in use outside PyTorch's allocator — the CUDA context, cuBLAS, loaded kernels —, total)."""
    torch.cuda.synchronize(device)
    free, total = torch.cuda.mem_get_info(device)
    return total - free - torch.cuda.memory_reserved(device), total


def cap_like_a_card(device, card_bytes: int) -> dict:
    """Let PyTorch reserve what a card of `card_bytes` (as PyTorch reports its total) leaves once the context is made."""
    warm = torch.ones(256, 256, device=device, dtype=torch.bfloat16)
    (warm @ warm).sum().item()  # creates the context and cuBLAS's handle, as the first job would
    del warm
    torch.cuda.empty_cache()
    context, total = outside_allocator_bytes(device)
    allowed = card_bytes - context
    if allowed <= 0:
        raise RuntimeError(f"the CUDA context alone ({context / GIB:.2f} GiB) exceeds the card ({card_bytes / GIB:.2f} GiB)")
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
    print(
        f"cap: card {card_bytes / GIB:.2f} GiB - CUDA context {context / GIB:.2f} GiB = {allowed / GIB:.2f} GiB PyTorch may "
        f"reserve (fraction {allowed / total:.4f} of this GPU's {total / GIB:.1f} GiB)", flush=True,
    )
    return {"card_gib": card_bytes / GIB, "context_gib": context / GIB, "allowed_gib": allowed / GIB, "allowed_bytes": allowed}


# -- the laptop's link ------------------------------------------------------------------------------


class SlowLink:
    """Stretches host→device copies to bytes / `gbps`: after a copy, `after_copy` queues on the copying stream a GPU
    wait of what the slow link would take beyond this machine's own copy (a host sleep on the CPU)."""

    def __init__(self, gbps: float, device: torch.device):
        self.rate = gbps * 1e9
        self.cuda = device.type == "cuda"
        self.waited_s = 0.0
        self.native_gbps = float("nan")
        if self.cuda:
            from pipelines.memory.host_arena import release_pinned_memory

            self.native_gbps = pinned_copy_gbps(device, 256 * 1024**2)
            self.cycles_per_s = self._calibrate()
            torch.cuda.empty_cache()  # the probe's buffers: neither in the peak VRAM nor in the RSS of the row
            release_pinned_memory()

    @staticmethod
    def _calibrate() -> float:
        cycles = 50_000_000
        rate = 0.0
        for _ in range(3):  # the first call also wakes the clocks up
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(cycles)
            end.record()
            end.synchronize()
            rate = cycles / (start.elapsed_time(end) / 1000)
        return rate

    def extra_seconds(self, nbytes: int) -> float:
        native = nbytes / (self.native_gbps * 1e9) if self.cuda else 0.0
        return max(nbytes / self.rate - native, 0.0)

    def after_copy(self, nbytes: int, stream=None) -> None:
        seconds = self.extra_seconds(nbytes)
        self.waited_s += seconds
        if not self.cuda:
            time.sleep(seconds)
            return
        with torch.cuda.stream(stream or torch.cuda.current_stream()):
            torch.cuda._sleep(int(seconds * self.cycles_per_s))


def slow_down_streamer(streamer, link: SlowLink) -> None:
    """Our streamer's copies over `link`: each ring copy (its "ready" event re-recorded after the wait, so the block
    waits for the slow copy and its slot stays busy) and each job's first copy of the trunk and resident blocks."""
    issue, onload = streamer._issue, streamer._onload

    def slow_issue(slot_index: int, block_index: int) -> None:
        issue(slot_index, block_index)
        slot = streamer._slots[slot_index]
        link.after_copy(streamer.blocks[block_index].nbytes, streamer._copy_stream)
        if slot.ready is not None:
            slot.ready.record(streamer._copy_stream)

    def slow_onload() -> None:
        nbytes = sum(held.host.nbytes for held in streamer._held)
        nbytes += sum(streamer.blocks[i].nbytes for i in streamer.resident if streamer.blocks[i].device_copy is None)
        onload()
        link.after_copy(nbytes)

    streamer._issue, streamer._onload = slow_issue, slow_onload


def slow_down_group_offload(link: SlowLink) -> None:
    """diffusers' group offload over `link`: each group's onload is followed by the wait on the group's side stream,
    which diffusers synchronises before the group computes."""
    from diffusers.hooks.group_offloading import ModuleGroup

    onload = ModuleGroup._onload_from_memory

    def group_bytes(group) -> int:
        tensors = [t for m in group.modules for t in (*m.parameters(), *m.buffers())] + list(group.parameters) + list(group.buffers)
        return sum(t.nbytes for t in tensors)

    def slow_onload(group) -> None:
        onload(group)
        link.after_copy(group_bytes(group), group.stream)

    ModuleGroup._onload_from_memory = slow_onload


# -- one mode ---------------------------------------------------------------------------------------


def storage(name: str):
    """Our loader's storage called `name`, or Unavailable where this checkout's memory engine has none."""
    try:
        from pipelines.memory.stored_weights import StoredAs
    except ImportError:
        raise Unavailable("this checkout's memory engine has no quantized storage (pipelines/memory/stored_weights.py)") from None
    return StoredAs(name)


def load_ours(cls, folder: Path, mode: Mode, device, dtype, arena, ring: int):
    """(model, streamer) for one of our modes."""
    from pipelines.memory.loader import load_streamed, stream_loaded

    if mode.stored == "gguf-q8":
        import diffusers

        model = cls.from_single_file(
            str(folder / GGUF_FILE), config=str(folder), dtype=dtype,
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
        )
        return model, stream_loaded(model, device, dtype, arena, ring_slots=ring)
    if mode.stored == "as shipped":
        return load_streamed(cls, folder, device, dtype, arena, ring_slots=ring)
    return load_streamed(cls, folder, device, dtype, arena, ring_slots=ring, stored=storage(mode.stored))


def worker(args) -> dict:
    """One (model, mode): loads, times the forwards, saves the output beside the weights; returns the row."""
    from pipelines.memory.planner import ALLOCATOR_MARGIN_BYTES

    mode = MODES[args.mode]
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    folder = Path(args.folder)
    cls = model_class(args.model)
    result = {"model": args.model, "mode": args.mode}
    allowed = None
    if device.type == "cuda" and mode.engine != "resident":
        cap = cap_like_a_card(device, int(args.card_gib * GIB))
        allowed = cap.pop("allowed_bytes")
        result.update(cap)
    link = SlowLink(args.laptop_gbps, device) if mode.laptop else None
    if link is not None:
        result.update(link_gbps=args.laptop_gbps, native_gbps=link.native_gbps)
    inputs = make_inputs(args.model, device, dtype, args.tiny)
    arena_seconds = 0.0
    started = time.perf_counter()
    if mode.engine == "resident":
        model = cls.from_pretrained(folder, dtype=dtype, low_cpu_mem_usage=True).to(device)
    elif mode.engine == "diffusers":
        model = cls.from_pretrained(folder, dtype=dtype, low_cpu_mem_usage=True)
        streams = device.type == "cuda"  # streams need CUDA: on the CPU the same offload runs without them
        model.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1,
            non_blocking=streams, use_stream=streams, record_stream=streams, low_cpu_mem_usage=mode.pin_on_the_fly,
        )
        result["streamed_gb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
        if link is not None:
            slow_down_group_offload(link)
    else:
        from pipelines.memory.block_streamer import find_blocks
        from pipelines.memory.host_arena import HostArena
        from pipelines.memory.planner import Workload, denoiser_shape, plan_blocks

        arena = HostArena(pinned=device.type == "cuda")
        # The app pins its arena at the first model and reuses it for the next: the first load (which pins)
        # is timed apart, and the swap-in that counts is a second load into the same arena.
        first_model, first_streamer = load_ours(cls, folder, mode, device, dtype, arena, args.ring)
        del first_model, first_streamer
        arena_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model, streamer = load_ours(cls, folder, mode, device, dtype, arena, args.ring)
        blocks = streamer.block_bytes
        scratch = max((getattr(block, "scratch_nbytes", 0) for block in streamer.blocks), default=0)
        shape = denoiser_shape(model, blocks, scratch_bytes=scratch) if scratch else denoiser_shape(model, blocks)
        workload = Workload(workload_tokens(args.model, args.tiny))
        if device.type == "cuda":
            # As the app plans on a card: what PyTorch may reserve there, less the margin its allocator needs beside the plan.
            usable = (allowed if allowed is not None else int(args.card_gib * GIB)) - ALLOCATOR_MARGIN_BYTES
        else:
            # No card on the CPU: the least plan (every block streamed) plus a quarter of the blocks' bytes, so some blocks
            # stay resident and the ring (and a slow link) runs.
            usable = plan_blocks(shape, workload, 0, args.ring).device_bytes + sum(blocks) // 4
        plan = plan_blocks(shape, workload, usable, args.ring)
        streamer.place(set(plan.resident))
        if link is not None:
            slow_down_streamer(streamer, link)
        result.update(
            resident_gb=plan.resident_bytes / 1e9, streamed_gb=plan.streamed_bytes / 1e9, ring_slots=plan.ring_slots,
            predicted_peak_gib=plan.device_bytes / GIB, resident_blocks=len(plan.resident), blocks=len(blocks),
        )
        assert len(find_blocks(model)) == len(blocks)
    setup = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    first, per_forward, output = time_forwards(model, inputs, args.repeats, device)
    result.update(
        setup_s=setup, arena_s=arena_seconds, first_forward_s=first, forward_s=per_forward,
        peak_vram_gib=torch.cuda.max_memory_reserved() / GIB if device.type == "cuda" else float("nan"),
        peak_alloc_gib=torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else float("nan"),
        peak_rss_gb=peak_rss_bytes() / 1e9,
        output_checksum=float(output.float().abs().mean()),
    )
    if link is not None:
        result["link_wait_s"] = link.waited_s
    if "context_gib" in result:
        context_end, _ = outside_allocator_bytes(device)
        result["context_end_gib"] = context_end / GIB
    torch.save(output.cpu(), folder / f"output-{args.mode}.pt")
    return result


def run_worker(args) -> dict:
    """`worker`, with a mode this checkout or machine cannot run turned into a row that says why."""
    try:
        return worker(args)
    except Unavailable as why:
        return {"model": args.model, "mode": args.mode, "unavailable": str(why)}
    except Exception as error:
        if MODES[args.mode].stored == "gguf-q8":
            # diffusers reads the file; whether our streamer keeps GGUF's packed blocks is what this row tests.
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            return {"model": args.model, "mode": args.mode, "unavailable": f"the memory engine does not stream this GGUF file ({last[:200]})"}
        raise


def worker_command(args, name: str, folder: Path, mode: str) -> list[str]:
    return [sys.executable, __file__, "--worker", mode, "--model", name, "--folder", str(folder),
            "--card-gib", str(args.card_gib), "--laptop-gbps", str(args.laptop_gbps), "--repeats", str(args.repeats),
            "--ring", str(args.ring)] + (["--tiny"] if args.tiny else []) + (["--cpu"] if args.cpu else [])


def run_mode(args, name: str, folder: Path, mode: str) -> dict:
    if args.in_process:
        from diffusers.hooks.group_offloading import ModuleGroup

        worker_args = argparse.Namespace(**vars(args))
        worker_args.mode, worker_args.model, worker_args.folder = mode, name, str(folder)
        onload = ModuleGroup._onload_from_memory
        try:
            return run_worker(worker_args)
        except Exception as error:
            return {"model": name, "mode": mode, "error": "".join(traceback.format_exception(error))[-600:]}
        finally:
            ModuleGroup._onload_from_memory = onload  # a laptop mode's slow link stays with that mode
    done = subprocess.run(worker_command(args, name, folder, mode), capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("cap: "):
            print(f"{name} {mode} {line}", flush=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"model": name, "mode": mode, "error": (done.stderr or done.stdout)[-600:]}
    return json.loads(lines[-1][len("RESULT "):])


def compare_outputs(rows: list[dict], name: str, folder: Path) -> None:
    """Each mode's output against the resident one: "equal", or the largest difference over the largest value."""
    reference_path = folder / "output-resident.pt"
    if not reference_path.exists():
        return
    reference = torch.load(reference_path).float()
    for row in rows:
        path = folder / f"output-{row['mode']}.pt"
        if row["model"] != name or row["mode"] == "resident" or not path.exists():
            continue
        output = torch.load(path).float()
        if torch.equal(output, reference):
            row["vs_resident"] = "equal"
        else:
            error = float((output - reference).abs().max() / reference.abs().max().clamp(min=1e-12))
            row["vs_resident"] = f"max diff {100 * error:.2g}% of max"


# -- the table --------------------------------------------------------------------------------------


def table(rows: list[dict], bandwidth: dict, args) -> str:
    pinned = bandwidth["pinned_gbps"]
    lines = [
        "| model | mode | s / forward | × limit | peak VRAM GiB reserved (allocated; planned) | peak RSS GB | set-up s (first load with pinning) | first forward s | resident / streamed GB | output vs resident |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["mode"]] = row
    for name, modes in by_model.items():
        compute = modes.get("resident", {}).get("forward_s")
        for mode, row in modes.items():
            title = MODELS[name]["title"]
            if "unavailable" in row:
                lines.append(f"| {title} | {mode} | not available: {row['unavailable']} | | | | | | | |")
                continue
            if "error" in row:
                lines.append(f"| {title} | {mode} | failed: {row['error'][-160:].strip()!r} | | | | | | | |")
                continue
            limit_text, split = "", ""
            rate = row.get("link_gbps", pinned) if pinned == pinned else float("nan")  # no rates measured on the CPU
            if mode != "resident" and compute and "streamed_gb" in row and rate == rate:  # no rate (nan) on the CPU
                limit_text = f"{row['forward_s'] / max(compute, row['streamed_gb'] / rate):.2f}"
            if "resident_gb" in row:
                split = f"{row['resident_gb']:.3g} / {row['streamed_gb']:.3g}"
            elif "streamed_gb" in row:
                split = f"0 / {row['streamed_gb']:.3g}"
            arena = f" ({row['arena_s']:.1f})" if row.get("arena_s") else ""
            vram = "–" if row["peak_vram_gib"] != row["peak_vram_gib"] else f"{row['peak_vram_gib']:.2f} ({row['peak_alloc_gib']:.2f}"
            if vram != "–":
                vram += f"; {row['predicted_peak_gib']:.2f})" if "predicted_peak_gib" in row else ")"
            elif "predicted_peak_gib" in row:
                vram += f" (planned {row['predicted_peak_gib']:.2f})"
            lines.append(
                f"| {title} | {mode} | {row['forward_s']:.3f} | {limit_text} | {vram} | "
                f"{row['peak_rss_gb']:.1f} | {row['setup_s']:.1f}{arena} | {row['first_forward_s']:.2f} | {split} | "
                f"{row.get('vs_resident', '')} |"
            )
    return header(rows, bandwidth, args) + "\n".join(lines) + "\n"


def header(rows: list[dict], bandwidth: dict, args) -> str:
    on_cuda = torch.cuda.is_available() and not args.cpu
    device = torch.cuda.get_device_name() if on_cuda else "the CPU (tiny models, no streams, no cap; planner budget: every block streamed plus a quarter of the blocks' bytes)"
    text = f"Measured {dt.date.today().isoformat()} on {device}"
    text += " with tiny configs" if args.tiny and on_cuda else ""
    text += "; every mode in one process (the RSS column is that process's)" if args.in_process else ""
    capped = [row for row in rows if "context_gib" in row]
    if capped:
        context = [row["context_gib"] for row in capped]
        grown = max(row.get("context_end_gib", 0) - row["context_gib"] for row in capped)
        text += (
            f"; cap for every mode but resident: a card of {args.card_gib:g} GiB (as PyTorch reports an 8 GB RTX 3070) less "
            f"the CUDA context measured at start ({min(context):.2f}–{max(context):.2f} GiB), set with "
            f"set_per_process_memory_fraction; memory outside PyTorch's allocator grew by up to {grown:.2f} GiB during the run"
        )
    if on_cuda:
        text += f"; host→GPU {bandwidth['pinned_gbps']:.1f} GB/s pinned, {bandwidth['pageable_gbps']:.1f} GB/s pageable"
    text += (
        f"; "
        f"*-laptop rows: every host→GPU copy stretched to {args.laptop_gbps:g} GB/s (a 3070 laptop's PCIe 4.0 ×8), compute "
        f"still this machine's. × limit = s / max(resident s, streamed bytes / link rate). Set-up s: the load that counts "
        f"(ours: the second, into the arena the first one pinned).\n\n"
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="flux,wan14b,wan13b")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--card-gib", type=float, default=CARD_GIB,
                        help="the card's total memory as PyTorch reports it; the CUDA context is taken from it")
    parser.add_argument("--laptop-gbps", type=float, default=LAPTOP_GBPS, help="host→GPU rate of the *-laptop modes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ring", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny configs (seconds), each mode in its own process")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    parser.add_argument("--smoke", action="store_true", help="--tiny --cpu, every mode in this one process")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.md"))
    parser.add_argument("--worker")
    parser.add_argument("--model")
    parser.add_argument("--folder")
    args = parser.parse_args()
    args.in_process = args.smoke
    if args.smoke:
        args.tiny = args.cpu = True
    if args.worker:
        args.mode = args.worker
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return
    modes = args.modes.split(",")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; the modes are {', '.join(MODES)}")
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    bandwidth = measure_bandwidth(device)
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
            folder = Path(work) / name
            folder.mkdir()
            started = time.perf_counter()
            weight_bytes = write_random_weights(name, folder, args.tiny, device)
            print(f"{name}: {weight_bytes / 1e9:.2f} GB of random weights written in {time.perf_counter() - started:.0f} s", flush=True)
            if any(MODES[mode].stored == "gguf-q8" for mode in modes):
                started = time.perf_counter()
                gguf_bytes = write_q8_gguf(folder)
                print(f"{name}: {gguf_bytes / 1e9:.2f} GB GGUF Q8_0 written in {time.perf_counter() - started:.0f} s", flush=True)
            for mode in modes:
                row = run_mode(args, name, folder, mode)
                print(json.dumps(row), flush=True)
                rows.append(row)
            compare_outputs(rows, name, folder)
        # Written after every model, so a long run that is cut short keeps what it measured.
        text = table(rows, bandwidth, args)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
