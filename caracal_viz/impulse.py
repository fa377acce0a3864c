"""Causal-mask impulse responses: the learned kernel before and after the mask, the whole
mixer's response to one impulse, and the aliasing an FFT that is too small would cause.

Kernels are indexed by lag (kernel[m] weights the input m steps back); negative lags read the
future. FFTs are rfft with backward normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint


@dataclass
class KernelImpulse:
    """One mixer's learned kernel for sequences of `length` L tokens.

    kind:            "mhf" or "fftnet".
    lags:            (2L - 1,) int, -(L-1) .. L-1 in increasing order.
    two_sided:       (H, 2L - 1) the kernel before the causal mask, by `lags` (mhf: irfft(S'_h, 2C),
                     zero past lag C - 1 or before -C; fftnet: irfft of the base filter resampled
                     to L, the circular kernel it applies, laid out over lags -(L//2)..(L-1)//2).
    causal:          (H, L) the kernel after the mask, lags 0..L-1 (what a "pad" mixer applies).
    masked_energy:   (H,) sum of two_sided^2 over negative lags: the energy the mask removes.
    masked_fraction: (H,) masked_energy / total energy of two_sided (0 for an all-zero kernel).
    """

    kind: str
    lags: np.ndarray
    two_sided: np.ndarray
    causal: np.ndarray
    masked_energy: np.ndarray
    masked_fraction: np.ndarray


@dataclass
class MixerImpulse:
    """The response of one whole mixer (block `layer`'s mixer, input after the block's pre-norm)
    to an impulse at position t0 on a zero background of `length` L tokens:
    response = mixer(amplitude * u * delta_t0) - mixer(0), u a fixed unit direction (seeded).

    response:      (L, D) float32 output change per position and channel.
    norm:          (L,) L2 norm of `response` per position.
    head_response: (H, L) L2 norm per head of the change of the FFT output (before the output
                   projection); None for attention blocks.
    leak:          max |response[:t0]|: must be 0 for a causal mixer (up to float32 FFT rounding).
    peak:          max |response|, for scale.
    amplitude:     the impulse's L2 norm (default sqrt(D), the size of a LayerNorm-ed vector).
    """

    layer: int
    t0: int
    length: int
    response: np.ndarray
    norm: np.ndarray
    head_response: np.ndarray | None
    leak: float
    peak: float
    amplitude: float


@dataclass
class Aliasing:
    """What "pad to n_fft, multiply, inverse FFT, keep the first L" does with block `layer`'s
    learned causal kernel k (H, L lags) on length-L sequences.

    n_fft:           the FFT size examined.
    safe_n_fft:      smallest size with no aliasing for the kernel alone, L + min(K, L) - 1.
    model_n_fft:     the size the model itself uses at this length (signal, gate kernel and
                     learned kernel need >= 3L - 2; "circular" uses L).
    matrix:          (H, L, L) M[t, j], the weight of input j in output t at this n_fft.
    alias:           (H, L, L) M minus the exact causal Toeplitz matrix: the aliased terms.
    alias_fraction:  (H,) ||alias||^2 / ||exact||^2.
    future_fraction: (H,) share of ||M||^2 in the strict upper triangle (outputs reading later inputs).
    """

    layer: int
    length: int
    n_fft: int
    safe_n_fft: int
    model_n_fft: int
    matrix: np.ndarray
    alias: np.ndarray
    alias_fraction: np.ndarray
    future_fraction: np.ndarray


def kernel_impulses(ck: Checkpoint, length: int) -> list[KernelImpulse | None]:
    """Per block, the learned kernel before/after the causal mask for `length` tokens (None for
    attention blocks and mhf without a spectral filter)."""
    raise NotImplementedError


def mixer_impulse(ck: Checkpoint, layer: int, t0: int, length: int, *, amplitude: float | None = None,
                  seed: int = 0) -> MixerImpulse:
    """Run block `layer`'s mixer on an impulse at t0 (0 <= t0 < length); see MixerImpulse.
    Raises ValueError for a layer, t0 or length out of range."""
    raise NotImplementedError


def aliasing(ck: Checkpoint, layer: int, length: int, n_fft: int) -> Aliasing:
    """The aliasing of block `layer`'s learned kernel at FFT size n_fft (>= length) for `length`
    tokens. Raises ValueError for a block without a learned mhf kernel or sizes out of range."""
    raise NotImplementedError
