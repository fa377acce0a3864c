"""Torch FFT primitives used inside the mixers (differentiable, batched, float32).

Conventions: time runs along the last axis unless said otherwise; `torch.fft.rfft` with the
default "backward" normalisation (no scaling forward, 1/N on the inverse), so a spectrum of
all ones is a unit impulse at lag 0. The numpy oracles for the same maths live in
`caracal_viz.spectral` and the tests compare the two.
"""

from __future__ import annotations

import torch


def fast_fft_size(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3, 5 and 7 (fast for cuFFT/pocketfft)."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                m = p3
                while m < n:
                    m *= 2
                best = min(best, m)
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


def causal_fft_size(L: int, n_factors: int) -> int:
    """FFT size that makes the product of `n_factors` causal length-L spectra an exact linear
    convolution on outputs 0..L-1: the full convolution is n_factors*(L-1)+1 long, and anything
    past N would alias back onto the first outputs, so N >= n_factors*(L-1)+1."""
    return fast_fft_size(n_factors * (L - 1) + 1)


def modrelu(z: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """modReLU(z) = ReLU(|z| + b) * z / |z| for complex z (FFTNet). The gate is open where |z| + b > 0."""
    mag = z.abs()
    scale = torch.relu(mag + bias) / (mag + eps)
    return z * scale


def place_two_sided(kernel: torch.Tensor, n_causal: int, n: int) -> torch.Tensor:
    """Lay a two-sided kernel out circularly in a buffer of size n.

    kernel: (..., 2C) in irfft layout: index m < C is lag m, index 2C - m is lag -m.
    Keeps lags 0..n_causal-1 and -(n_causal-1)..-1 (the rest cannot reach outputs 0..n_causal-1),
    returns (..., n) with lag -m at index n - m.
    """
    two_c = kernel.shape[-1]
    c = two_c // 2
    keep = min(n_causal, c)
    out = kernel.new_zeros(kernel.shape[:-1] + (n,))
    out[..., :keep] = kernel[..., :keep]
    neg = min(n_causal - 1, c)
    if neg > 0:
        out[..., n - neg:] = kernel[..., two_c - neg:]
    return out


def causal_kernel_lags(kernel: torch.Tensor, L: int) -> torch.Tensor:
    """The first L lags of a causal kernel (..., K), zero-padded when K < L. Returns (..., L)."""
    K = kernel.shape[-1]
    if K >= L:
        return kernel[..., :L]
    return torch.nn.functional.pad(kernel, (0, L - K))
