"""Text to semantic codes with the DualAR model, the way fish-speech 0.1.0 samples them.

One generated column per step: the slow transformer picks the main token (a semantic token, or <|im_end|> to
stop), codebook 0 is that token's semantic index, and the fast transformer picks codebooks 1..n-1 one after the
other. Every pick applies the repetition penalty, top-p and temperature to the logits, then draws with the
"exponential race" `argmax(probs / q)`, q ~ Exponential(1) — the same random numbers, in the same order, as the
official code, so a seeded run reproduces it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pipelines.networks.fish_speech.dual_ar import DualARConfig, DualARTransformer
from pipelines.networks.fish_speech.tokenizer import IM_END_TOKEN, FishTokenizer

INTERLEAVE_TOKEN = "<|interleave|>"
# The official sampler penalises repeats within the last 16 generated columns.
REPETITION_WINDOW = 16
# Codebooks 1.. are drawn from the first 1024 fast logits: the residual codebooks of S1-mini's codec have 1024
# entries, only the semantic codebook has `codebook_size`.
RESIDUAL_CODEBOOK_SIZE = 1024


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.8
    top_p: float = 0.8
    repetition_penalty: float = 1.1

    def as_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        """[temperature, top_p, repetition_penalty] as the official sampler holds them: rounded to bfloat16, the
        temperature at least 1e-5. A tensor, so that a compiled decode step does not specialise on the values."""
        temperature = _bfloat16(max(_bfloat16(self.temperature), 1e-5))
        values = [temperature, _bfloat16(self.top_p), _bfloat16(self.repetition_penalty)]
        return torch.tensor(values, dtype=torch.float32, device=device)


def _bfloat16(value: float) -> float:
    return torch.tensor(value, dtype=torch.bfloat16).item()


def sampling_probs(logits: Tensor, settings: SamplingSettings, previous_tokens: Tensor | None = None) -> Tensor:
    """The distribution one pick draws from, for a (vocabulary,) logits vector; `previous_tokens` are penalised."""
    return _probs(logits, settings.as_tensor(logits.device), previous_tokens)


def _probs(logits: Tensor, parameters: Tensor, previous_tokens: Tensor | None) -> Tensor:
    # In float32 whatever the model's dtype: float16 logits divided by a low temperature overflow to inf.
    logits = logits.float()
    temperature, top_p, repetition_penalty = parameters[0], parameters[1], parameters[2]
    if previous_tokens is not None:
        previous_tokens = previous_tokens.long()
        score = logits.gather(-1, previous_tokens)
        score = torch.where(score < 0, score * repetition_penalty, score / repetition_penalty)
        logits = logits.scatter(-1, previous_tokens, score)
    # Top-p on the penalised logits before the temperature, always keeping the most likely token.
    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove_sorted = cumulative > top_p
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    logits = logits.masked_fill(remove, -math.inf)
    return torch.softmax(logits / temperature, dim=-1)


def _choose(probs: Tensor, noise: Tensor) -> Tensor:
    """A draw from `probs`: the argmax of probs / q with q ~ Exponential(1) (the official no-sync sampler)."""
    return torch.argmax(probs / noise, dim=-1)


def _next_column(
    model: DualARTransformer, columns: Tensor, positions: Tensor, window: Tensor | None, parameters: Tensor,
    main_noise: Tensor, codebook_noise: Tensor,
) -> Tensor:
    """The (1 + num_codebooks,) column that follows `columns` (1, 1 + num_codebooks, length) at `positions`.
    `window`: the generated columns the repetition penalty looks at (None for the first column)."""
    config = model.config
    hidden = model.slow_hidden(columns, positions)[:, -1:]
    logits = model.slow_logits(hidden)[0, -1]
    # The official sampler penalises the main token with the first column of the window (all its rows).
    main = _choose(_probs(logits, parameters, None if window is None else window[:, 0]), main_noise)

    fast_positions = torch.arange(config.num_codebooks, device=hidden.device)
    model.fast_hidden(model.fast_project_in(hidden), fast_positions[:1])
    # Not a semantic token (<|im_end|>): code 0. The upper clamp keeps a padding id past the semantic tokens in range.
    code = (main - config.semantic_begin_id).clamp(0, config.codebook_size - 1)
    column = [main, code]
    for index in range(1, config.num_codebooks):
        fast = model.fast_hidden(model.fast_embeddings(code).view(1, 1, -1), fast_positions[index : index + 1])
        logits = model.fast_logits(fast)[0, -1, :RESIDUAL_CODEBOOK_SIZE]
        previous = None if window is None else window[index + 1]
        code = _choose(_probs(logits, parameters, previous), codebook_noise[index - 1])
        column.append(code)
    return torch.stack(column)


@functools.cache
def _compiled_next_column(mode: str | None) -> Callable[..., Tensor]:
    """`_next_column` compiled once per process; the model is an argument, so every model shares the cache entry
    (Dynamo recompiles per model and cache shape). CUDA graphs ("reduce-overhead") take away the launch overhead
    that dominates a batch of one."""
    return torch.compile(_next_column, mode=mode, fullgraph=True)


def _exponential_noise(rows: int, size: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """`rows` separate draws of `size` Exponential(1) numbers, in order, each as the official `empty_like(probs)
    .exponential_(1)` with float32 probabilities; drawn where the generator lives, then moved."""
    source = device if generator is None else generator.device
    noise = torch.empty((rows, size), dtype=torch.float32, device=source)
    for row in noise:
        row.exponential_(1, generator=generator)
    return noise.to(device)


def _column_noise(
    config: DualARConfig, device: torch.device, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """The random numbers of one column: the main token's, then those of codebooks 1.. (the official order)."""
    main = _exponential_noise(1, config.vocab_size, device, generator)[0]
    residual_size = min(RESIDUAL_CODEBOOK_SIZE, config.codebook_size)
    return main, _exponential_noise(config.num_codebooks - 1, residual_size, device, generator)


def generate(
    model: DualARTransformer,
    prompt: Tensor,
    max_new_tokens: int,
    settings: SamplingSettings,
    im_end_id: int,
    generator: torch.Generator | None = None,
    on_token: Callable[[int], None] | None = None,
    compile: bool = False,
) -> Tensor:
    """`prompt` (1 + num_codebooks, length) followed by the generated columns, on the prompt's device. Stops after a
    column whose main token is `im_end_id` (kept) or after `max_new_tokens` columns (fewer if max_seq_len is
    reached). `on_token(n)` runs after the n-th generated column; an exception from it ends the generation and
    propagates (the model stays usable). `compile`: run the per-column decode step through torch.compile."""
    max_new_tokens = _budget(model.config, prompt, max_new_tokens)
    device = model.embeddings.weight.device
    model.setup_caches(prompt.shape[1] + max_new_tokens)
    step = _compiled_next_column("reduce-overhead" if device.type == "cuda" else None) if compile else _next_column
    with torch.no_grad():
        generated = _generate_columns(
            model, prompt.to(device), max_new_tokens, settings.as_tensor(device), im_end_id, generator, on_token, step
        )
    return torch.cat([prompt, generated.to(prompt.device, prompt.dtype)], dim=1)


def _budget(config: DualARConfig, prompt: Tensor, max_new_tokens: int) -> int:
    """The number of columns that may be generated after `prompt`; ValueError for a prompt the model cannot take."""
    width = config.num_codebooks + 1
    if prompt.dim() != 2 or prompt.shape[0] != width:
        raise ValueError(f"the prompt must be ({width}, length) columns, got {tuple(prompt.shape)}")
    if not 0 < prompt.shape[1] < config.max_seq_len:
        raise ValueError(f"the prompt has {prompt.shape[1]} columns; the model takes 1 to {config.max_seq_len - 1}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    return min(max_new_tokens, config.max_seq_len - prompt.shape[1])


def _generate_columns(
    model: DualARTransformer, prompt: Tensor, max_new_tokens: int, parameters: Tensor, im_end_id: int,
    generator: torch.Generator | None, on_token: Callable[[int], None] | None, step: Callable[..., Tensor],
) -> Tensor:
    """(1 + num_codebooks, generated) columns: the first from the prefill of the prompt, the others one by one."""
    config, device = model.config, prompt.device
    width, prompt_len = prompt.shape
    noise = _column_noise(config, device, generator)
    column = _next_column(model, prompt[None], torch.arange(prompt_len, device=device), None, parameters, *noise)
    generated = [column]
    _report(on_token, 1)
    # Generated columns from the second on, where the repetition window reads them (the official layout).
    history = torch.zeros((width, max(REPETITION_WINDOW, max_new_tokens)), dtype=torch.long, device=device)
    position = torch.tensor([prompt_len], device=device)
    # As in the official loop, only columns from the second on are checked for <|im_end|>.
    for index in range(max_new_tokens - 1):
        start = max(0, index - REPETITION_WINDOW)
        window = history[:, start : start + REPETITION_WINDOW].contiguous()
        noise = _column_noise(config, device, generator)
        column = step(model, column.view(1, width, 1), position, window, parameters, *noise).clone()
        history[:, index] = column
        generated.append(column)
        _report(on_token, len(generated))
        if int(column[0]) == im_end_id:
            break
        position += 1
    return torch.stack(generated, dim=1)


def _report(on_token: Callable[[int], None] | None, count: int) -> None:
    if on_token is not None:
        on_token(count)


def codes_from(seq: Tensor, prompt_len: int) -> Tensor:
    """The generated codes (num_codebooks, frames) of a `generate` result; the last column (<|im_end|>, or the
    column where the budget ran out) is not audio."""
    return seq[1:, prompt_len:-1]


def build_prompt(
    tokenizer: FishTokenizer, text: str, references: list[tuple[str, Tensor]], num_codebooks: int, speaker: int = 0
) -> Tensor:
    """(1 + num_codebooks, length) columns in the official interleaved layout:
    <|interleave|>, then per reference <|speaker:N|> transcript <its semantic tokens> <|im_end|>, then
    <|speaker:N|> text. Each text piece is encoded on its own; rows 1.. hold the reference codes at the semantic
    positions and 0 elsewhere."""
    speaker_token = f"<|speaker:{speaker}|>"
    pieces = [_text_columns(tokenizer, INTERLEAVE_TOKEN, num_codebooks)]
    for transcript, codes in references:
        pieces += [
            _text_columns(tokenizer, speaker_token, num_codebooks),
            _text_columns(tokenizer, transcript, num_codebooks),
            _code_columns(tokenizer, codes, num_codebooks),
            _text_columns(tokenizer, IM_END_TOKEN, num_codebooks),
        ]
    pieces += [_text_columns(tokenizer, speaker_token, num_codebooks), _text_columns(tokenizer, text, num_codebooks)]
    return torch.cat(pieces, dim=1)


def _text_columns(tokenizer: FishTokenizer, text: str, num_codebooks: int) -> Tensor:
    ids = tokenizer.encode(text)
    columns = torch.zeros((num_codebooks + 1, len(ids)), dtype=torch.long)
    columns[0] = torch.tensor(ids, dtype=torch.long)
    return columns


def _code_columns(tokenizer: FishTokenizer, codes: Tensor, num_codebooks: int) -> Tensor:
    codes = codes.to("cpu", torch.long)
    if codes.dim() != 2 or codes.shape[0] != num_codebooks:
        raise ValueError(f"reference codes must be ({num_codebooks}, frames), got {tuple(codes.shape)}")
    semantic_tokens = tokenizer.semantic_end_id - tokenizer.semantic_begin_id + 1
    if codes.numel() and (codes.min() < 0 or codes[0].max() >= semantic_tokens):
        raise ValueError(f"reference codes out of range: codebook 0 takes 0..{semantic_tokens - 1}, the others >= 0")
    return torch.cat([codes[:1] + tokenizer.semantic_begin_id, codes])
