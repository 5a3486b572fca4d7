"""Character-level tokenizers built in memory; enough to drive the real text encoders' code paths."""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import CLIPTokenizer, PreTrainedTokenizerFast, T5Tokenizer

_CHARACTERS = [c for c in string.printable if not c.isspace()]


def clip_tokenizer() -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in _CHARACTERS:
        vocab.setdefault(character, len(vocab))
        vocab.setdefault(character + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def byte_level_tokenizer(special_tokens: list[str], prefix: list[str] = (), **named_tokens) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer without merges (every byte of any text is a token), saved as a plain
    `tokenizer.json` like Llama 3's and GLM-4's. `prefix` tokens start every encoded text, as GLM-4's
    `[gMASK]<sop>` do; `named_tokens` (bos_token=..., pad_token=...) name entries of `special_tokens`."""
    vocab = {token: index for index, token in enumerate(special_tokens)}
    for character in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[character] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if prefix:
        template = " ".join([*prefix, "$A"])
        tokenizer.post_processor = processors.TemplateProcessing(
            single=template, pair=template + " $B", special_tokens=[(token, vocab[token]) for token in prefix]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=8192, **named_tokens)


def byte_level_vocab_size(special_tokens: list[str]) -> int:
    return len(special_tokens) + len(pre_tokenizers.ByteLevel.alphabet())


def t5_tokenizer(model_max_length: int = 256) -> T5Tokenizer:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in _CHARACTERS]
    pieces += [("\u2581" + c, -1.5) for c in _CHARACTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


CLIP_VOCAB_SIZE = 2 + 2 * len(_CHARACTERS)
T5_VOCAB_SIZE = 4 + 2 * len(_CHARACTERS)


def save_sentencepiece_t5(folder: Path, model_max_length: int) -> None:
    """A T5 tokenizer folder as Lightricks' LTX-Video repos ship it: a real SentencePiece model (`spiece.model`) and
    its JSON configs, no `tokenizer.json`, so transformers converts it on load (which needs `sentencepiece` and
    `protobuf`). The model is trained here, offline and deterministically, on the characters of the other tiny
    tokenizers; pad, end and unknown take T5's ids 0, 1 and 2."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["".join(_CHARACTERS), " ".join(_CHARACTERS), "a red fox runs over the snow"]),
        model_writer=model, model_type="char", vocab_size=len(_CHARACTERS) + 4, hard_vocab_limit=False,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, normalization_rule_name="identity",
        num_threads=1, minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(model.getvalue())
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "T5Tokenizer", "model_max_length": model_max_length, "extra_ids": 0, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
