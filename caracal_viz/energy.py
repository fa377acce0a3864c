"""Parseval energy: the energy of each mixer's signals in time and in frequency, their energy
spectral densities, and the energy gain of each layer and head over frequency.

Spectra are rfft of size L (no padding), one-sided, backward normalisation, so Parseval reads
sum_t |x_t|^2 = (1/L) sum_k w_k |X_k|^2 with w_k = 1 for DC (and Nyquist when L is even),
2 for every other bin. All sums are float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint

PARSEVAL_TOLERANCE = 1e-9
"""Largest relative difference between time and frequency energy (float64 sums) that passes."""


@dataclass
class LayerEnergy:
    """One mixer's energies for one text of L tokens (F = L // 2 + 1 bins, `freqs` 0..0.5).

    Per head h (the channels of head h of the FFT stream):
    input_time, input_freq:   (H,) energy of the FFT input (value stream) in time / frequency.
    output_time, output_freq: (H,) energy of the FFT output (before the output projection).
    input_rel_error, output_rel_error: (H,) |time - freq| / time (the Parseval check).
    esd_input, esd_output:    (H, F) energy spectral density, Parseval scaled (sums to the energy).
    gain:                     (H, F) esd_output / esd_input (NaN where the input has no energy).
    energy_gain:              (H,) output_time / input_time.
    Whole mixer (all D channels):
    mixer_input_time, mixer_input_freq, mixer_output_time, mixer_output_freq: floats.
    mixer_rel_error:          max relative time/frequency difference of the two.
    mixer_esd_input, mixer_esd_output: (F,) energy spectral densities.
    mixer_gain:               (F,) mixer_esd_output / mixer_esd_input (NaN where no input energy).
    """

    freqs: np.ndarray
    input_time: np.ndarray
    input_freq: np.ndarray
    output_time: np.ndarray
    output_freq: np.ndarray
    input_rel_error: np.ndarray
    output_rel_error: np.ndarray
    esd_input: np.ndarray
    esd_output: np.ndarray
    gain: np.ndarray
    energy_gain: np.ndarray
    mixer_input_time: float
    mixer_input_freq: float
    mixer_output_time: float
    mixer_output_freq: float
    mixer_rel_error: float
    mixer_esd_input: np.ndarray
    mixer_esd_output: np.ndarray
    mixer_gain: np.ndarray


@dataclass
class ParsevalReport:
    """layers: one LayerEnergy per block (None for attention); max_rel_error: the largest
    relative time/frequency difference anywhere; ok: max_rel_error <= tolerance."""

    layers: list[LayerEnergy | None]
    max_rel_error: float
    tolerance: float
    ok: bool


def parseval_report(ck: Checkpoint, text: str) -> ParsevalReport:
    """Energies of every mixer for `text` (validated, raises TextError)."""
    raise NotImplementedError
