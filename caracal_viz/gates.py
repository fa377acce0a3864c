"""modReLU gates: modReLU(z) = ReLU(|z| + b) z / |z|, so the gate of a bin is open where
|z| + b > 0 and scales its energy by (ReLU(|z| + b) / |z|)^2 (its transmission).

mhf: z is the head's learned spectrum S_h (a gate per head and bin of the rfft grid of size 2C,
freqs 0..0.5 cycles/token); the gates do not depend on the text. fftnet: z is the filtered data
spectrum X W of each channel, so which gates open depends on the text; the static view uses the
base filter, |W_base| + b > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint

DEAD_OPEN_FRACTION = 0.05
"""A head whose gates are open on at most this fraction of its bins is reported dead."""


@dataclass
class LayerGates:
    """One mixer's gates.

    kind:             "mhf" or "fftnet".
    freqs:            (F,) cycles/token of the gate bins (mhf F = C + 1; fftnet F = C // 2 + 1).
    bias:             (H, F) modReLU bias b.
    magnitude:        (H, F) |z| of the static gate input (mhf |S_h|, fftnet |W_base|).
    open:             (H, F) bool, |z| + b > 0 (static).
    transmission:     (H, F) energy fraction each static gate passes, (ReLU(|z| + b) / |z|)^2
                      (0 where |z| = 0).
    open_fraction:    (H,) fraction of open gates per head (from `data_open` when a text is given
                      for fftnet, else from `open`).
    dead:             (H,) bool, open_fraction <= DEAD_OPEN_FRACTION.
    -- with a text only (else None) --
    data_open:        (H, F) fraction of gates open for this text, per gate bin (mhf: equal to
                      `open`; fftnet: the head's channels and data bins falling on that bin).
    token_energy:     (H, F) energy of the signal reaching the gates per gate bin (Parseval
                      scaled, one-sided weights): mhf the value stream v (the token spectrum the
                      learned filter multiplies), fftnet the filtered spectrum X W. The text's
                      bins are pooled onto the nearest gate bin, so totals are preserved.
    passed_energy:    (H, F) the part of token_energy that the gates let through.
    passed_fraction:  (H,) passed / token energy, per head.
    """

    kind: str
    freqs: np.ndarray
    bias: np.ndarray
    magnitude: np.ndarray
    open: np.ndarray
    transmission: np.ndarray
    open_fraction: np.ndarray
    dead: np.ndarray
    data_open: np.ndarray | None = None
    token_energy: np.ndarray | None = None
    passed_energy: np.ndarray | None = None
    passed_fraction: np.ndarray | None = None


def gate_report(ck: Checkpoint, text: str | None = None) -> list[LayerGates | None]:
    """Per block, its modReLU gates (None for attention blocks and mixers without modReLU).
    With `text` (validated, raises TextError), also the energy each gate passes for it."""
    raise NotImplementedError
