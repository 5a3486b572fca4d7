"""Prompt building, the sampling distribution and whole generations (with the KV caches) against the official
fish-speech outputs on the tiny random-weight model; stopping, the budget, and Stop raised from `on_token`."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from pipelines.networks.fish_speech.dual_ar import DualARTransformer, load_dual_ar
from pipelines.networks.fish_speech.generation import SamplingSettings, build_prompt, codes_from, generate, sampling_probs
from pipelines.networks.fish_speech.tokenizer import FishTokenizer

# The reference runs (fixture README): sampling settings, and the seed set right before the sampled runs.
RUNS = {
    "greedy": SamplingSettings(temperature=1e-5, top_p=1.0, repetition_penalty=1.0),
    "greedy_rep": SamplingSettings(temperature=1e-5, top_p=0.8, repetition_penalty=1.1),
    "sampled": SamplingSettings(temperature=0.8, top_p=0.8, repetition_penalty=1.1),
}
SEED = 1234
PROMPTS = {"ref": "prompt", "noref": "prompt_noref"}


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def tokenizer(fish_fixtures) -> FishTokenizer:
    return FishTokenizer.from_folder(fish_fixtures / "tokenizer")


@pytest.fixture(scope="module")
def reference(fish_fixtures) -> dict[str, torch.Tensor]:
    return load_file(fish_fixtures / "llm_generate.safetensors")


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(SEED)


def run_reference(model, tokenizer, inputs, reference, run: str, prompt: str, **options) -> tuple[torch.Tensor, ...]:
    """(generated seq, reference seq) of one reference run; the budget is the number of columns the reference
    generated (a run that stopped at <|im_end|> stops there with any larger budget too)."""
    want = reference[f"{run}_{prompt}_seq"]
    tokens = inputs[PROMPTS[prompt]]
    budget = want.shape[1] - tokens.shape[1]
    seq = generate(model, tokens, budget, RUNS[run], tokenizer.im_end_id, generator=seeded(), **options)
    return seq, want


def test_build_prompt_reproduces_the_reference_prompts(fish_fixtures, tokenizer, model, inputs):
    texts = json.loads((fish_fixtures / "llm_inputs.json").read_text())
    num_codebooks, speaker = model.config.num_codebooks, texts["speaker"]
    references = [(texts["ref_text"], inputs["ref_codes"])]
    assert torch.equal(build_prompt(tokenizer, texts["text"], references, num_codebooks, speaker), inputs["prompt"])
    assert torch.equal(build_prompt(tokenizer, texts["text"], [], num_codebooks, speaker), inputs["prompt_noref"])


def test_reference_codes_out_of_the_semantic_range_are_rejected(tokenizer, model, inputs):
    codes = inputs["ref_codes"].clone()
    codes[0, 0] = tokenizer.semantic_end_id - tokenizer.semantic_begin_id + 1
    with pytest.raises(ValueError, match="out of range"):
        build_prompt(tokenizer, "text", [("transcript", codes)], model.config.num_codebooks)


def test_sampling_probabilities_match_the_reference_with_bfloat16_parameters(fish_fixtures):
    data = load_file(fish_fixtures / "sampling_probs.safetensors")
    cases = json.loads((fish_fixtures / "sampling_probs.json").read_text())
    for name, case in cases.items():
        settings = SamplingSettings(case["temperature"], case["top_p"], case["repetition_penalty"])
        rounded = [case["temperature_bf16"], case["top_p_bf16"], case["repetition_penalty_bf16"]]
        assert settings.as_tensor().tolist() == rounded
        previous = data["previous_tokens"] if case["uses_previous_tokens"] else None
        probs = sampling_probs(data["logits"], settings, previous)
        want = data[f"probs_{name}"]
        error = (probs - want).abs()
        assert (error <= 1e-4 + 1e-4 * want.abs()).all(), f"probs_{name}: max abs error {error.max().item():.3g}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_greedy_sampling_of_half_precision_logits_picks_the_largest(fish_fixtures, dtype):
    logits = load_file(fish_fixtures / "sampling_probs.safetensors")["logits"].to(dtype)
    probs = sampling_probs(logits, RUNS["greedy"])
    assert torch.isfinite(probs).all()
    assert probs.argmax() == logits.argmax()


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("run", RUNS)
def test_generation_reproduces_the_reference_run(model, tokenizer, inputs, reference, run, prompt):
    seq, want = run_reference(model, tokenizer, inputs, reference, run, prompt)
    assert torch.equal(seq, want), f"main tokens {seq[0].tolist()} != {want[0].tolist()}"
    assert torch.equal(codes_from(seq, inputs[PROMPTS[prompt]].shape[1]), reference[f"{run}_{prompt}_codes"])


def test_sampled_run_seeded_through_the_global_generator_matches_the_reference(model, tokenizer, inputs, reference):
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        want, prompt = reference["sampled_ref_seq"], inputs["prompt"]
        seq = generate(model, prompt, want.shape[1] - prompt.shape[1], RUNS["sampled"], tokenizer.im_end_id)
    assert torch.equal(seq, want)


def test_generation_stops_after_the_im_end_column(fish_fixtures, tokenizer, inputs, reference):
    stop_model = load_dual_ar(fish_fixtures / "llm", tokenizer_folder=fish_fixtures / "tokenizer")
    with torch.no_grad():
        stop_model.embeddings.weight[tokenizer.im_end_id] = reference["stop_im_end_row"]
    prompt = inputs["prompt_noref"]
    want = reference["stop_noref_seq"]
    generous_budget = 2 * (want.shape[1] - prompt.shape[1])
    seq = generate(stop_model, prompt, generous_budget, RUNS["greedy_rep"], tokenizer.im_end_id)
    assert torch.equal(seq, want)
    assert seq[0, -1] == tokenizer.im_end_id
    assert torch.equal(codes_from(seq, prompt.shape[1]), reference["stop_noref_codes"])


def test_on_token_counts_every_generated_column(model, tokenizer, inputs, reference):
    counts = []
    seq, _ = run_reference(model, tokenizer, inputs, reference, "sampled", "ref", on_token=counts.append)
    assert counts == list(range(1, seq.shape[1] - inputs["prompt"].shape[1] + 1))


@pytest.mark.parametrize("stop_after", [1, 3])
def test_stop_raised_from_on_token_propagates_and_the_next_run_equals_a_fresh_one(
    model, tokenizer, inputs, reference, stop_after
):
    def stop(count: int) -> None:
        if count == stop_after:
            raise Stop

    with pytest.raises(Stop):
        generate(model, inputs["prompt_noref"], 8, RUNS["sampled"], tokenizer.im_end_id, on_token=stop)
    seq, want = run_reference(model, tokenizer, inputs, reference, "sampled", "ref")
    assert torch.equal(seq, want)


def test_budget_ends_at_max_seq_len_with_the_same_first_columns(model, tokenizer, inputs, reference):
    prompt, want = inputs["prompt"], reference["greedy_ref_seq"]
    room = min(3, want.shape[1] - prompt.shape[1])
    short = DualARTransformer(replace(model.config, max_seq_len=prompt.shape[1] + room))
    short.load_state_dict(model.state_dict())
    seq = generate(short, prompt, 100, RUNS["greedy"], tokenizer.im_end_id)
    assert torch.equal(seq, want[:, : prompt.shape[1] + room])


def test_a_prompt_of_the_wrong_shape_is_a_value_error(model, tokenizer, inputs):
    with pytest.raises(ValueError, match="columns"):
        generate(model, inputs["prompt"][1:], 4, RUNS["greedy"], tokenizer.im_end_id)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("run", ["greedy", "greedy_rep"])
def test_cuda_greedy_generation_reproduces_the_reference(fish_fixtures, tokenizer, inputs, reference, run, compile):
    cuda_model = load_dual_ar(fish_fixtures / "llm", device="cuda", tokenizer_folder=fish_fixtures / "tokenizer")
    for prompt, key in PROMPTS.items():
        want = reference[f"{run}_{prompt}_seq"]
        tokens = inputs[key].cuda()
        budget = want.shape[1] - tokens.shape[1]
        seq = generate(cuda_model, tokens, budget, RUNS[run], tokenizer.im_end_id, compile=compile)
        assert torch.equal(seq.cpu(), want)
