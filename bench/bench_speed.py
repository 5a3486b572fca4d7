"""Speed options benchmark: seconds per denoising step, per family, for each option Atelier offers.

    python bench/bench_speed.py                       # on a CUDA machine: FLUX.1, Wan2.1-1.3B, LTX-Video, HiDream-I1
    python bench/bench_speed.py --families wan,ltx    # some of them
    python bench/bench_speed.py --tiny                # CPU: the tiny demo transformers, checks the script itself

Each family's transformer is built at full size with random weights (the real shapes, so the real FLOPs) directly
on the GPU in bf16, and run through a flow-matching Euler loop at the model's default size: the step caches then
see a real schedule of timesteps. Options, each on the same model and inputs:
  baseline              eager, PyTorch SDPA attention
  teacache balanced/fast   our TeaCache at the catalog's thresholds (steps skipped reported)
  first_block           diffusers' FirstBlockCache at its default threshold (steps skipped reported)
  compile               compiled repeated blocks (first-run compile seconds reported apart)
  attention: sage/flash/flash3   each backend whose package is installed
  fp8 compute           torchao fp8 matmuls on the linear layers (compute capability 8.9+; applied last, it changes
                        the weights)
Without CUDA (and without --tiny) it says so and exits 0. It prints a markdown table (and writes it with --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


@dataclass(frozen=True)
class Bench:
    title: str
    model_class: str
    config: dict
    # Default size: (width, height, frames); frames 1 for images.
    size: tuple[int, int, int]
    steps: int


# Full-size configs (the published ones: FLUX.1 dev, Wan2.1 T2V 1.3B, LTX-Video 0.9.5 2B, HiDream-I1 Full).
BENCHES = {
    "flux": Bench("FLUX.1 [dev], 1024×1024", "FluxTransformer2DModel", dict(guidance_embeds=True), (1024, 1024, 1), 28),
    "wan": Bench(
        "Wan2.1 T2V 1.3B, 832×480×81", "WanTransformer3DModel",
        dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
             qk_norm="rms_norm_across_heads", text_dim=4096, freq_dim=256, in_channels=16, out_channels=16, patch_size=(1, 2, 2)),
        (832, 480, 81), 30,
    ),
    "ltx": Bench("LTX-Video 0.9.5 (2B), 768×512×161", "LTXVideoTransformer3DModel", {}, (768, 512, 161), 40),
    "hidream": Bench(
        "HiDream-I1 Full, 1024×1024", "HiDreamImageTransformer2DModel",
        dict(patch_size=2, in_channels=16, out_channels=16, caption_channels=[4096, 4096], axes_dims_rope=(64, 32, 32),
             llama_layers=list(range(32)) + [31] * 16),
        (1024, 1024, 1), 50,
    ),
}
FAMILY_OF = {"flux": "flux", "wan": "wan", "ltx": "ltx", "hidream": "hidream"}


def tiny_model(name: str):
    from pipelines.tiny import flux, hidream, ltx, wan

    return {
        "flux": lambda: flux.tiny_transformer(0), "wan": lambda: wan.tiny_transformer(0, image_to_video=False),
        "ltx": lambda: ltx.tiny_transformer(0), "hidream": lambda: hidream.tiny_transformer(0),
    }[name]()


def full_model(bench: Bench, device: torch.device):
    import diffusers

    torch.set_default_dtype(torch.bfloat16)
    try:
        with device:
            return getattr(diffusers, bench.model_class)(**bench.config)
    finally:
        torch.set_default_dtype(torch.float32)


class Loop:
    """The inputs of one family's transformer at a size, and a flow-matching Euler loop over them."""

    def __init__(self, name: str, model, size: tuple[int, int, int], device, dtype):
        generator = torch.Generator("cpu").manual_seed(0)
        randn = lambda *shape: torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)
        config = model.config
        width, height, frames = size
        self.time_key, self.time_scale = "timestep", 1000.0
        if name == "flux":
            side_h, side_w = height // 16, width // 16
            self.latent_key = "hidden_states"
            ids = torch.stack(torch.meshgrid(torch.zeros(1, dtype=torch.long), torch.arange(side_h), torch.arange(side_w), indexing="ij"), -1)
            self.inputs = dict(
                hidden_states=randn(1, side_h * side_w, config.in_channels), encoder_hidden_states=randn(1, 512, config.joint_attention_dim),
                pooled_projections=randn(1, config.pooled_projection_dim), img_ids=ids.reshape(-1, 3).float().to(device),
                txt_ids=torch.zeros(512, 3, device=device), guidance=torch.tensor([3.5], device=device, dtype=dtype),
            )
            # FluxPipeline passes sigmas; the model multiplies by 1000 itself.
            self.time_scale = 1.0
        elif name == "wan":
            self.latent_key = "hidden_states"
            self.inputs = dict(
                hidden_states=randn(1, config.in_channels, (frames - 1) // 4 + 1, height // 8, width // 8),
                encoder_hidden_states=randn(1, 512, config.text_dim),
            )
        elif name == "ltx":
            latent_frames, latent_h, latent_w = (frames - 1) // 8 + 1, height // 32, width // 32
            self.latent_key = "hidden_states"
            self.inputs = dict(
                hidden_states=randn(1, latent_frames * latent_h * latent_w, config.in_channels),
                encoder_hidden_states=randn(1, 128, config.caption_channels),
                encoder_attention_mask=torch.ones(1, 128, device=device), num_frames=latent_frames, height=latent_h, width=latent_w,
            )
        else:  # hidream
            self.latent_key, self.time_key = "hidden_states", "timesteps"
            llama_width = config.caption_channels[1]
            self.inputs = dict(
                hidden_states=randn(1, config.in_channels, height // 8, width // 8),
                encoder_hidden_states_t5=randn(1, 128, config.caption_channels[0]),
                encoder_hidden_states_llama3=randn(max(config.llama_layers) + 1, 1, 128, llama_width),
                pooled_embeds=randn(1, config.text_emb_dim),
            )
        self.device, self.dtype = device, dtype

    def run(self, model, steps: int) -> float:
        """Seconds for `steps` denoising steps."""
        latents = self.inputs[self.latent_key].clone()
        sigmas = torch.linspace(1.0, 0.0, steps + 1)
        self._sync()
        started = time.perf_counter()
        with torch.inference_mode():
            for step in range(steps):
                timestep = torch.tensor([float(sigmas[step]) * self.time_scale], device=self.device, dtype=self.dtype)
                call = {**self.inputs, self.latent_key: latents, self.time_key: timestep, "return_dict": False}
                # Pipelines open a cache context per call; diffusers' caches (FirstBlockCache) need one.
                with model.cache_context("bench") if hasattr(model, "cache_context") else nullcontext():
                    velocity = model(**call)[0]
                latents = latents + float(sigmas[step + 1] - sigmas[step]) * velocity
        self._sync()
        return time.perf_counter() - started

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def measure(name: str, model, loop: Loop, steps: int, device, cache_dir: Path) -> list[dict]:
    from pipelines.speed.attention import ATTENTION_BACKENDS, usable_attention
    from pipelines.catalog import Family, family_spec
    from pipelines.speed.compiled_blocks import compiled_blocks
    from pipelines.speed.step_cache import _default_threshold, methods_for, step_cache

    family = Family(FAMILY_OF[name])
    holder = SimpleNamespace(transformer=model)
    rows = []

    def row(option: str, seconds: float, skipped: str = "—", note: str = "") -> None:
        rows.append(dict(option=option, per_step=seconds / steps, skipped=skipped, note=note))
        print(f"  {option:<24} {seconds / steps:8.3f} s/step  skipped {skipped}  {note}", flush=True)

    loop.run(model, 1)  # warm-up: allocator, kernels' autotuning
    row("baseline (sdpa)", loop.run(model, steps))
    speeds = family_spec(family).speed
    for level in ("balanced", "fast"):
        setting = speeds[level]
        if setting.method == "none":
            continue
        with step_cache(holder, family, setting.method, setting.threshold) as report:
            seconds = loop.run(model, steps)
        row(f"{setting.method} {level} ({setting.threshold:g})", seconds, f"{report.skipped}/{report.calls} steps")
    if "first_block" in methods_for(family):
        threshold = _default_threshold(family, "first_block")
        with step_cache(holder, family, "first_block", threshold) as report:
            seconds = loop.run(model, steps)
        row(f"first_block ({threshold:g})", seconds, f"{report.skipped}/{report.calls} steps")
    if getattr(model, "_repeated_blocks", None) and device.type == "cpu":
        print("  compile: skipped with --tiny (compiling takes minutes on a CPU; tests/pipelines/test_compiled_blocks.py checks it)")
    elif getattr(model, "_repeated_blocks", None):
        with compiled_blocks(holder, family, True, cache_dir) as compiled:
            first = loop.run(model, 1)
        with compiled_blocks(holder, family, True, cache_dir):
            seconds = loop.run(model, steps)
        row("compile", seconds, note=f"first step {first:.1f} s ({compiled.graphs_compiled} graphs compiled)")
        torch.compiler.reset()
    for backend in usable_attention(device.type):
        if backend in ("sdpa", "sdpa-math"):
            continue
        model.set_attention_backend(ATTENTION_BACKENDS[backend].backend)
        loop.run(model, 1)
        row(f"attention {backend}", loop.run(model, steps))
    model.set_attention_backend("native")
    if device.type == "cuda" and torch.cuda.get_device_capability() >= (8, 9):
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

        quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
        loop.run(model, 1)
        row("fp8 compute", loop.run(model, steps))
    return rows


def table(results: dict[str, list[dict]], device_name: str) -> str:
    lines = [
        f"Seconds per denoising step, {device_name}, {dt.date.today().isoformat()}, torch {torch.__version__}",
        "",
        "| model | option | s/step | speed-up | skipped |",
        "|---|---|---|---|---|",
    ]
    for title, rows in results.items():
        baseline = rows[0]["per_step"]
        for row in rows:
            note = f" ({row['note']})" if row["note"] else ""
            lines.append(
                f"| {title} | {row['option']}{note} | {row['per_step']:.3f} | {baseline / row['per_step']:.2f}× | {row['skipped']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(BENCHES))
    parser.add_argument("--tiny", action="store_true", help="the tiny demo transformers on the CPU at 64 px: checks the script")
    parser.add_argument("--steps", type=int, default=None, help="steps per option (default: the model's own)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        print("bench_speed.py needs an NVIDIA GPU (CUDA): the figures are for full-size models. "
              "`--tiny` runs the script's own check on the CPU.")
        return
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    device_name = "CPU (tiny models: checks the script, not a measure)" if args.tiny else torch.cuda.get_device_name()
    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for name in args.families.split(","):
            bench = BENCHES[name]
            print(f"{bench.title}{' (tiny)' if args.tiny else ''}", flush=True)
            model = (tiny_model(name) if args.tiny else full_model(bench, device)).eval()
            size = (64, 64, 9) if args.tiny and bench.size[2] > 1 else (64, 64, 1) if args.tiny else bench.size
            steps = args.steps or (4 if args.tiny else bench.steps)
            try:
                results[bench.title] = measure(name, model, Loop(name, model, size, device, dtype), steps, device, Path(cache_dir))
            except torch.OutOfMemoryError:
                print(f"  out of GPU memory: {bench.title} skipped", flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    text = table(results, device_name)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
