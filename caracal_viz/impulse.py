"""Causal-mask impulse responses: the learned kernel before and after the mask, the whole
mixer's response to one impulse, and the aliasing an FFT that is too small would cause.

Kernels are indexed by lag (kernel[m] weights the input m steps back); negative lags read the
future. FFTs are rfft with backward normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import spectral
from .checks import int_arg
from .checkpoint import Checkpoint
from .filters import resample_spectrum
from .trace import LayerTrace, layer_numpy, static_internals

MAX_LENGTH = 1 << 16
"""Longest sequence kernel_impulses and mixer_impulse accept (their outputs grow with it)."""
MAX_ALIASING_LENGTH = 1024
"""aliasing() returns (H, L, L) matrices; longer lengths would need gigabytes."""


@dataclass
class KernelImpulse:
    """One mixer's learned kernel for sequences of `length` L tokens.

    kind:            "mhf" or "fftnet".
    lags:            (2L - 1,) int, -(L-1) .. L-1 in increasing order.
    two_sided:       (H, 2L - 1) the kernel before the causal mask, by `lags`. mhf: irfft(S'_h, 2C)
                     over lags -C..C-1 (the irfft layout's index C counts as lag -C, as the
                     "two_sided" mode applies it), zero outside; fftnet: irfft(W_base resampled to
                     this length, L), the circular kernel it applies, at the lags
                     `spectral.two_sided_lags(L)` gives its indices, zero outside.
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

    @property
    def after_mask(self) -> np.ndarray:
        """(H, 2L - 1) the kernel after the causal mask in `two_sided`'s layout (by `lags`): the
        negative lags zeroed, the others as `causal`."""
        return np.where(self.lags >= 0, self.two_sided, 0.0)


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
    model_n_fft:     the size the mixer itself uses at this length (`fft_size(L)` of the mhf
                     mixer: v * g * k needs >= 2L + min(C, L) - 2; "circular" uses L).
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
    L = int_arg("length", length, 1, MAX_LENGTH)
    return [_kernel_impulse(rec, L) for rec in static_internals(ck)]


def _kernel_impulse(rec: LayerTrace | None, L: int) -> KernelImpulse | None:
    if rec is None or rec.spectrum is None:
        return None
    lags = np.arange(-(L - 1), L)
    if rec.kind == "mhf":
        k2 = rec.kernel_two_sided.astype(np.float64)
        C = k2.shape[-1] // 2
        src = np.where(lags >= 0, lags, 2 * C + lags)  # irfft layout index of each lag
        valid = (lags < C) & (lags >= -C)
    else:
        circ = np.fft.irfft(resample_spectrum(rec.spectrum.astype(np.complex128), L // 2 + 1), n=L)
        k2 = circ
        circ_lags = spectral.two_sided_lags(L)
        src = np.zeros(lags.size, dtype=int)
        valid = np.zeros(lags.size, dtype=bool)
        src[circ_lags + L - 1] = np.arange(L)
        valid[circ_lags + L - 1] = True
    two_sided = np.where(valid, k2[:, np.clip(src, 0, k2.shape[-1] - 1)], 0.0)
    causal = two_sided[:, L - 1:].copy()
    masked = np.sum(two_sided[:, lags < 0] ** 2, axis=-1)
    total = np.sum(two_sided**2, axis=-1)
    return KernelImpulse(kind=rec.kind, lags=lags, two_sided=two_sided, causal=causal, masked_energy=masked,
                         masked_fraction=np.divide(masked, total, out=np.zeros_like(total), where=total > 0))


def mixer_impulse(ck: Checkpoint, layer: int, t0: int, length: int, *, amplitude: float | None = None,
                  seed: int = 0) -> MixerImpulse:
    """Run block `layer`'s mixer on an impulse at t0 (0 <= t0 < length); see MixerImpulse.
    Raises ValueError for a layer, t0 or length out of range."""
    layer = int_arg("layer", layer, 0, len(ck.model.blocks) - 1)
    L = int_arg("length", length, 1, MAX_LENGTH)
    t0 = int_arg("t0", t0, 0, L - 1)
    D = ck.config.d_model
    amp = float(np.sqrt(D)) if amplitude is None else float(amplitude)
    if not np.isfinite(amp) or amp <= 0:
        raise ValueError(f"amplitude must be a positive number, got {amplitude!r}")
    u = np.random.default_rng(seed).standard_normal(D)
    x = torch.zeros(2, L, D, device=ck.device)
    x[1, t0] = torch.as_tensor(u / np.linalg.norm(u) * amp, dtype=x.dtype, device=ck.device)
    mixer = ck.model.blocks[layer].mixer
    record = None
    with torch.no_grad():
        if hasattr(mixer, "forward_with_internals"):
            y, record = mixer.forward_with_internals(x)
        else:
            y = mixer(x)
    y = y.float()
    response = (y[1] - y[0]).cpu().numpy()
    head_response = None
    if record is not None:
        rec = layer_numpy(record, 1)
        diff = rec.fft_output - layer_numpy(record, 0).fft_output  # (L, D)
        H = ck.config.n_heads
        head_response = np.sqrt((diff.reshape(L, H, -1).astype(np.float64) ** 2).sum(axis=-1)).T
    return MixerImpulse(layer=layer, t0=t0, length=L, response=response,
                        norm=np.linalg.norm(response.astype(np.float64), axis=-1), head_response=head_response,
                        leak=float(np.abs(response[:t0]).max()) if t0 else 0.0, peak=float(np.abs(response).max()),
                        amplitude=amp)


def aliasing(ck: Checkpoint, layer: int, length: int, n_fft: int) -> Aliasing:
    """The aliasing of block `layer`'s learned kernel at FFT size n_fft (>= length) for `length`
    tokens. Raises ValueError for a block without a learned mhf kernel or sizes out of range."""
    layer = int_arg("layer", layer, 0, len(ck.model.blocks) - 1)
    L = int_arg("length", length, 1, MAX_ALIASING_LENGTH)
    n_fft = int_arg("n_fft", n_fft, L, 1 << 20)
    rec = static_internals(ck)[layer]
    if rec is None or rec.kind != "mhf" or rec.kernel_two_sided is None:
        raise ValueError(f"block {layer} has no learned mhf kernel: choose an mhf block with a spectral filter")
    k2 = rec.kernel_two_sided.astype(np.float64)
    K = min(k2.shape[-1] // 2, L)
    k = k2[:, :K]  # (H, K): the causal kernel's lags that can reach L outputs
    T = spectral.causal_toeplitz(k, L)  # (H, L, L) the exact causal convolution
    M = spectral.padded_conv_matrix(k, L, n_fft)  # (H, L, L) what an FFT of size n_fft computes
    alias = M - T
    exact_energy = np.sum(T**2, axis=(-2, -1))
    total = np.sum(M**2, axis=(-2, -1))
    future = np.sum(np.triu(M, 1) ** 2, axis=(-2, -1))
    return Aliasing(layer=layer, length=L, n_fft=n_fft, safe_n_fft=spectral.min_causal_fft_size(L, K),
                    model_n_fft=int(ck.model.blocks[layer].mixer.fft_size(L)), matrix=M, alias=alias,
                    alias_fraction=np.divide(np.sum(alias**2, axis=(-2, -1)), exact_energy,
                                             out=np.zeros_like(exact_energy), where=exact_energy > 0),
                    future_fraction=np.divide(future, total, out=np.zeros_like(total), where=total > 0))
