"""The token-to-token mixing matrices of each mixer: `mixing_matrices` (every block) and
`mixing_matrix` (one), per head, from the recorded kernels (mhf, exact, float64) or the
Jacobian of the FFT stage (fftnet). The whole model's gradient map is caracal_viz.influence."""

from __future__ import annotations

import numpy as np
import torch

from models.fftnet import resample_bins
from models.fourier import modrelu

from .checkpoint import Checkpoint
from .checks import int_arg
from .resources import check_influence_text, memory_budget
from .spectral import upper_triangle_maxima
from .trace import Forward


def mixing_matrices(ck: Checkpoint, fwd: Forward) -> list[np.ndarray | None]:
    """Per block, the (H, L, L) float32 token-to-token mixing matrices of its mixer on the text of
    `fwd`, a forward pass of ck (`trace.forward_pass(ck, text)`; None for attention blocks). Entry [h, t, j] says how strongly position j feeds output t.

    For channel c, the mixing matrix is the Jacobian d y[:, c] / d v[:, c] of the FFT stage
    output y (`MixerInternals.fft_output`) w.r.t. its input v (`fft_input`), with the other
    stream held at its value on this text:
    - mhf: y is linear in v for a fixed gate kernel g, so the matrix is exactly the Toeplitz
      (or, in causal_mode "circular", circulant) matrix of the kernel that is applied: the
      combined kernel h = (g * k)[:L] per channel (two_sided mode: with k's negative lags).
      Computed in float64 from the recorded g and k; entries above the diagonal are exactly 0
      in causal_mode "pad".
    - fftnet: y = irfft(modReLU(rfft(v) * W; b)) with the input-adapted filter W fixed (its
      dependence on the whole-sequence mean is not part of this matrix; the whole-model
      `token_influence` includes it). The Jacobian at this input, by vectorised autograd
      (vmap over jacrev, channels in memory-bounded chunks), in float64.
    Heads: entry [h, t, j] is the RMS over the head's dh channels of the channel matrices,
    sqrt(mean_c J_c[t, j]^2): a magnitude (the signs of different channels would cancel in a mean).
    Raises TextError for a text over `influence_limit(ck)`.
    """
    check_influence_text(ck, fwd.check(ck).text)
    internals = fwd.records
    return [None if rec is None else _mixing_heads(ck, rec, i) for i, rec in enumerate(internals)]


def mixing_matrix(ck: Checkpoint, fwd: Forward, layer: int) -> np.ndarray:
    """One block's (H, L, L) float32 mixing matrices, `mixing_matrices(ck, fwd)[layer]`, without
    building the others (at 4,096 bytes each block's matrices are 4 heads x 64 MB).
    Raises TextError as `mixing_matrices`; ValueError for a layer that is not a Fourier mixer."""
    if layer is None:
        raise ValueError(f"layer must be a block index 0..{ck.config.n_layers - 1}, got None")
    n = ck.config.n_layers
    k = int_arg("layer", layer, 0, n - 1, expect=f"None or a block index 0..{n - 1}")
    if ck.config.layer_kind(k) not in ("mhf", "fftnet"):
        raise ValueError(f"block {k} is an attention block: it has no Fourier mixing matrix")
    check_influence_text(ck, fwd.check(ck).text)
    return _mixing_heads(ck, fwd.records[k], k)


def _mixing_heads(ck: Checkpoint, rec, layer: int) -> np.ndarray:
    if rec.kind == "mhf":
        return _toeplitz_heads(mhf_lag_kernels(ck, rec), ck.config.n_heads)
    return _fftnet_jacobian_heads(ck, rec, ck.model.blocks[layer].mixer)


def mhf_lag_kernels(ck: Checkpoint, rec) -> np.ndarray:
    """The lag kernels of an mhf block's recorded internals `rec` (MixerInternals of one text):
    (D, 2L-1) float64 w_c[d], the weight of v_j in y_t[c] at lag d = t - j (index d + L - 1)."""
    import scipy.signal  # here, not at the top: 1-2 s of the app's start-up, which never calls it

    cfg = ck.config
    g = rec.gate_kernel[0].double().cpu().numpy().T  # (D, L)
    D, L = g.shape
    dh = cfg.head_dim
    w = np.zeros((D, 2 * L - 1))
    if cfg.spectral_filter:
        causal_k = np.repeat(rec.kernel.double().cpu().numpy(), dh, axis=0)  # (D, L), lags 0..L-1
    else:
        causal_k = np.zeros((D, L))
        causal_k[:, 0] = 1.0  # no learned filter: g alone is the kernel
    if cfg.causal_mode == "circular":
        # N = L: lag d and lag d - L land on the same FFT bin, so the kernel is periodic in L
        c = np.fft.irfft(np.fft.rfft(g, n=L) * np.fft.rfft(causal_k, n=L), n=L)  # (D, L)
        d = np.arange(-(L - 1), L)
        return c[:, d % L]
    if cfg.causal_mode == "two_sided" and cfg.spectral_filter:
        # N >= 3L - 2 leaves no wrap-around, but k keeps its negative lags (up to C of them)
        two = rec.kernel_two_sided.double().cpu().numpy()  # (H, 2C), irfft layout
        C = two.shape[-1] // 2
        full = np.zeros((D, 2 * L - 1))  # k over lags -(L-1)..L-1
        full[:, L - 1:] = causal_k
        neg = min(L - 1, C)
        if neg > 0:
            full[:, L - 1 - neg:L - 1] = np.repeat(two[:, 2 * C - neg:], dh, axis=0)
        conv = scipy.signal.fftconvolve(g, full, axes=-1)  # lags -(L-1)..2L-2
        return conv[:, : 2 * L - 1]
    # "pad": the exact causal convolution; nothing reaches a negative lag
    w[:, L - 1:] = scipy.signal.fftconvolve(g, causal_k, axes=-1)[:, :L]
    return w


def _toeplitz_heads(w: np.ndarray, n_heads: int) -> np.ndarray:
    """(D, 2L-1) lag kernels -> (H, L, L) float32 with [h, t, j] = RMS_c w_c[t - j]."""
    D, n_lags = w.shape
    L = (n_lags + 1) // 2
    rms = np.sqrt(np.mean(w.reshape(n_heads, D // n_heads, n_lags) ** 2, axis=1)).astype(np.float32)  # (H, 2L-1)
    # Row t of the matrix is rms at lags t, t-1, .., t-L+1: a window of the reversed lag axis. A
    # strided view and one copy, instead of gathering an (H, L, L) float64 index (10x slower).
    rev = np.ascontiguousarray(rms[:, ::-1])  # index i is lag L-1-i
    windows = np.lib.stride_tricks.sliding_window_view(rev, L, axis=-1)  # (H, L, L): [h, s, j] = lag L-1-s-j
    return np.ascontiguousarray(windows[:, ::-1])  # [h, t, j] with s = L-1-t: lag t-j


def _fftnet_jacobian_heads(ck: Checkpoint, rec, mixer) -> np.ndarray:
    v = rec.fft_input[0].to(torch.float64)  # (L, D)
    L, D = v.shape
    H, dh = ck.config.n_heads, ck.config.head_dim
    W = torch.view_as_real(rec.adapted_filter[0].to(torch.complex128))  # (H, F, 2): jacrev takes real inputs
    with torch.no_grad():
        bias = resample_bins(mixer.gate_bias.detach().to(torch.float64), W.shape[1])  # (H, F)

    def channel(v_c, w_c, b_c):  # (L,), (F, 2), (F,) -> (L,)
        return torch.fft.irfft(modrelu(torch.fft.rfft(v_c, n=L) * torch.view_as_complex(w_c), b_c), n=L)

    jac = torch.func.vmap(torch.func.jacrev(channel, argnums=0))
    per_chunk = max(1, min(dh, (memory_budget(ck) // 8) // max(1, 24 * L * L)))
    out = np.empty((H, L, L), dtype=np.float32)
    for h in range(H):
        sq = torch.zeros(L, L, dtype=torch.float64, device=v.device)
        for s in range(0, dh, per_chunk):
            cols = range(h * dh + s, h * dh + min(dh, s + per_chunk))
            vc = v[:, list(cols)].T  # (n, L)
            n = vc.shape[0]
            J = jac(vc, W[h].expand(n, -1, -1), bias[h].expand(n, -1))  # (n, L, L)
            sq += (J**2).sum(0)
        out[h] = torch.sqrt(sq / dh).cpu().numpy()
    return out


def upper_triangle_max(m: np.ndarray) -> float:
    """Max |m[..., t, j]| over j > t (the entries a causal map must not have) over every matrix
    in m; NaN ignored (`spectral.upper_triangle_maxima` gives one per matrix)."""
    return float(upper_triangle_maxima(m).max(initial=0))


def future_fraction(m: np.ndarray) -> np.ndarray:
    """(H,) for (H, L, L) matrices: each head's largest |entry| above the diagonal relative to its
    largest |entry| anywhere (0 for an all-zero head): 0 for a causal head in mode "pad", rounding
    for a causal FFTNet Jacobian, large where a head reads the future."""
    m = np.asarray(m)
    top = np.abs(m).max(axis=(-2, -1))
    return upper_triangle_maxima(m) / np.maximum(top, np.finfo(np.float32).tiny)
