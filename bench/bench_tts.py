"""Text-to-semantic benchmark: how fast the DualAR model of OpenAudio S1-mini generates codes, as the real-time factor
(seconds of audio per second of compute), eager and with the per-column decode step compiled.

    python bench/bench_tts.py                              # on a CUDA machine: S1-mini dimensions, bf16
    python bench/bench_tts.py --prompt-len 1024 --tokens 2048
    python bench/bench_tts.py --smoke                      # CPU, tiny config, eager only: checks the script itself
    python bench/bench_tts.py --smoke --modes eager,compiled   # the compiled path on CPU too (about a minute)

The weights are random (seeded), so the sampled tokens mean nothing; <|im_end|> is never honoured, so every run
generates exactly --tokens columns. Each mode runs once to warm up (and compile), then --repeats timed runs; the
decode rate counts the columns after the first (the first one comes from the prefill of the prompt).
It prints a markdown table, and writes it to --out when given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipelines.networks.fish_speech.dual_ar import DualARConfig, DualARTransformer  # noqa: E402
from pipelines.networks.fish_speech.generation import SamplingSettings, generate  # noqa: E402

GIB = 1024**3
# S1-mini's codec: 44.1 kHz audio, one code frame per 2048 samples.
FRAMES_PER_SECOND = 44100 / 2048
NEVER = -1  # an im_end id no column can have: runs always use their whole budget

# OpenAudio S1-mini's DualAR (fishaudio/openaudio-s1-mini, config.json). Source: the DualARModelArgs that
# fish-speech prints when it loads that checkpoint ("Loading model from .../s1-mini, config: DualARModelArgs(...)"),
# found through the code search in a published server log; it agrees with the 1.74 GB bf16 size in our catalog
# (about 0.87 B parameters, the untied output head included). The ids of the 4096 semantic tokens come from
# special_tokens.json, which we did not find published; S2's config puts them at 151678..155773 of the same
# 155776-id vocabulary, and where they sit changes no cost.
S1_MINI = dict(
    vocab_size=155776, n_layer=28, n_head=16, n_local_heads=8, head_dim=128, dim=1024, intermediate_size=3072,
    rope_base=1_000_000.0, norm_eps=1e-6, max_seq_len=8192, tie_word_embeddings=False, attention_qkv_bias=False,
    attention_o_bias=False, attention_qk_norm=True, codebook_size=4096, num_codebooks=10,
    scale_codebook_embeddings=True, n_fast_layer=4, fast_dim=1024, fast_n_head=16, fast_n_local_heads=8,
    fast_head_dim=64, fast_intermediate_size=3072, fast_attention_qkv_bias=False, fast_attention_qk_norm=False,
    fast_attention_o_bias=False, semantic_begin_id=151678, semantic_end_id=155773,
)
SMOKE = dict(
    vocab_size=1331, n_layer=2, n_head=4, n_local_heads=2, head_dim=16, dim=64, intermediate_size=128, max_seq_len=512,
    attention_qk_norm=True, codebook_size=1032, num_codebooks=4, scale_codebook_embeddings=True, n_fast_layer=1,
    fast_dim=48, fast_n_head=4, fast_n_local_heads=1, fast_head_dim=12, fast_intermediate_size=96,
)


def build_model(config: DualARConfig, device: torch.device, dtype: torch.dtype) -> DualARTransformer:
    torch.manual_seed(0)
    with torch.device(device):
        model = DualARTransformer(config)
    return model.to(device=device, dtype=dtype).requires_grad_(False).eval()


def random_prompt(config: DualARConfig, length: int) -> torch.Tensor:
    """A voice-cloning-shaped prompt: a quarter of text tokens, then reference frames with their codes."""
    generator = torch.Generator().manual_seed(1)
    text = length // 4
    columns = torch.zeros((config.num_codebooks + 1, length), dtype=torch.long)
    columns[0, :text] = torch.randint(0, config.semantic_begin_id, (text,), generator=generator)
    codes = torch.randint(0, 1024, (config.num_codebooks, length - text), generator=generator)
    columns[0, text:] = codes[0] + config.semantic_begin_id
    columns[1:, text:] = codes
    return columns


def timed_run(model, prompt, tokens: int, compile: bool, device: torch.device) -> tuple[float, float]:
    """(seconds of the whole call, seconds from the first column to the last)."""
    marks: list[float] = []

    def mark(count: int) -> None:
        if count == 1:
            sync(device)
            marks.append(time.perf_counter())

    sync(device)
    started = time.perf_counter()
    generate(model, prompt, tokens, SamplingSettings(), NEVER, generator=torch.Generator(device).manual_seed(0),
             on_token=mark, compile=compile)
    sync(device)
    finished = time.perf_counter()
    return finished - started, finished - marks[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, prompt, tokens: int, mode: str, repeats: int, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first_call, _ = timed_run(model, prompt, tokens, mode == "compiled", device)
    runs = [timed_run(model, prompt, tokens, mode == "compiled", device) for _ in range(repeats)]
    decode_seconds = statistics.median(decode for _, decode in runs)
    decode_rate = (tokens - 1) / decode_seconds
    return {
        "mode": mode,
        "first_call_s": first_call,
        "total_s": statistics.median(total for total, _ in runs),
        "tokens_per_s": decode_rate,
        "ms_per_token": 1000 / decode_rate,
        "audio_s_per_s": decode_rate / FRAMES_PER_SECOND,
        "peak_vram_gib": torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else float("nan"),
    }


def table(rows: list[dict], args, device: torch.device, parameters: int) -> str:
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke run)"
    model_name = "tiny smoke config" if args.smoke else "OpenAudio S1-mini DualAR dimensions"
    header = (
        f"Measured {dt.date.today().isoformat()} on {name}, torch {torch.__version__}: {model_name} "
        f"({parameters / 1e6:.1f} M parameters, random weights) in {args.dtype}, prompt {args.prompt_len} columns, "
        f"{args.tokens} generated columns, median of {args.repeats}. Audio s per s = decode columns per second / "
        f"{FRAMES_PER_SECOND:.2f} frames per second of audio.\n\n"
    )
    lines = [
        "| decode step | columns/s (decode) | audio s per s | ms / column | whole call s (prefill included) "
        "| first call s (compile included) | peak VRAM GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['mode']} | failed: {row['error'][-160:]!r} | | | | | |")
            continue
        lines.append(
            f"| {row['mode']} | {row['tokens_per_s']:.1f} | {row['audio_s_per_s']:.2f} | {row['ms_per_token']:.2f} | "
            f"{row['total_s']:.2f} | {row['first_call_s']:.1f} | {row['peak_vram_gib']:.2f} |"
        )
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny config on the CPU in float32")
    parser.add_argument("--modes", default=None, help="eager,compiled (default; --smoke: eager)")
    parser.add_argument("--prompt-len", type=int, default=None, help="prompt columns (default 512; --smoke: 16)")
    parser.add_argument("--tokens", type=int, default=None, help="generated columns (default 1024; --smoke: 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default=None, help="bfloat16 (default), float16 or float32 (--smoke: float32)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    args.modes = args.modes or ("eager" if args.smoke else "eager,compiled")
    args.prompt_len = args.prompt_len or (16 if args.smoke else 512)
    args.tokens = args.tokens or (16 if args.smoke else 1024)
    args.dtype = args.dtype or ("float32" if args.smoke else "bfloat16")
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke to check the script on the CPU")

    config = DualARConfig(**(SMOKE if args.smoke else S1_MINI))
    model = build_model(config, device, getattr(torch, args.dtype))
    parameters = sum(p.numel() for p in model.parameters())
    prompt = random_prompt(config, args.prompt_len).to(device)
    rows = []
    for mode in args.modes.split(","):
        try:
            row = measure(model, prompt, args.tokens, mode, args.repeats, device)
        except Exception as error:  # a mode that fails (say, compile without a toolchain) is reported, not fatal
            row = {"mode": mode, "error": f"{type(error).__name__}: {error}"}
        print(row, flush=True)
        rows.append(row)
    text = table(rows, args, device, parameters)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
