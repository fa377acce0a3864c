"""Thresholds that turn an analysis's numbers into a verdict, in one torch-free place: the
analyses set their results' verdicts with them, and figures and pages that draw or name a
threshold import it from here (no model code comes with it)."""

from __future__ import annotations

# A head is dead when its modReLU gates are open on at most this fraction of its frequency bins.
DEAD_OPEN_FRACTION = 0.05

# A gradient (influence map, attribution) that reaches a later byte, relative to the largest one
# that reaches an earlier byte, is float32 FFT rounding below this (a causal model's future
# entries measure about 1e-7 of the scale) and a real leak at or above it (leaky models: 1e-3 up).
ROUNDING_REL = 1e-6

# How many inputs a view names as the strongest for one prediction.
TOP_INFLUENCES = 5


def is_rounding(rel: float) -> bool:
    """True when a future entry `rel` (relative to the scale) is rounding, not a leak; False for
    NaN (nothing can be read from it)."""
    return rel < ROUNDING_REL
