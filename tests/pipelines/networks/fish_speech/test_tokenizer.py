"""The tokenizer against the official tokenizer's outputs on the fixture's tiny BPE (pre-tokenizer pattern, special
tokens allowed in the text, special-token numbering)."""

import json
import shutil

import pytest

from pipelines.networks.fish_speech.tokenizer import FishTokenizer


@pytest.fixture(scope="module")
def reference(fish_fixtures) -> dict:
    return json.loads((fish_fixtures / "tokenizer_cases.json").read_text())


@pytest.fixture(scope="module")
def tokenizer(fish_fixtures) -> FishTokenizer:
    return FishTokenizer.from_folder(fish_fixtures / "tokenizer")


def test_every_case_encodes_to_the_reference_ids_and_decodes_back(tokenizer, reference):
    for case in reference["cases"]:
        assert tokenizer.encode(case["text"]) == case["ids"], case["text"]
        assert tokenizer.decode(case["ids"]) == case["text"]


def test_special_and_semantic_ids_match_the_reference(tokenizer, reference):
    assert tokenizer.semantic_begin_id == reference["semantic_begin_id"]
    assert tokenizer.semantic_end_id == reference["semantic_end_id"]
    assert tokenizer.im_end_id == reference["im_end_id"]
    for token, token_id in reference["special_token_ids"].items():
        assert tokenizer.token_id(token) == token_id
    assert tokenizer.vocab_size == reference["mergeable_ranks"] + reference["num_special_tokens"]


def test_special_token_ids_follow_the_key_order_not_the_ids_written_in_the_file(fish_fixtures, tokenizer, tmp_path):
    shutil.copy(fish_fixtures / "tokenizer" / "tokenizer.tiktoken", tmp_path)
    order = json.loads((fish_fixtures / "tokenizer" / "special_tokens.json").read_text())
    (tmp_path / "special_tokens.json").write_text(json.dumps({token: -1 - index for index, token in enumerate(order)}))
    renumbered = FishTokenizer.from_folder(tmp_path)
    assert renumbered.special_tokens == tokenizer.special_tokens
    assert renumbered.semantic_begin_id == tokenizer.semantic_begin_id


def test_asking_for_an_unknown_special_token_is_a_value_error(tokenizer):
    with pytest.raises(ValueError, match="not a special token"):
        tokenizer.token_id("<|no such token|>")


def test_a_folder_without_special_tokens_json_numbers_them_as_the_official_loader_does(fish_fixtures, reference, tmp_path):
    """fish-speech falls back on its own ALL_SPECIAL_TOKENS (15 named tokens, then 4096 semantic ones) when a folder
    has no special_tokens.json; the fixture's named tokens are that list's first 15, so their ids must agree."""
    shutil.copy(fish_fixtures / "tokenizer" / "tokenizer.tiktoken", tmp_path)
    tokenizer = FishTokenizer.from_folder(tmp_path)
    for token, token_id in reference["special_token_ids"].items():
        assert tokenizer.token_id(token) == token_id
    assert tokenizer.semantic_begin_id == reference["semantic_begin_id"]
    assert tokenizer.semantic_end_id == reference["semantic_begin_id"] + 4095
