"""Compare two checkpoints of the same shape: per-head filter differences and gate changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint


class CompareError(ValueError):
    """Two checkpoints that cannot be compared head by head; the message says what differs."""


@dataclass
class LayerDiff:
    """One block, checkpoint a against b (grids as in filters.LayerFilters).

    kind:                "mhf" or "fftnet".
    freqs:               (F,) cycles/token.
    magnitude_db_a/_b:   (H, F) |response| in dB of each; db_diff: (H, F) b - a.
    kernel_a/_b:         (H, K) time kernels; kernel_diff: (H, K) b - a.
    kernel_rel_change:   (H,) ||k_b - k_a|| / ||k_a||.
    spectrum_rel_change: (H,) ||S_b - S_a|| / ||S_a|| of the learned spectra.
    open_a/_b:           (H, F) bool gate masks, or None without modReLU.
    opened, closed:      (H, F) bool, gates closed in a and open in b / open in a and closed in b.
    n_changed:           (H,) number of gates that changed state (0 without modReLU).
    bias_diff:           (H, F) b - a of the modReLU bias, or None.
    """

    kind: str
    freqs: np.ndarray
    magnitude_db_a: np.ndarray
    magnitude_db_b: np.ndarray
    db_diff: np.ndarray
    kernel_a: np.ndarray
    kernel_b: np.ndarray
    kernel_diff: np.ndarray
    kernel_rel_change: np.ndarray
    spectrum_rel_change: np.ndarray
    open_a: np.ndarray | None
    open_b: np.ndarray | None
    opened: np.ndarray | None
    closed: np.ndarray | None
    n_changed: np.ndarray
    bias_diff: np.ndarray | None


@dataclass
class Comparison:
    """name_a, name_b: the checkpoints' names; layers: one LayerDiff per block (None where
    neither has a learned filter); summary: one line naming the most changed head."""

    name_a: str
    name_b: str
    layers: list[LayerDiff | None]
    summary: str


def compare_checkpoints(ck_a: Checkpoint, ck_b: Checkpoint) -> Comparison:
    """Compare the per-head filters and gates of two checkpoints. They must have the same
    number of blocks, the same mixer kind per block, the same heads and context (the filter
    grids); otherwise CompareError says what differs."""
    raise NotImplementedError
