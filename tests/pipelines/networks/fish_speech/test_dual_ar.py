"""The DualAR model against golden outputs of the official fish-speech implementation (tiny random-weight model),
its KV-cache path against its own full pass, and the checkpoint layouts `load_dual_ar` must accept."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from pipelines.networks.fish_speech.dual_ar import (
    DualARConfig,
    DualARTransformer,
    load_dual_ar,
    official_dual_ar_state_dict,
)
from tests.pipelines.networks.fish_speech.conftest import assert_matches_reference


@pytest.fixture(scope="module")
def slow_reference(fish_fixtures) -> dict[str, torch.Tensor]:
    return load_file(fish_fixtures / "llm_slow_forward.safetensors")


def with_scaling(model: DualARTransformer, scaled: bool) -> DualARTransformer:
    """The same weights with scale_codebook_embeddings set as asked."""
    variant = DualARTransformer(replace(model.config, scale_codebook_embeddings=scaled))
    variant.load_state_dict(model.state_dict())
    return variant.eval()


def test_semantic_range_comes_from_the_tokenizer(fish_fixtures, model):
    reference = json.loads((fish_fixtures / "tokenizer_cases.json").read_text())
    assert (model.config.semantic_begin_id, model.config.semantic_end_id) == (
        reference["semantic_begin_id"], reference["semantic_end_id"],
    )


@pytest.mark.parametrize("variant", ["scaled", "unscaled"])
def test_slow_transformer_matches_the_reference_at_every_stage(model, inputs, slow_reference, variant):
    scaled_model = with_scaling(model, variant == "scaled")
    columns = inputs["prompt"][None]
    with torch.no_grad():
        embedded = scaled_model.embed(columns)[0]
        hidden = scaled_model.slow_hidden(columns)[0]
        logits = scaled_model.slow_logits(hidden)
        fast_input = scaled_model.fast_project_in(hidden[-1])
    assert_matches_reference(embedded, slow_reference[f"embed_{variant}"], f"embed_{variant}")
    assert_matches_reference(hidden, slow_reference[f"hidden_{variant}"], f"hidden_{variant}")
    assert_matches_reference(logits, slow_reference[f"logits_{variant}"], f"logits_{variant}")
    assert_matches_reference(logits[-1], slow_reference[f"last_logits_{variant}"], f"last_logits_{variant}")
    assert_matches_reference(fast_input, slow_reference[f"last_hidden_fast_{variant}"], f"last_hidden_fast_{variant}")


def test_slow_transformer_matches_the_reference_without_reference_audio(model, inputs, slow_reference):
    scaled_model = with_scaling(model, True)
    with torch.no_grad():
        hidden = scaled_model.slow_hidden(inputs["prompt_noref"][None])[0]
        logits = scaled_model.slow_logits(hidden)
    assert_matches_reference(hidden, slow_reference["hidden_noref_scaled"], "hidden_noref_scaled")
    assert_matches_reference(logits, slow_reference["logits_noref_scaled"], "logits_noref_scaled")


def test_fast_transformer_matches_the_reference_logits(fish_fixtures, model):
    reference = load_file(fish_fixtures / "llm_fast_forward.safetensors")
    codes = reference["codes"]
    with torch.no_grad():
        inputs = torch.cat([reference["hidden_in"][None], model.fast_embeddings(codes[:-1])])[None]
        logits = model.fast_logits(model.fast_hidden(inputs))[0]
    assert_matches_reference(logits, reference["logits"], "fast logits")


def test_cached_prefill_then_single_positions_equal_the_full_pass(model, inputs):
    columns = inputs["prompt"][None]
    length, split = columns.shape[-1], columns.shape[-1] // 2
    model.setup_caches(length)
    with torch.no_grad():
        full = model.slow_hidden(columns)
        cached = [model.slow_hidden(columns[..., :split], torch.arange(split))]
        cached += [model.slow_hidden(columns[..., i : i + 1], torch.tensor([i])) for i in range(split, length)]
    assert_matches_reference(torch.cat(cached, dim=1), full, "cached slow hidden")


def test_cached_fast_positions_equal_the_full_fast_pass(model):
    config = model.config
    inputs = torch.randn(1, config.num_codebooks, config.fast_dim, generator=torch.Generator().manual_seed(0))
    model.setup_caches(1)
    with torch.no_grad():
        full = model.fast_hidden(inputs)
        steps = [model.fast_hidden(inputs[:, k : k + 1], torch.tensor([k])) for k in range(config.num_codebooks)]
        stepped = torch.cat(steps, dim=1)
    assert_matches_reference(stepped, full, "cached fast hidden")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_half_precision_model_computes_in_its_dtype_close_to_float32(fish_fixtures, inputs, slow_reference, dtype):
    half = load_dual_ar(fish_fixtures / "llm", dtype=dtype, tokenizer_folder=fish_fixtures / "tokenizer")
    scaled = "scaled" if half.config.scale_codebook_embeddings else "unscaled"
    with torch.no_grad():
        logits = half.slow_logits(half.slow_hidden(inputs["prompt"][None]))[0]
    assert logits.dtype == dtype
    want = slow_reference[f"logits_{scaled}"]
    assert (logits.float() - want).abs().max() <= 0.05 * want.abs().max()


def legacy_checkpoint(model: DualARTransformer) -> dict:
    """The model's weights in the legacy layouts the official loader accepts: a training checkpoint's wrapper and
    "model." prefix, separate q/k/v projections, and an audio-projector key this model has no use for."""
    weights = {"model.audio_projector.weight": torch.zeros(2, 2)}
    for key, value in official_dual_ar_state_dict(model).items():
        if ".attention.wqkv." not in key:
            weights[f"model.{key}"] = value
            continue
        prefix, kind = key.split("wqkv.")
        attention = model.get_submodule(prefix.rstrip("."))
        sizes = [attention.n_head * attention.head_dim] + [attention.n_local_heads * attention.head_dim] * 2
        for name, part in zip(("wq", "wk", "wv"), value.split(sizes)):
            weights[f"model.{prefix}{name}.{kind}"] = part.clone()
    return {"state_dict": weights}


def write_legacy_folder(fish_fixtures, model: DualARTransformer, folder) -> dict:
    folder.mkdir()
    shutil.copy(fish_fixtures / "llm" / "config.json", folder)
    checkpoint = legacy_checkpoint(model)
    torch.save(checkpoint, folder / "model.pth")
    return checkpoint


def test_legacy_checkpoint_layout_loads_to_the_same_logits(fish_fixtures, model, inputs, tmp_path):
    write_legacy_folder(fish_fixtures, model, tmp_path / "legacy")
    legacy = load_dual_ar(tmp_path / "legacy", tokenizer_folder=fish_fixtures / "tokenizer")
    columns = inputs["prompt"][None]
    with torch.no_grad():
        want = model.slow_logits(model.slow_hidden(columns))
        got = legacy.slow_logits(legacy.slow_hidden(columns))
    assert torch.equal(got, want)


def drop_norm(weights: dict, model: DualARTransformer) -> None:
    del weights["model.norm.weight"]


def add_stray_weight(weights: dict, model: DualARTransformer) -> None:
    weights["model.stray.weight"] = torch.zeros(1)


def widen_fast_norm(weights: dict, model: DualARTransformer) -> None:
    weights["model.fast_norm.weight"] = torch.ones(model.config.fast_dim + 1)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (drop_norm, r"model\.pth.*missing norm\.weight"),
        (add_stray_weight, r"model\.pth.*unexpected stray\.weight"),
        (widen_fast_norm, r"model\.pth.*mis-shaped fast_norm\.weight"),
    ],
    ids=["missing", "unexpected", "mis-shaped"],
)
def test_a_checkpoint_that_does_not_fit_the_config_is_a_value_error_naming_file_and_key(
    fish_fixtures, model, tmp_path, damage, message
):
    folder = tmp_path / "broken"
    checkpoint = write_legacy_folder(fish_fixtures, model, folder)
    damage(checkpoint["state_dict"], model)
    torch.save(checkpoint, folder / "model.pth")
    with pytest.raises(ValueError, match=message):
        load_dual_ar(folder)


def test_an_unknown_config_key_is_a_value_error(fish_fixtures):
    data = json.loads((fish_fixtures / "llm" / "config.json").read_text())
    with pytest.raises(ValueError, match="unknown keys"):
        DualARConfig.from_dict({**data, "no_such_field": 1})


def test_unset_fast_fields_take_the_slow_values():
    config = DualARConfig(vocab_size=300, dim=32, n_head=4, head_dim=8, codebook_size=16, attention_qk_norm=True)
    assert (config.fast_dim, config.fast_n_head, config.fast_n_local_heads, config.fast_head_dim) == (32, 4, 4, 8)
    assert config.fast_intermediate_size == config.intermediate_size
    assert config.fast_attention_qk_norm
    assert (config.semantic_begin_id, config.semantic_end_id) == (300 - 16, 299)


def test_a_folder_without_special_tokens_json_loads_with_the_official_numbering(fish_fixtures, tmp_path):
    """OpenAudio S1-mini's loader copes without special_tokens.json (the official list is used): so does ours."""
    from pipelines.networks.fish_speech.dual_ar import DualARConfig, official_dual_ar_state_dict

    data = json.loads((fish_fixtures / "llm" / "config.json").read_text())
    # 284 BPE ranks + the official 15 named and 4096 semantic tokens.
    data["vocab_size"] = 284 + 15 + 4096
    (tmp_path / "config.json").write_text(json.dumps(data))
    shutil.copy(fish_fixtures / "tokenizer" / "tokenizer.tiktoken", tmp_path)
    torch.manual_seed(0)
    torch.save(official_dual_ar_state_dict(DualARTransformer(DualARConfig.from_json(tmp_path / "config.json"))), tmp_path / "model.pth")
    loaded = load_dual_ar(tmp_path)
    assert (loaded.config.semantic_begin_id, loaded.config.semantic_end_id) == (299, 299 + 4095)


def test_the_manager_refuses_a_checkpoint_with_unknown_and_missing_keys_naming_them(tmp_path, presets):
    from pipelines.errors import ModelLoadFailed
    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore

    store = ModelStore(tmp_path, offline=True)
    folder = store.ensure(store.catalog.spec("demo-fish-speech")).folder
    weights = torch.load(folder / "model.pth", weights_only=True)
    del weights["norm.weight"]
    weights["stray.weight"] = torch.zeros(1)
    torch.save(weights, folder / "model.pth")
    with pytest.raises(ModelLoadFailed) as refused:
        with ModelManager(store, presets["cpu"]).use("demo-fish-speech"):
            pass
    message = str(refused.value)
    assert "missing norm.weight" in message and "unexpected stray.weight" in message and "Traceback" not in message
