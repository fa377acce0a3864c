"""Spectral maths in float64 numpy, with no torch in it: the reference the app explains with and
the analysis code measures with.

Conventions, for every function here:
- Time runs along the last axis. Kernels are indexed by lag: h[m] weights the input m steps back.
- FFTs are numpy's: `rfft` one-sided (bins 0..n//2), "backward" normalisation (no scaling
  forward, 1/n on the inverse), so Parseval reads  sum |x|^2 = (1/n) sum_k w_k |X_k|^2  with
  w_k = 1 for DC and (n even) Nyquist, 2 for every other one-sided bin.
- Frequencies are normalised: cycles per token, 0..0.5.
- Two-sided kernels of size n use the irfft layout: index m < n/2 is lag m, index n - m is lag -m.
"""

from __future__ import annotations

import numpy as np


def causal_fft_conv(x: np.ndarray, *kernels: np.ndarray, n_fft: int | None = None) -> np.ndarray:
    """The frequency-domain causal trick: pad right, FFT, multiply, inverse FFT, keep the first L.

    x: (..., L) signal; kernels: each (..., K) causal kernels by lag (broadcast against x).
    n_fft: FFT size; default `min_causal_fft_size(L, *(K of each kernel))`, the least size that
    makes the result exactly y_t = sum_{j<=t} x_j (h1 * h2 * ...)_{t-j} (the models' own choice
    of a fast size above it is `models.fourier.causal_fft_size`). A smaller n_fft wraps late terms
    around onto early outputs (the leak `wraparound_leak` measures). Returns (..., L) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    L = x.shape[-1]
    # lags >= L cannot reach outputs 0..L-1; keeping them would wrap them onto early outputs
    kernels = [np.asarray(h, dtype=np.float64)[..., :L] for h in kernels]
    n = n_fft or min_causal_fft_size(L, *(h.shape[-1] for h in kernels))
    P = np.fft.rfft(x, n=n)
    for h in kernels:
        P = P * np.fft.rfft(h, n=n)
    return np.fft.irfft(P, n=n)[..., :L]


def circular_conv(x: np.ndarray, *kernels: np.ndarray) -> np.ndarray:
    """Circular convolution of length L = x.shape[-1] (no padding): what FFT-multiply-iFFT
    computes when N = L. Kernels longer than L are cut to L lags. Returns (..., L)."""
    return causal_fft_conv(x, *kernels, n_fft=np.shape(x)[-1])


def wraparound_leak(x: np.ndarray, h: np.ndarray, n_fft: int) -> tuple[np.ndarray, float]:
    """What an FFT of size n_fft adds to the exact causal convolution of x (..., L) with h (..., K).

    Returns (leak (..., L), leaked energy fraction = ||leak||^2 / ||exact||^2). The leak is zero
    exactly when n_fft >= L + min(K, L) - 1: every wrapped term then lands past output L - 1.
    """
    L = np.shape(x)[-1]
    h = np.asarray(h, dtype=np.float64)[..., :L]
    exact = causal_fft_conv(x, h)
    leak = causal_fft_conv(x, h, n_fft=n_fft) - exact
    denom = float(np.sum(exact**2))
    return leak, float(np.sum(leak**2) / denom) if denom > 0 else 0.0


def min_causal_fft_size(L: int, *K: int) -> int:
    """The smallest FFT size (any size, not only fast ones) with no wrap-around on outputs 0..L-1
    for a length-L signal convolved with kernels of K[0], K[1], ... lags: L + sum(min(K_i, L) - 1)
    (one K-lag kernel: L + min(K, L) - 1; two length-L factors: 2L - 1; three: 3L - 2)."""
    return L + sum(min(k, L) - 1 for k in K)


def impulse_response(spectrum: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Time kernel of a one-sided spectrum, before and after the causal mask.

    spectrum: (..., F) complex, one-sided. n: the FFT size, default 2 (F - 1).
    Returns (two_sided (..., n) in irfft layout, causal (..., n // 2)): the causal kernel keeps
    lags 0..n//2 - 1 and zeroes the negative lags (the "causal-mask impulse response").
    """
    spectrum = np.asarray(spectrum)
    n = n or 2 * (spectrum.shape[-1] - 1)
    two_sided = np.fft.irfft(spectrum, n=n)
    return two_sided, two_sided[..., : n // 2].copy()


def two_sided_lags(n: int) -> np.ndarray:
    """Lag of each index of an irfft-layout kernel of size n: 0, 1, ..., n/2 - 1, -n/2, ..., -1."""
    lags = np.arange(n)
    return np.where(lags < n // 2, lags, lags - n)


def masked_energy(two_sided: np.ndarray) -> np.ndarray:
    """Fraction of a two-sided kernel's energy (..., n) at negative lags: what the causal mask removes."""
    lags = two_sided_lags(two_sided.shape[-1])
    total = np.sum(two_sided**2, axis=-1)
    neg = np.sum(two_sided[..., lags < 0] ** 2, axis=-1)
    return np.divide(neg, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)


def rfft_freqs(n: int) -> np.ndarray:
    """(n//2 + 1,) normalised frequency of each one-sided bin, cycles per token, 0..0.5."""
    return np.fft.rfftfreq(n)


def frequency_response(kernel: np.ndarray, n_fft: int) -> np.ndarray:
    """One-sided frequency response (..., n_fft//2 + 1) of a causal kernel (..., K)."""
    return np.fft.rfft(np.asarray(kernel, dtype=np.float64), n=n_fft)


def magnitude_db(H: np.ndarray, floor_db: float = -120.0) -> np.ndarray:
    """20 log10 |H|, clipped below at floor_db (a closed gate is -inf otherwise)."""
    mag = np.abs(H)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(mag)
    return np.maximum(db, floor_db)


def unwrapped_phase(H: np.ndarray) -> np.ndarray:
    """Phase of H in radians, unwrapped along frequency."""
    return np.unwrap(np.angle(H), axis=-1)


def group_delay(kernel: np.ndarray, n: int, lags: np.ndarray | None = None) -> np.ndarray:
    """Group delay -d(phase)/d(omega) in tokens (..., n//2 + 1) of a kernel (..., K) on the rfft
    grid of size n, exactly: Re(DTFT(m h[m]) / DTFT(h)) (scipy.signal.group_delay's formula), where
    index i of the kernel has lag lags[i] (default i: a causal kernel). A pure delay of m tokens
    has group delay m at every frequency. 0 where |H| <= 1e-10 max |H| (the phase is undefined)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    lags = np.arange(kernel.shape[-1]) if lags is None else np.asarray(lags)
    num = np.fft.rfft(kernel * lags, n=n)
    den = np.fft.rfft(kernel, n=n)
    ok = np.abs(den) > 1e-10 * np.max(np.abs(den), axis=-1, keepdims=True)
    return np.real(np.divide(num, den, out=np.zeros_like(den), where=ok))


def one_sided_weights(n: int) -> np.ndarray:
    """(n//2 + 1,) weight of each rfft bin in Parseval's sum: 1 for DC, 1 for Nyquist when n is
    even, 2 for every other bin (it stands for itself and its negative-frequency twin)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def time_energy(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """sum |x|^2 along axis."""
    return np.sum(np.abs(np.asarray(x, dtype=np.float64)) ** 2, axis=axis)


def energy_spectral_density(x: np.ndarray, n: int | None = None) -> np.ndarray:
    """Energy per one-sided bin (..., n//2 + 1) of x (..., L) padded to n (default L), scaled so
    that the bins sum to the time-domain energy (Parseval): w_k |X_k|^2 / n."""
    x = np.asarray(x, dtype=np.float64)
    n = n or x.shape[-1]
    X = np.fft.rfft(x, n=n)
    return one_sided_weights(n) * np.abs(X) ** 2 / n


def frequency_energy(X: np.ndarray, n: int) -> np.ndarray:
    """Energy from a one-sided spectrum (..., n//2 + 1) of a real length-n signal."""
    return np.sum(one_sided_weights(n) * np.abs(X) ** 2, axis=-1) / n


def causal_toeplitz(h: np.ndarray, L: int) -> np.ndarray:
    """(..., L, L) lower-triangular Toeplitz matrices M[t, j] = h[t - j] for t >= j, else 0: the
    matrix of the causal convolution y = M x with kernel h (..., K) (K lags, zero past K - 1)."""
    h = np.asarray(h, dtype=np.float64)
    hl = np.zeros(h.shape[:-1] + (L,))
    hl[..., : min(L, h.shape[-1])] = h[..., :L]
    t = np.arange(L)
    d = t[:, None] - t[None, :]
    return np.where(d >= 0, hl[..., np.clip(d, 0, L - 1)], 0.0)


def circulant(h: np.ndarray, L: int) -> np.ndarray:
    """(L, L) circulant matrix M[t, j] = h[(t - j) mod L]: the matrix of circular convolution of
    length L. Its strict upper triangle is where late inputs wrap into early outputs."""
    h = np.asarray(h, dtype=np.float64)
    hl = np.zeros(L)
    hl[: min(L, h.shape[-1])] = h[:L]
    t = np.arange(L)
    return hl[(t[:, None] - t[None, :]) % L]


def padded_conv_matrix(h: np.ndarray, L: int, n_fft: int) -> np.ndarray:
    """(..., L, L) matrices of "pad to n_fft, multiply, inverse FFT, keep the first L" with kernel
    h (..., K): M[t, j] = sum over m of h[t - j + m n_fft]. Equals `causal_toeplitz` when
    n_fft >= 2L - 1 and `circulant` when n_fft = L; in between, the upper triangle shows exactly
    which outputs leak."""
    h = np.asarray(h, dtype=np.float64)[..., :L]
    hn = np.zeros(h.shape[:-1] + (n_fft,))
    np.add.at(np.moveaxis(hn, -1, 0), np.arange(h.shape[-1]) % n_fft, np.moveaxis(h, -1, 0))
    t = np.arange(L)
    return hn[..., (t[:, None] - t[None, :]) % n_fft]


def modrelu(z: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """modReLU(z) = ReLU(|z| + b) z / |z| (0 where z = 0)."""
    mag = np.abs(z)
    scale = np.divide(np.maximum(mag + bias, 0.0), mag, out=np.zeros_like(mag, dtype=np.float64), where=mag > 0)
    return z * scale


_BAND = 128  # rows per band of upper_triangle_maxima


def upper_triangle_maxima(m: np.ndarray) -> np.ndarray:
    """(...,) max |m[..., t, j]| over j > t for each square matrix in m (..., L, L): the entries a
    causal token-to-token map must not have. NaN entries are ignored; 0 where there are none
    (L < 2). In m's own dtype (integers: float64): no float64 copy of a large stack of matrices.
    Bands of _BAND rows: right of the band's diagonal block every entry counts (a max and a min,
    no copy); the diagonal block is masked."""
    m = np.asarray(m)
    m = m if np.issubdtype(m.dtype, np.floating) else m.astype(np.float64)
    L = m.shape[-1]
    out = np.zeros(m.shape[:-2], dtype=m.dtype)
    above = np.triu(np.ones((_BAND, _BAND), dtype=bool), 1)
    for t0 in range(0, L, _BAND):
        t1 = min(L, t0 + _BAND)
        right = m[..., t0:t1, t1:]
        if right.size:
            out = np.fmax(out, np.fmax(np.fmax.reduce(right, axis=(-2, -1)), -np.fmin.reduce(right, axis=(-2, -1))))
        block = np.abs(m[..., t0:t1, t0:t1])
        out = np.fmax(out, np.fmax.reduce(np.where(above[:t1 - t0, :t1 - t0], block, 0), axis=(-2, -1)))
    return out
