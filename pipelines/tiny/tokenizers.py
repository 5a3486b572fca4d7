"""Character-level tokenizers built in memory; enough to drive the real text encoders' code paths."""

from __future__ import annotations

import string

from transformers import CLIPTokenizer, T5Tokenizer

_CHARACTERS = [c for c in string.printable if not c.isspace()]


def clip_tokenizer() -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in _CHARACTERS:
        vocab.setdefault(character, len(vocab))
        vocab.setdefault(character + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer(model_max_length: int = 256) -> T5Tokenizer:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in _CHARACTERS]
    pieces += [("\u2581" + c, -1.5) for c in _CHARACTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


CLIP_VOCAB_SIZE = 2 + 2 * len(_CHARACTERS)
T5_VOCAB_SIZE = 4 + 2 * len(_CHARACTERS)
