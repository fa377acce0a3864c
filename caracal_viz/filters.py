"""Per-head spectral filters: what each head's learned filter does to each frequency, and, for a
given text, the data-dependent kernels that actually mix the tokens.

Frequencies are normalised, cycles per token, 0..0.5 (one-sided rfft bins). Spectra are
one-sided rfft with backward normalisation (a spectrum of ones is a unit impulse at lag 0).
Magnitudes in dB are 20 log10 |H| clipped at -120 dB; phases in radians, unwrapped along
frequency; group delay in tokens, -d(phase)/d(omega) with omega = 2 pi f, computed exactly
(as scipy.signal.group_delay does) as Re(FFT(m h[m]) / FFT(h)); it is 0 where |H| is negligible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint


@dataclass
class LayerFilters:
    """One mixer's learned per-head filter (no input needed).

    kind:           "mhf" or "fftnet".
    freqs:          (F,) cycles/token, 0..0.5. mhf: the rfft grid of size 2C (F = C + 1);
                    fftnet: the base filter's grid (F = C // 2 + 1, i.e. an rfft of size C).
    spectrum:       (H, F) complex, the learned spectrum (mhf S_h; fftnet base filter W_base).
    gated_spectrum: (H, F) complex, after modReLU (mhf; equal to `spectrum` when off or fftnet).
    response:       (H, F) complex, frequency response of the effective filter as applied:
                    mhf: rfft(kernel, 2C) of the causal kernel (the mask changes the response!);
                    fftnet: the base filter itself (a circular, two-sided filter).
    magnitude_db:   (H, F) 20 log10 |response| (floor -120 dB).
    phase:          (H, F) unwrapped phase of `response`, radians.
    group_delay:    (H, F) tokens.
    kernel:         (H, K) time kernel: mhf the causal kernel, lags 0..C-1 (K = C);
                    fftnet irfft(W_base, C), two-sided, irfft layout (K = C).
    lags:           (K,) int, the lag of each kernel index (negative = reads the future).
    """

    kind: str
    freqs: np.ndarray
    spectrum: np.ndarray
    gated_spectrum: np.ndarray
    response: np.ndarray
    magnitude_db: np.ndarray
    phase: np.ndarray
    group_delay: np.ndarray
    kernel: np.ndarray
    lags: np.ndarray


@dataclass
class DataKernels:
    """mhf only: the kernels that mix the value stream for one text (L tokens, head width dh).

    freqs:             (F,) cycles/token for an rfft of size 2L (F = L + 1).
    gate_kernel:       (H, dh, L) the data-dependent gate stream g used as a kernel, by lag.
    gate_response:     (H, dh, F) complex, rfft(g, 2L).
    learned_kernel:    (H, L) the learned causal kernel k as applied (lags 0..L-1), or None
                       when the checkpoint has no spectral filter.
    combined_kernel:   (H, dh, L) (g * k)[:L]: the causal kernel that actually mixes each channel
                       (g alone when there is no learned filter).
    combined_response: (H, dh, F) complex, rfft(combined_kernel, 2L).
    gate_db, combined_db: (H, F) per-head mean over channels of 20 log10 |response| (floor -120).
    """

    freqs: np.ndarray
    gate_kernel: np.ndarray
    gate_response: np.ndarray
    learned_kernel: np.ndarray | None
    combined_kernel: np.ndarray
    combined_response: np.ndarray
    gate_db: np.ndarray
    combined_db: np.ndarray


@dataclass
class FFTNetFilters:
    """fftnet only: the base filter against the input-adapted filter for one text.

    base_freqs:     (F0,) cycles/token of the base filter's own grid (F0 = C // 2 + 1).
    base:           (H, F0) complex W_base.
    freqs:          (F,) cycles/token of this text's rfft grid (F = L // 2 + 1).
    base_resampled: (H, F) complex, W_base resampled to this grid (as the model does).
    adapted:        (H, F) complex, W_base + MLP(mean context): the filter applied to this text.
    modulation:     (H, F) complex, adapted - base_resampled.
    base_db, adapted_db: (H, F) 20 log10 |.| (floor -120).
    data_open:      (H, F) fraction of the head's channels whose modReLU gate is open per bin.
    """

    base_freqs: np.ndarray
    base: np.ndarray
    freqs: np.ndarray
    base_resampled: np.ndarray
    adapted: np.ndarray
    modulation: np.ndarray
    base_db: np.ndarray
    adapted_db: np.ndarray
    data_open: np.ndarray


def learned_filters(ck: Checkpoint) -> list[LayerFilters | None]:
    """Per block, the learned per-head filter (None for attention blocks and mhf without a
    spectral filter)."""
    raise NotImplementedError


def data_kernels(ck: Checkpoint, text: str) -> list[DataKernels | None]:
    """Per block, the mhf gate kernel g and the combined kernel g * k for `text` (None for
    fftnet and attention blocks). Raises TextError for bad text."""
    raise NotImplementedError


def fftnet_filters(ck: Checkpoint, text: str) -> list[FFTNetFilters | None]:
    """Per block, the fftnet base filter and the filter adapted to `text` (None for other
    blocks). Raises TextError for bad text."""
    raise NotImplementedError
