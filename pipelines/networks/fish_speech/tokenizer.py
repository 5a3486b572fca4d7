"""Fish Speech's tokenizer: tiktoken BPE with Fish Speech's own pre-tokenizer pattern, and special tokens
numbered after the BPE ranks.

The official folder holds `tokenizer.tiktoken` (one `base64(token) rank` line per BPE token) and
`special_tokens.json`. Only the key order of the JSON counts: the official loader numbers the special
tokens `number of ranks + position` whatever ids the file writes next to them.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import tiktoken

BPE_FILE = "tokenizer.tiktoken"
SPECIAL_TOKENS_FILE = "special_tokens.json"
IM_END_TOKEN = "<|im_end|>"
SEMANTIC_TOKEN = re.compile(r"<\|semantic:(\d+)\|>")

# GPT-4o's pre-tokenizer with punctuation split off on its own: every punctuation character and every digit
# is a piece of its own, so merges never cross them.
PRETOKENIZER_PATTERN = "|".join(
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)",  # English contractions
        r"\p{P}",  # one punctuation character
        r"[^\r\n\p{L}\p{N}]?\p{L}+",  # a word, with the one non-letter before it (usually a space)
        r"\p{N}",  # one digit
        r" ?[^\s\p{L}\p{N}]+[\r\n]*",  # a run of symbols
        r"\s*[\r\n]+",  # line breaks with the spaces before them
        r"\s+(\?!\S)",  # sic: the official pattern escapes the '?', so this is not a look-ahead
        r"\s+",
    )
)


# The official loader's list when a folder has no `special_tokens.json` (fish-speech 0.1.0, `fish_speech/tokenizer.py`:
# `ALL_SPECIAL_TOKENS`, "only add new tokens at the end"): 15 named tokens, then one per semantic code.
OFFICIAL_NAMED_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|im_start|>", IM_END_TOKEN, "<|phoneme_start|>",
    "<|phoneme_end|>", "<|tool_call_start|>", "<|tool_call_end|>", "<|text|>", "<|voice|>", "<|interleave|>",
    "<|audio_start|>", "<|audio_end|>", "<|audio|>",
)
OFFICIAL_SEMANTIC_TOKENS = 4096
OFFICIAL_SPECIAL_TOKENS = (*OFFICIAL_NAMED_TOKENS, *(f"<|semantic:{index}|>" for index in range(OFFICIAL_SEMANTIC_TOKENS)))


class FishTokenizer:
    """Text <-> token ids for the text-to-semantic model; every special token is allowed in the text."""

    def __init__(self, name: str, ranks: dict[bytes, int], special_tokens: list[str]):
        first_special_id = len(ranks)
        self.special_tokens = {token: first_special_id + index for index, token in enumerate(special_tokens)}
        self._encoding = tiktoken.Encoding(
            name=name, pat_str=PRETOKENIZER_PATTERN, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        semantic_ids = {
            int(match.group(1)): token_id
            for token, token_id in self.special_tokens.items()
            if (match := SEMANTIC_TOKEN.fullmatch(token))
        }
        if 0 not in semantic_ids:
            raise ValueError("the special tokens have no <|semantic:0|>")
        self.semantic_begin_id = semantic_ids[0]
        self.semantic_end_id = semantic_ids[max(semantic_ids)]
        self.im_end_id = self.token_id(IM_END_TOKEN)

    @classmethod
    def from_folder(cls, folder: Path) -> FishTokenizer:
        """`tokenizer.tiktoken` and, if the folder has one, `special_tokens.json`; without it, the official loader's
        own list (`OFFICIAL_SPECIAL_TOKENS`), as fish-speech does."""
        folder = Path(folder)
        path = folder / SPECIAL_TOKENS_FILE
        if not path.exists():
            return cls(folder.name or "fish", read_bpe_ranks(folder / BPE_FILE), list(OFFICIAL_SPECIAL_TOKENS))
        try:
            special_tokens = list(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        return cls(folder.name or "fish", read_bpe_ranks(folder / BPE_FILE), special_tokens)

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(text, allowed_special="all", disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self._encoding.decode(list(ids))

    def token_id(self, token: str) -> int:
        """The id of a special token such as `<|im_end|>`."""
        try:
            return self.special_tokens[token]
        except KeyError:
            raise ValueError(f"{token!r} is not a special token of this tokenizer") from None

    @property
    def vocab_size(self) -> int:
        return self._encoding.n_vocab


def read_bpe_ranks(path: Path) -> dict[bytes, int]:
    """`base64(token) rank` lines; the official writer spells the empty token `=`, which is no token."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line or line.split()[0] == "=":
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:  # binascii.Error is one
            raise ValueError(f"{path}, line {number}: expected `base64-token rank`, got {line[:80]!r}") from None
    return ranks
