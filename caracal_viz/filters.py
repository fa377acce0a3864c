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
import torch

from models import MixerInternals
from models.fftnet import resample_bins

from . import spectral
from .checkpoint import Checkpoint
from .device_fft import rfft64
from .trace import Forward, LayerTrace, numpy_copy, static_internals


@dataclass
class LayerFilters:
    """One mixer's learned per-head filter (no input needed).

    kind:           "mhf" or "fftnet".
    freqs:          (F,) cycles/token, 0..0.5. mhf: the rfft grid of size 2C (F = C + 1);
                    fftnet: the base filter's grid, F = C // 2 + 1 bins evenly over 0..0.5
                    (the rfft grid of size n = 2 (F - 1)).
    spectrum:       (H, F) complex, the learned spectrum (mhf S_h; fftnet base filter W_base).
    gated_spectrum: (H, F) complex, after modReLU (mhf; equal to `spectrum` when off or fftnet).
    response:       (H, F) complex, frequency response of the effective filter as applied:
                    mhf: rfft(kernel, 2C) of the causal kernel (the mask changes the response!);
                    fftnet: the base filter itself (a circular, two-sided filter).
    magnitude_db:   (H, F) 20 log10 |response| (floor -120 dB).
    phase:          (H, F) unwrapped phase of `response`, radians.
    group_delay:    (H, F) tokens.
    kernel:         (H, K) time kernel: mhf the causal kernel, lags 0..C-1 (K = C);
                    fftnet irfft(W_base, n), two-sided, irfft layout (K = n).
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
    learned_kernel:    (H, L) the learned causal kernel k as applied (lags 0..L-1), or None
                       when the checkpoint has no spectral filter.
    combined_kernel:   (H, dh, L) (g * k)[:L]: the causal kernel that actually mixes each channel
                       (g alone when there is no learned filter).
    gate_db, combined_db: (H, F) per-head mean over channels of 20 log10 |response| (floor -120),
                       computed on the device that held the activations.
    gate_response, combined_response: (H, dh, F) complex128 rfft(kernel, 2L), computed from the
                       kernels on each access (not stored: 134 MB a block each at 65,536 bytes,
                       which copying to the host and keeping in the cache cost more than the view).
    """

    freqs: np.ndarray
    gate_kernel: np.ndarray
    learned_kernel: np.ndarray | None
    combined_kernel: np.ndarray
    gate_db: np.ndarray
    combined_db: np.ndarray

    @property
    def gate_response(self) -> np.ndarray:
        """(H, dh, F) complex128 rfft(gate_kernel, 2L)."""
        return np.fft.rfft(self.gate_kernel.astype(np.float64), 2 * self.gate_kernel.shape[-1])

    @property
    def combined_response(self) -> np.ndarray:
        """(H, dh, F) complex128 rfft(combined_kernel, 2L)."""
        return np.fft.rfft(self.combined_kernel.astype(np.float64), 2 * self.combined_kernel.shape[-1])


@dataclass
class FFTNetFilters:
    """fftnet only: the base filter against the input-adapted filter for one text.

    base_freqs:     (F0,) cycles/token of the base filter's own grid (F0 = C // 2 + 1 bins evenly
                    over 0..0.5, the grid the model resamples from).
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


# A kernel peak must rise this fraction of the head's largest |k| above the kernel around it
# (scipy.signal.find_peaks' prominence): weaker bumps are the ripple of a smooth kernel.
PEAK_PROMINENCE = 0.1
# A spectral peak must rise this many dB above the response around it.
PEAK_PROMINENCE_DB = 3.0
MAX_PEAKS = 5
# Periods of the task a sample was trained on, by its training preset (meta "preset"): the
# periodic sample repeats patterns of period 3, 8 or 20 (sample_checkpoints/README.md).
TASK_PERIODS = {"caracal-periodic": (3, 8, 20)}


@dataclass
class FilterPeaks:
    """The peaks of one block's filters, per head, strongest first (at most MAX_PEAKS each).

    lags:        list of H int arrays: lags (tokens back; negative reads the future) where the
                 time kernel's |k| peaks, lag 0 excluded (an endpoint for causal kernels).
    lag_heights: list of H float arrays: |k| at those lags over the head's largest |k|.
    freqs:       list of H float arrays: frequencies f > 0 (cycles/token) where |H| peaks.
    periods:     list of H float arrays: 1 / freqs, the period (tokens) each spectral peak repeats.
    peak_db:     list of H float arrays: |H| there, in dB below the head's largest |H| (<= 0).
    """

    lags: list[np.ndarray]
    lag_heights: list[np.ndarray]
    freqs: list[np.ndarray]
    periods: list[np.ndarray]
    peak_db: list[np.ndarray]


def filter_peaks(f: LayerFilters, most: int = MAX_PEAKS, prominence: float = PEAK_PROMINENCE,
                 prominence_db: float = PEAK_PROMINENCE_DB) -> FilterPeaks:
    """Peaks of each head's time kernel (by lag) and of its magnitude response (by frequency and
    period), found by scipy.signal.find_peaks with the given prominences, strongest first."""
    from scipy.signal import find_peaks  # here, not at the top: 1-2 s of the app's start-up

    order = np.argsort(f.lags, kind="stable")  # fftnet kernels are in irfft layout
    lags_sorted = f.lags[order]
    out = FilterPeaks([], [], [], [], [])
    for h in range(f.kernel.shape[0]):
        k = np.abs(f.kernel[h, order])
        top = float(k.max()) or 1.0
        idx, _ = find_peaks(k, prominence=prominence * top)
        idx = idx[lags_sorted[idx] != 0]
        idx = idx[np.argsort(-k[idx], kind="stable")][:most]
        out.lags.append(lags_sorted[idx].astype(int))
        out.lag_heights.append(k[idx] / top)
        m = f.magnitude_db[h]
        jdx, _ = find_peaks(m, prominence=prominence_db)
        jdx = jdx[f.freqs[jdx] > 0]
        jdx = jdx[np.argsort(-m[jdx], kind="stable")][:most]
        out.freqs.append(f.freqs[jdx])
        out.periods.append(1.0 / f.freqs[jdx])
        out.peak_db.append(m[jdx] - m.max())
    return out


def task_periods(ck: Checkpoint) -> tuple[int, ...]:
    """The periods (tokens) of the task the checkpoint was trained on, when its training preset
    is a known one (the periodic sample); () otherwise."""
    return TASK_PERIODS.get(str(ck.meta.get("preset", "")), ())


def learned_filters(ck: Checkpoint) -> list[LayerFilters | None]:
    """Per block, the learned per-head filter (None for attention blocks and mhf without a
    spectral filter)."""
    return [_layer_filters(rec) for rec in static_internals(ck)]


def _layer_filters(rec: LayerTrace | None) -> LayerFilters | None:
    if rec is None or rec.spectrum is None:
        return None
    spectrum = rec.spectrum.astype(np.complex128)
    gated = rec.gated_spectrum.astype(np.complex128)
    if rec.kind == "mhf":
        two_c = rec.kernel_two_sided.shape[-1]
        kernel = rec.kernel_two_sided[:, : two_c // 2].astype(np.float64)
        lags = np.arange(two_c // 2)
        n = two_c
        response = np.fft.rfft(kernel, n=n)
    else:
        n = max(1, 2 * (spectrum.shape[-1] - 1))
        kernel = np.fft.irfft(spectrum, n=n)
        lags = spectral.two_sided_lags(n)
        response = spectrum
    return LayerFilters(
        kind=rec.kind, freqs=np.fft.rfftfreq(n), spectrum=spectrum, gated_spectrum=gated, response=response,
        magnitude_db=spectral.magnitude_db(response), phase=spectral.unwrapped_phase(response),
        group_delay=spectral.group_delay(kernel, n, lags), kernel=kernel, lags=lags,
    )


def data_kernels(ck: Checkpoint, fwd: Forward) -> list[DataKernels | None]:
    """Per block, the mhf gate kernel g and the combined kernel g * k for the text of `fwd`
    (`trace.forward_pass(ck, text)`; None for fftnet and attention blocks). The FFTs run in
    float64 on the device that holds the activations."""
    H = ck.config.n_heads
    return [_data_kernels(rec, H) if rec is not None and rec.kind == "mhf" else None
            for rec in fwd.check(ck).records]


def _per_head(x: torch.Tensor, H: int) -> torch.Tensor:
    """(L, D) -> (H, dh, L), a contiguous copy: channel c belongs to head c // dh."""
    L, D = x.shape
    return x.T.reshape(H, D // H, L).clone(memory_format=torch.contiguous_format)


def _mean_db(kernels: torch.Tensor, n: int, floor_db: float = -120.0) -> np.ndarray:
    """(H, dh, L) kernels -> (H, n//2 + 1) mean over each head's channels of 20 log10 |rfft(., n)|
    clipped at floor_db (spectral.magnitude_db), float64 on the kernels' device: only the per-head
    means come back to the host, not the (H, dh, F) complex spectra."""
    z = rfft64(kernels, n)
    if z.device.type == "cpu":  # numpy's abs/log10 measured 2.5x faster than torch's here (16,384 bytes)
        return spectral.magnitude_db(z.numpy(), floor_db).mean(axis=1)
    return _device_mean_db(z, floor_db)


def _device_mean_db(z: torch.Tensor, floor_db: float) -> np.ndarray:
    """spectral.magnitude_db(z).mean(axis=1) in torch, where z is: (H, dh, F) complex -> (H, F)."""
    db = (10.0 * torch.log10(z.real * z.real + z.imag * z.imag)).clamp_min(floor_db)  # log10(0) = -inf: the floor
    return db.mean(dim=1).cpu().numpy()


def _data_kernels(rec: MixerInternals, H: int) -> DataKernels:
    g = _per_head(rec.gate_kernel[0], H)
    h = _per_head(rec.combined_kernel[0], H)
    n = 2 * g.shape[-1]
    return DataKernels(
        freqs=np.fft.rfftfreq(n), gate_kernel=g.cpu().numpy(), learned_kernel=numpy_copy(rec.kernel),
        combined_kernel=h.cpu().numpy(), gate_db=_mean_db(g, n), combined_db=_mean_db(h, n),
    )


def fftnet_filters(ck: Checkpoint, fwd: Forward) -> list[FFTNetFilters | None]:
    """Per block, the fftnet base filter and the filter adapted to the text of `fwd`
    (`trace.forward_pass(ck, text)`; None for other blocks)."""
    H = ck.config.n_heads
    return [_fftnet_filters(rec, H) if rec is not None and rec.kind == "fftnet" else None
            for rec in fwd.check(ck).records]


def resample_spectrum(z: np.ndarray, n_bins: int) -> np.ndarray:
    """Complex (..., F0) resampled to n_bins over 0..0.5 exactly as FFTNet resamples its filter."""
    parts = torch.from_numpy(np.stack([z.real, z.imag]).astype(np.float32))
    out = resample_bins(parts, n_bins).double().numpy()
    return out[0] + 1j * out[1]


def _fftnet_filters(rec: MixerInternals, H: int) -> FFTNetFilters:
    base = rec.spectrum.cpu().numpy().astype(np.complex128)
    L = rec.fft_input.shape[1]
    F = L // 2 + 1
    base_resampled = resample_spectrum(base, F)
    adapted = rec.adapted_filter[0].cpu().numpy().astype(np.complex128)
    open_ = rec.data_gate_open[0].cpu().numpy().reshape(F, H, -1).mean(axis=-1).T  # (H, F)
    return FFTNetFilters(
        base_freqs=np.linspace(0.0, 0.5, base.shape[-1]),
        base=base, freqs=np.fft.rfftfreq(L), base_resampled=base_resampled, adapted=adapted,
        modulation=adapted - base_resampled, base_db=spectral.magnitude_db(base_resampled),
        adapted_db=spectral.magnitude_db(adapted), data_open=open_,
    )
