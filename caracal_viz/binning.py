"""Bins of consecutive samples for the views of long texts (numpy, no torch): a 65,536-byte text
drawn byte by byte is megabytes of figure JSON and more cells than a screen has pixels, so the
views draw at most MAX_BINS bins, each the mean (or, for a ratio of energies, the ratio of the
sums) of a power-of-two number of consecutive samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXT_CELLS = 4096
"""A text of at most this many bytes is drawn one byte per cell (the app's old limit); a longer
one in bins."""
MAX_BINS = 1024
"""The most bins a binned view draws."""


def bin_width(n: int, max_bins: int = MAX_BINS) -> int:
    """The smallest power of two w such that ceil(n / w) <= max_bins (1 when n <= max_bins)."""
    if n < 0 or max_bins < 1:
        raise ValueError(f"need n >= 0 and max_bins >= 1, got {n} and {max_bins}")
    w = 1
    while -(-n // w) > max_bins:
        w *= 2
    return w


@dataclass(frozen=True)
class Bins:
    """Bins of `width` consecutive samples over n samples: bin i holds samples starts[i]..ends[i]-1
    (starts[i] = i * width; the last bin may be shorter).

    width:  samples per bin (a power of two).
    starts: (m,) int64 first sample of each bin.
    ends:   (m,) int64 one past its last sample.
    values: (..., m) float64 the binned values (see `mean_bins`, `ratio_bins`).
    """

    width: int
    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray


def _edges(n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, n, width, dtype=np.int64)
    return starts, np.minimum(starts + width, n)


def mean_bins(x: np.ndarray, width: int) -> Bins:
    """Mean of the finite values of x (..., n) in each bin of `width` samples along the last axis;
    NaN for a bin with none (a NaN sample is left out of its bin's mean, not spread over it)."""
    x = np.asarray(x, dtype=np.float64)
    starts, ends = _edges(x.shape[-1], width)
    ok = np.isfinite(x)
    sums = np.add.reduceat(np.where(ok, x, 0.0), starts, axis=-1) if starts.size else x[..., :0]
    counts = np.add.reduceat(ok.astype(np.int64), starts, axis=-1) if starts.size else x[..., :0]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Bins(width, starts, ends, values)


def ratio_bins(num: np.ndarray, den: np.ndarray, width: int) -> Bins:
    """sum(num) / sum(den) over each bin of `width` samples along the last axis of num, den
    (..., n): the gain of a band is its output energy over its input energy, not the mean of its
    bins' gains. NaN where the bin's den sums to 0 or either sum is not finite."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    starts, ends = _edges(num.shape[-1], width)
    s_num = np.add.reduceat(num, starts, axis=-1)
    s_den = np.add.reduceat(den, starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where((s_den > 0) & np.isfinite(s_num) & np.isfinite(s_den), s_num / s_den, np.nan)
    return Bins(width, starts, ends, values)
