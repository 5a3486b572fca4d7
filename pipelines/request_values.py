"""The values every request shares, read once: limits, the prompt, steps, guidance and the seed.

None or "" means the default; anything that is not a finite number (or not whole, where a whole number is wanted)
is an InvalidRequest naming the field. A runner's `check()` uses these and returns a frozen job; nothing downstream
checks the same values again."""

from __future__ import annotations

import math
import random

from pipelines.errors import InvalidRequest

MAX_SEED = 2**32 - 1
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 10_000
# Short texts beside the prompt: a file name prefix, a list of LoRAs.
MAX_SHORT_TEXT_CHARS = 2_000


def whole_number(name: str, value, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise InvalidRequest(name, f"{value!r} is not a whole number")
    return int(value)


def number(name: str, value, default: float) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(name, f"{value!r} is not a number")
    return float(value)


def in_range(name: str, value, default, limits: tuple) -> int | float:
    """`value` read as `default`'s kind (a whole number where the default is one), within `limits` (low, high)."""
    low, high = limits
    value = whole_number(name, value, default) if isinstance(default, int) else number(name, value, default)
    if not low <= value <= high:
        raise InvalidRequest(name, f"{value} is out of range; use {low:g} to {high:g}")
    return value


def checked_text(name: str, value, most: int = MAX_PROMPT_CHARS) -> str:
    """Free text (may be empty) without surrounding spaces. Refused by `name`: anything but text, more than `most`
    characters, or characters that cannot be written as UTF-8 (a lone surrogate such as "\\ud800", which a raw
    request can carry): such text could not be saved with a result, nor shown back."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(name, f"must be text, not {type(value).__name__}")
    text = value.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequest(
            name, f"has a character that is not valid text at position {error.start + 1} ({text[error.start]!r}); remove it"
        ) from None
    if len(text) > most:
        raise InvalidRequest(name, f"has {len(text)} characters; at most {most} are accepted")
    return text


def checked_prompt(value, name: str = "prompt", empty_hint: str = "describe the image you want", most: int = MAX_PROMPT_CHARS) -> str:
    """The prompt as `checked_text` reads it; empty is refused too."""
    prompt = checked_text(name, value or "", most)
    if not prompt:
        raise InvalidRequest(name, f"must not be empty; {empty_hint}")
    return prompt


def checked_size(width, height, default: tuple[int, int], family, model_name: str) -> tuple[int, int]:
    """Width and height as asked (`default` where not given), each a side `family` makes; InvalidRequest names the
    side that is not and the nearest that is."""
    sides = whole_number("width", width, default[0]), whole_number("height", height, default[1])
    for name, value in zip(("width", "height"), sides):
        if problem := family.size_problem(value):
            raise InvalidRequest(name, f"{value} is not accepted by {model_name}; {problem}")
    return sides


def checked_steps(value, default: int, most: int = MAX_STEPS) -> int:
    steps = whole_number("steps", value, default)
    if not 1 <= steps <= most:
        raise InvalidRequest("steps", f"{steps} is out of range; use 1 to {most}")
    return steps


def checked_guidance(value, default: float, most: float = MAX_GUIDANCE) -> float:
    guidance = number("guidance", value, default)
    if not 0.0 <= guidance <= most:
        raise InvalidRequest("guidance", f"{guidance} is out of range; use 0 to {most:g}")
    return guidance


def checked_seed(value) -> int:
    """-1 (random) or a seed from 0 to MAX_SEED."""
    seed = whole_number("seed", value, -1)
    if not -1 <= seed <= MAX_SEED:
        raise InvalidRequest("seed", f"{seed} is out of range; use -1 (random) or 0 to {MAX_SEED}")
    return seed


def resolved_seed(seed: int) -> int:
    """The seed a job runs with: a checked seed as given, or a random one for -1 (drawn once, when the job is made)."""
    return seed if seed >= 0 else random.randint(0, MAX_SEED)


def batch_seeds(first: int, count: int) -> tuple[int, ...]:
    """The seeds of a batch: one after another from `first`, wrapping past MAX_SEED."""
    return tuple((first + index) % (MAX_SEED + 1) for index in range(count))


def steps_from_picture(steps: int, strength: float) -> int:
    """How many of `steps` diffusers' image-to-image and inpaint pipelines run at `strength`: the schedule's last
    `steps × strength`, with the start rounded down (their `get_timesteps`), so 0.6 of 4 steps runs 3."""
    return steps - int(max(steps - steps * strength, 0))
