"""Checks of the plain arguments the library's functions take (layer, head, position, sizes), in
one wording: "head must be an integer from 0 to 3, got 9". Text has its own module (text.py)."""

from __future__ import annotations

import numpy as np


def is_int(value) -> bool:
    """True for a Python or numpy integer that is not a bool (True and False are ints to Python)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_arg(name: str, value, low: int, high: int | None = None, *, expect: str | None = None) -> int:
    """value as an int when it is an integer (not a bool) from low to high inclusive (no upper
    bound when high is None); otherwise ValueError("{name} must be {expect}, got {value!r}"), where
    expect defaults to "an integer from {low} to {high}" (or "an integer >= {low}")."""
    if is_int(value) and low <= value and (high is None or value <= high):
        return int(value)
    if expect is None:
        expect = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    raise ValueError(f"{name} must be {expect}, got {value!r}")
