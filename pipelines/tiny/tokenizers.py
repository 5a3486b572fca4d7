"""Character-level tokenizers built in memory; enough to drive the real text encoders' code paths."""

from __future__ import annotations

import string

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
