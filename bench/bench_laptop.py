"""The reference laptop without a GPU: full-size random-weight checkpoints of FLUX.1 dev (transformer + T5-XXL) and
Wan2.1 14B (transformer + UMT5-XXL) loaded with int8 storage on the CPU, tensor by tensor, each part in a process of
its own, with one forward at a tiny size. Prints, per part: the plan's RAM figure, the arena the engine laid out, the
measured peak RSS (VmHWM), load seconds and GB read.

    python bench/bench_laptop.py                      # FLUX.1 dev and Wan2.1 14B, checkpoints under /tmp
    python bench/bench_laptop.py --models flux --dir /data/bench
    python bench/bench_laptop.py --smoke              # tiny configs, seconds (what the test runs)

The checkpoints are written tensor by tensor (never whole in RAM) and deleted afterwards (--keep keeps them).
Run as root with a writable cgroup (v2 `memory.max` or v1 `memory.limit_in_bytes`), each part also runs under a
16 GB and a 32 GB memory cap (--caps), and the table says whether it completed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

GB = 1e9

FLUX_DEV = dict(
    patch_size=1, in_channels=64, out_channels=None, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)
WAN_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096,
    freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=32, is_encoder_decoder=False, use_cache=False)
UMT5_XXL = dict(T5_XXL, vocab_size=256384)
SMOKE = {
    "flux": dict(FLUX_DEV, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64,
                 pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)),
    "wan": dict(WAN_14B, num_attention_heads=2, attention_head_dim=16, text_dim=64, freq_dim=32, ffn_dim=64, num_layers=2),
    "t5": dict(T5_XXL, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, vocab_size=1000),
}
SMOKE["umt5"] = dict(SMOKE["t5"])


@dataclass(frozen=True)
class Part:
    model: str  # catalog id the plan is taken from
    name: str  # component name in that catalog entry
    kind: str  # "flux", "wan", "t5", "umt5"
    label: str


PARTS = {
    "flux": (Part("flux1-dev", "transformer", "flux", "FLUX.1 dev transformer"), Part("flux1-dev", "text_encoder_2", "t5", "T5-XXL encoder")),
    "wan": (Part("wan21-t2v-14b", "transformer", "wan", "Wan2.1 14B transformer"), Part("wan21-t2v-14b", "text_encoder", "umt5", "UMT5-XXL encoder")),
}


def _classes(kind: str):
    from diffusers import FluxTransformer2DModel, WanTransformer3DModel
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    return {
        "flux": (FluxTransformer2DModel, None), "wan": (WanTransformer3DModel, None),
        "t5": (T5EncoderModel, T5Config), "umt5": (UMT5EncoderModel, UMT5Config),
    }[kind]


def write_part(kind: str, config: dict, folder: Path) -> int:
    """A config and a random bf16 safetensors file for one part, tensor by tensor; returns the file's bytes."""
    from accelerate import init_empty_weights

    from pipelines.tiny.checkpoint_files import random_entries, write_safetensors

    model_class, config_class = _classes(kind)
    folder.mkdir(parents=True, exist_ok=True)
    with init_empty_weights():
        if config_class is None:
            model = model_class.from_config(config)
            model.save_config(folder)
        else:
            hf_config = config_class(**config)
            model = model_class(hf_config)
            hf_config.save_pretrained(folder)
    shapes = [(name, tuple(p.shape), p.is_floating_point()) for name, p in model.named_parameters()]
    return write_safetensors(folder / "weights.safetensors", random_entries(shapes, torch.bfloat16, seed=len(shapes)))


# -- one part in its own process --------------------------------------------------------------------


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


@torch.inference_mode()
def run_part(kind: str, folder: Path) -> dict:
    """Load one part with int8 storage on the CPU, run one forward at a tiny size; the figures as a dict."""
    from accelerate import init_empty_weights

    from pipelines.memory.host_arena import HostArena
    from pipelines.memory.loader import dtype_rule, stored_rule, stream_from_file
    from pipelines.memory.stored_weights import StoredAs
    from pipelines.memory.weights_file import WeightsFile

    torch.manual_seed(0)
    model_class, config_class = _classes(kind)
    # After the imports: what the load itself adds.
    baseline, read_before, started = _status_bytes("VmRSS"), _read_bytes(), time.monotonic()
    weights = WeightsFile(folder, stem="weights")
    arena = HostArena(pinned=False)
    with init_empty_weights():
        if config_class is None:
            model = model_class.from_config(model_class.load_config(folder))
        else:
            model = model_class(config_class.from_pretrained(folder))
    if config_class is None:
        streamer = stream_from_file(model, weights, torch.device("cpu"), dtype_rule(model, torch.bfloat16),
                                    stored_rule(model, StoredAs.INT8), arena)
    else:
        # A transformers encoder: its block list is `encoder.block`; the embedding is saved once, as `shared`.
        def key(name: str) -> str:
            return "shared.weight" if name == "embed_tokens.weight" else f"encoder.{name}"

        streamer = stream_from_file(model.encoder, weights, torch.device("cpu"), lambda name: torch.bfloat16,
                                    lambda name: StoredAs.INT8, arena, key=key)
    weights.close()
    load_s, read = time.monotonic() - started, _read_bytes() - read_before
    after_load = _status_bytes("VmHWM")
    streamer.place(set())
    started = time.monotonic()
    model(**_inputs(kind, model.config))
    return dict(
        kind=kind, load_s=round(load_s, 1), forward_s=round(time.monotonic() - started, 1), read_gb=round(read / GB, 2),
        arena_gb=round(arena.capacity_bytes / GB, 2), trunk_gb=round(streamer.trunk_bytes / GB, 2),
        baseline_rss_gb=round(baseline / GB, 2), load_peak_rss_gb=round(after_load / GB, 2), peak_rss_gb=round(_status_bytes("VmHWM") / GB, 2),
    )


def _inputs(kind: str, config) -> dict:
    bf16 = dict(dtype=torch.bfloat16)
    if kind == "flux":
        return dict(hidden_states=torch.randn(1, 16, config.in_channels, **bf16), encoder_hidden_states=torch.randn(1, 8, config.joint_attention_dim, **bf16),
                    pooled_projections=torch.randn(1, config.pooled_projection_dim, **bf16), timestep=torch.tensor([0.5], **bf16),
                    img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), guidance=torch.tensor([3.5], **bf16), return_dict=False)
    if kind == "wan":
        return dict(hidden_states=torch.randn(1, config.in_channels, 1, 4, 4, **bf16), timestep=torch.tensor([500]),
                    encoder_hidden_states=torch.randn(1, 8, config.text_dim, **bf16), return_dict=False)
    return dict(input_ids=torch.randint(0, config.vocab_size, (1, 8)))


# -- memory caps ------------------------------------------------------------------------------------


def cgroup_cap_problem() -> str:
    """Why parts cannot run under a memory cap here ("" when they can)."""
    if os.geteuid() != 0:
        return "not root"
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").is_file():
        if "memory" not in (root / "cgroup.controllers").read_text().split():
            return "cgroup v2 without the memory controller"
        return "" if os.access(root, os.W_OK) else "/sys/fs/cgroup is read-only"
    if (root / "memory" / "memory.limit_in_bytes").is_file():
        return "" if os.access(root / "memory", os.W_OK) else "/sys/fs/cgroup/memory is read-only"
    return "no cgroup memory controller"


def _capped_command(command: list[str], cap_bytes: int, name: str) -> tuple[list[str], Path]:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").is_file():
        group = root / name
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(str(cap_bytes))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
    else:
        group = root / "memory" / name
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(cap_bytes))
    # The child joins the group before exec'ing Python: everything it maps is counted.
    return ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *command], group


def run_child(kind: str, folder: Path, cap_gb: float | None = None) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(folder)]
    group = None
    if cap_gb is not None:
        command, group = _capped_command(command, int(cap_gb * GB), f"atelier-bench-{kind}-{int(cap_gb)}g")
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        if group is not None:
            try:
                group.rmdir()
            except OSError:
                pass
    if done.returncode != 0:
        return {"kind": kind, "failed": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'killed'}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the table --------------------------------------------------------------------------------------


def plan_ram_gb(part: Part) -> float | None:
    """The job plan's RAM for this component with int8 weights on the 8 GB laptop preset (32 GB of RAM), with the
    process's own RAM the plan counts once per job (each part runs in a process of its own here)."""
    from pipelines.catalog import MODELS_BY_ID
    from pipelines.memory.job_plan import PROCESS_RAM_BYTES, plan_job
    from presets import load_presets

    from pipelines.memory.encoder_plan import TRUNK_SHARE, stored_encoder_bytes

    spec = MODELS_BY_ID.get(part.model)
    if spec is None:
        return None
    if part.kind in ENCODER_CLASSES:
        # The plan may put the encoder on disk instead (no RAM of its own); this bench loads it int8, so the figure is
        # the plan's for an int8 encoder.
        shipped = spec.component_bytes[part.name]
        ram = stored_encoder_bytes(shipped, "int8", TRUNK_SHARE[ENCODER_CLASSES[part.kind]]) / 1e9
    else:
        plan = plan_job(spec, load_presets()["8gb-laptop"], 32 * 2**30, weights="int8")
        ram = next((component.ram_gb for component in plan.components if component.name == part.name), None)
    return None if ram is None else round(ram + PROCESS_RAM_BYTES / 1e9, 2)


ENCODER_CLASSES = {"t5": "T5EncoderModel", "umt5": "UMT5EncoderModel"}


def capped_text(cap: float, run: dict, plan: float | None) -> str:
    """How a run under a memory cap ended; a cap below the plan's figure is expected to stop it."""
    if "failed" not in run:
        return f"{cap:g} GB: completed, {run['peak_rss_gb']} GB"
    if plan is not None and plan > cap:
        return f"{cap:g} GB: stopped, as the plan's {plan} GB says"
    return f"{cap:g} GB: failed"


def machine() -> str:
    cores = os.cpu_count()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {cores} cores, {ram:.0f} GiB RAM, {gpu}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="flux,wan", help="comma-separated: flux, wan")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/atelier-bench-laptop"), help="where the checkpoints are written")
    parser.add_argument("--smoke", action="store_true", help="tiny configs: checks the bench itself in seconds")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints afterwards")
    parser.add_argument("--caps", default="16,32", help="memory caps in GB to run each part under, where cgroups allow ('' for none)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_part(args.child[0], Path(args.child[1]))))
        return 0
    caps = [float(cap) for cap in args.caps.split(",") if cap.strip()]
    problem = cgroup_cap_problem() if caps else "no caps asked"
    print(f"machine: {machine()}")
    print(f"memory caps: {'not run (' + problem + ')' if problem else ', '.join(f'{cap:g} GB' for cap in caps)}")
    rows, failed = [], False
    for key in [name.strip() for name in args.models.split(",") if name.strip()]:
        for part in PARTS[key]:
            folder = args.dir / key / part.kind
            started = time.monotonic()
            written = write_part(part.kind, SMOKE[part.kind] if args.smoke else _full(part.kind), folder)
            print(f"wrote {part.label}: {written / GB:.2f} GB in {time.monotonic() - started:.0f} s", flush=True)
            result = run_child(part.kind, folder)
            capped = {} if problem else {cap: run_child(part.kind, folder, cap) for cap in caps}
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
            plan = None if args.smoke else plan_ram_gb(part)
            # A cap under the plan's figure is meant to stop the run: only an unexpected stop is a failure.
            failed |= "failed" in result or any("failed" in run and not (plan and plan > cap) for cap, run in capped.items())
            rows.append((part, written, result, capped, plan))
            print(json.dumps(result), flush=True)
    print()
    print("| part | bf16 file GB | plan RAM GB (int8, 8gb-laptop) | int8 arena + trunk GB | peak RSS GB (VmHWM) | load s | GB read | forward s | capped runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for part, written, result, capped, plan in rows:
        if "failed" in result:
            print(f"| {part.label} | {written / GB:.2f} | | | failed: {result['failed']} | | | | |")
            continue
        caps_text = ", ".join(capped_text(cap, run, plan) for cap, run in capped.items()) or "not run"
        print(
            f"| {part.label} | {written / GB:.2f} | {plan if plan is not None else '–'} | {result['arena_gb'] + result['trunk_gb']:.2f} | "
            f"{result['peak_rss_gb']} | {result['load_s']} | {result['read_gb']} | {result['forward_s']} | {caps_text} |"
        )
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 1 if failed else 0


def _full(kind: str) -> dict:
    return {"flux": FLUX_DEV, "wan": WAN_14B, "t5": T5_XXL, "umt5": UMT5_XXL}[kind]


if __name__ == "__main__":
    raise SystemExit(main())
