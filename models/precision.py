"""How the MHF mixer computes its FFT product, chosen for one block of code: `fft_options`.

The mixer's own default needs no setting: the product runs in float32 under autocast (training,
benchmarks) and in float64 otherwise (inference, analysis), at the smallest exact FFT size
(MultiHeadFourier.forward, MultiHeadFourier.fft_size). A caller that wants another dtype (float32
to trade rounding for speed) or one FFT size for several lengths (to share an FFT plan) wraps its
calls in `with fft_options(...)`. The choice lives in a context variable, not on the model: a
model shared by several threads (or asyncio tasks) is never changed, and each of them sees only
the options of its own `with` block. Nothing else is kept here.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import torch


class FFTOptions(NamedTuple):
    """dtype: torch.float32, torch.float64, or None for the mixer's default; min_size: the least
    FFT size N (0: the smallest exact size)."""

    dtype: torch.dtype | None = None
    min_size: int = 0


DEFAULT = FFTOptions()  # the mixer's own choice: float32 under autocast, else float64; the least exact N
_OPTIONS: contextvars.ContextVar[FFTOptions] = contextvars.ContextVar("mhf_fft_options", default=DEFAULT)


@contextlib.contextmanager
def fft_options(dtype: torch.dtype | None = None, min_size: int = 0):
    """Inside the block, in this thread only, every MHF FFT product runs in `dtype` (torch.float32
    or torch.float64; None keeps the default: float32 under autocast, float64 otherwise, see
    MultiHeadFourier.forward) with an FFT size N of at least `min_size` (causal modes "pad" and
    "two_sided"; "circular" keeps N = L, which is what defines it). A larger N leaves the product
    exact (it only adds zero padding) and lets calls at different lengths share one FFT plan."""
    if dtype not in (None, torch.float32, torch.float64):
        raise ValueError(f"fft_options takes dtype torch.float32 or torch.float64, got {dtype}")
    token = _OPTIONS.set(FFTOptions(dtype, int(min_size)))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def fft_options_in_effect() -> FFTOptions:
    """(dtype, min_size) of the innermost `fft_options` block in this thread; (None, 0) outside."""
    return _OPTIONS.get()
