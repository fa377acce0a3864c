"""Thresholds that turn an analysis's numbers into a verdict, in one torch-free place: the
analyses set their results' verdicts with them, and figures and pages that draw or name a
threshold import it from here (no model code comes with it)."""

from __future__ import annotations

# A head is dead when its modReLU gates are open on at most this fraction of its frequency bins.
DEAD_OPEN_FRACTION = 0.05
