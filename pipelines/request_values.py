"""Reading a request's numbers as people and scripts send them: None or "" means the default; anything that is
not a finite number (or not whole, where a whole number is wanted) is an InvalidRequest naming the field."""

from __future__ import annotations

import math

from pipelines.errors import InvalidRequest


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


def steps_from_picture(steps: int, strength: float) -> int:
    """How many of `steps` diffusers' image-to-image and inpaint pipelines run at `strength`: the schedule's last
    `steps × strength`, with the start rounded down (their `get_timesteps`), so 0.6 of 4 steps runs 3."""
    return steps - int(max(steps - steps * strength, 0))
