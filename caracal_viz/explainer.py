"""The maths of the causal-trick explainer: a toy signal, a filter shaped by a few parameters, and
what an FFT of size N makes of their convolution. Pure float64 numpy on top of `spectral`.

Conventions (those of `spectral`): time along the last axis, kernels indexed by lag (h[m] weights
the input m steps back), outputs 0..L-1 kept. An FFT of size N computes the matrix
`spectral.padded_conv_matrix(h, L, N)`; its strict upper triangle holds the wrapped terms, where
an output t reads a later input j > t (the leak). With a kernel reaching lag K - 1 the leak
vanishes exactly when N >= L + K - 1 (`spectral.min_causal_fft_size`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spectral

SIGNALS = ("spike train", "noise", "step")
SPIKE_PERIOD = 7

# A few filters worth looking at; the page's sliders start from one of them.
PRESETS: dict[str, dict] = {
    "Slow echo: a long decaying memory": {"signal": "spike train", "taps": 24, "decay": 8.0, "delay": 0, "oscillation": 0.0},
    "Pure delay: copy the input 5 tokens later": {"signal": "spike train", "taps": 6, "decay": 0.5, "delay": 5, "oscillation": 0.0},
    "Ringing: a decaying oscillation": {"signal": "step", "taps": 20, "decay": 6.0, "delay": 0, "oscillation": 0.125},
    "Short smoother on noise": {"signal": "noise", "taps": 4, "decay": 2.0, "delay": 0, "oscillation": 0.0},
}


def toy_signal(kind: str, L: int, seed: int = 0) -> np.ndarray:
    """A length-L toy input (float64).

    "spike train": unit spikes every SPIKE_PERIOD tokens, counted back from the last token (so
    that a late spike is there to wrap around); "noise": standard normal (seeded); "step": 0 for
    t < L // 2, then 1.
    """
    if L < 2:
        raise ValueError(f"the toy sequence needs at least 2 tokens, got L = {L}")
    if kind == "spike train":
        x = np.zeros(L)
        x[L - 1 :: -SPIKE_PERIOD] = 1.0
        return x
    if kind == "noise":
        return np.random.default_rng(seed).standard_normal(L)
    if kind == "step":
        return (np.arange(L) >= L // 2).astype(np.float64)
    raise ValueError(f"unknown toy signal {kind!r}: choose one of {', '.join(SIGNALS)}")


def toy_filter(taps: int, decay: float, delay: int = 0, oscillation: float = 0.0) -> np.ndarray:
    """A causal toy kernel (taps,) by lag: nothing before `delay`, then a decaying (cosine) echo,

        h[m] = exp(-(m - delay) / decay) * cos(2 pi * oscillation * (m - delay))   for m >= delay.

    taps: the kernel length K (lags 0..K-1); decay: e-folding length in tokens (> 0); delay:
    first lag that responds (0..K-1); oscillation: cycles per token, 0..0.5. The demo measures the support with `support_length`
    (a cosine cannot land exactly on zero at an integer lag in float64, nor can the exponential
    underflow for decay >= taps / 700, so in practice the support is K).
    """
    if taps < 1:
        raise ValueError(f"the filter needs at least one tap, got {taps}")
    if not 0 <= delay < taps:
        raise ValueError(f"the delay ({delay}) must be below the number of taps ({taps})")
    if decay <= 0:
        raise ValueError(f"the decay length must be positive, got {decay}")
    if not 0.0 <= oscillation <= 0.5:
        raise ValueError(f"the oscillation must be 0..0.5 cycles per token, got {oscillation}")
    m = np.arange(taps) - delay
    return np.where(m >= 0, np.exp(-np.maximum(m, 0) / decay) * np.cos(2 * np.pi * oscillation * m), 0.0)


def support_length(h: np.ndarray) -> int:
    """K: one past the last non-zero lag of a kernel (0 for an all-zero kernel)."""
    nz = np.flatnonzero(np.asarray(h))
    return int(nz[-1]) + 1 if nz.size else 0


def future_output_count(L: int, K: int, n_fft: int) -> int:
    """How many outputs (t = 0, 1, ...) read a later input when an FFT of size n_fft (>= L)
    convolves a length-L signal with a kernel whose support is K lags (<= L).

    The linear convolution has L + K - 1 terms; the ones at positions n >= n_fft wrap onto
    n - n_fft, and those landing on a kept output (< L) carry a future input. That is positions
    0 .. L + K - 2 - n_fft, i.e. max(0, L + K - 1 - n_fft) outputs.
    """
    return max(0, min(L, L + min(K, L) - 1 - n_fft))


@dataclass
class PaddingDemo:
    """One view of the trick for a signal x (L,), a kernel h (K,) and an FFT size n_fft.

    exact:          (L,) the causal convolution y_t = sum_{j<=t} h[t-j] x_j (what "pad to 2L and
                    truncate" gives).
    output:         (L,) what the FFT of size n_fft gives (matrix @ x).
    fft_output:     (L,) the same, computed by an actual FFT (agrees with `output` to rounding).
    leak:           (L,) output - exact, formed from the wrapped matrix entries only, so it is
                    exactly zero when nothing wraps.
    leak_fraction:  ||leak||^2 / ||exact||^2 (0 when exact is all zero).
    matrix:         (L, L) M[t, j], the weight of input j in output t for this n_fft.
    toeplitz:       (L, L) the causal (lower-triangular Toeplitz) matrix.
    circulant:      (L, L) the circulant matrix (n_fft = L, no padding).
    future:         (L, L) bool, M[t, j] != 0 with j > t: the wrapped terms.
    future_rows:    (L,) bool, outputs that read at least one later input.
    linear_full:    (L + K - 1,) the full linear convolution (the polynomial product x(z) h(z)).
    wraps:          list of (n, n mod n_fft) for every full-convolution position n >= n_fft: the
                    terms that wrap around, and where they land.
    n_min:          L + K - 1, the smallest FFT size with no leak (K = support of h, at most L).
    """

    L: int
    K: int
    n_fft: int
    x: np.ndarray
    h: np.ndarray
    exact: np.ndarray
    output: np.ndarray
    fft_output: np.ndarray
    leak: np.ndarray
    leak_fraction: float
    matrix: np.ndarray
    toeplitz: np.ndarray
    circulant: np.ndarray
    future: np.ndarray
    future_rows: np.ndarray
    linear_full: np.ndarray
    wraps: list[tuple[int, int]]
    n_min: int

    @property
    def leaks(self) -> bool:
        """True when some output reads a later input at this n_fft (the matrix's strict upper triangle)."""
        return bool(self.future.any())

    @property
    def leak_text(self) -> str:
        """The leaked energy in words: "0 (exactly)" or a percentage to three figures."""
        return leak_words(self.leak_fraction)


def leak_words(fraction: float) -> str:
    """A leaked-energy fraction in words: "0 (exactly)" for exactly 0, else "12.3 %"."""
    return "0 (exactly)" if fraction == 0 else f"{100 * fraction:.3g} %"


def padding_demo(x: np.ndarray, h: np.ndarray, n_fft: int) -> PaddingDemo:
    """Everything the explainer shows for one signal, kernel and FFT size (see `PaddingDemo`).

    x: (L,) signal; h: (K,) causal kernel by lag, cut to L lags; n_fft: L <= n_fft (the outputs
    0..L-1 must fit in the FFT buffer).
    """
    x = np.asarray(x, dtype=np.float64)
    L = x.shape[-1]
    h = np.asarray(h, dtype=np.float64)[:L]
    if n_fft < L:
        raise ValueError(f"the FFT size ({n_fft}) must be at least the sequence length ({L})")
    K = max(1, support_length(h))
    h = h[:K]
    matrix = spectral.padded_conv_matrix(h, L, n_fft)
    toeplitz = spectral.causal_toeplitz(h, L)
    upper = np.triu(matrix, 1)
    exact = toeplitz @ x
    leak = upper @ x
    denom = float(exact @ exact)
    fft_leak, _ = spectral.wraparound_leak(x, h, n_fft)
    full_len = L + K - 1
    linear_full = spectral.causal_toeplitz(h, full_len) @ np.concatenate([x, np.zeros(full_len - L)])
    return PaddingDemo(
        L=L, K=K, n_fft=int(n_fft), x=x, h=h,
        exact=exact,
        output=matrix @ x,
        fft_output=exact + fft_leak,
        leak=leak,
        leak_fraction=float(leak @ leak) / denom if denom > 0 else 0.0,
        matrix=matrix,
        toeplitz=toeplitz,
        circulant=spectral.circulant(h, L),
        future=upper != 0,
        future_rows=(upper != 0).any(axis=1),
        linear_full=linear_full,
        wraps=[(n, n % n_fft) for n in range(n_fft, full_len)],
        n_min=spectral.min_causal_fft_size(L, K),
    )


def poly_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients (len(a) + len(b) - 1,) of a(z) b(z), with a(z) = sum_i a[i] z^i: the linear
    convolution, written as the causal Toeplitz matrix of b applied to zero-padded a."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a) + len(b) - 1
    return spectral.causal_toeplitz(b, n) @ np.concatenate([a, np.zeros(n - len(a))])


def poly_product_mod(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Coefficients (n,) of a(z) b(z) mod (z^n - 1): z^n = 1, so the term z^(n + r) lands on z^r.
    This is what an FFT of size n computes (circular convolution)."""
    full = poly_product(a, b)
    out = np.zeros(n)
    np.add.at(out, np.arange(len(full)) % n, full)
    return out


def format_poly(c: np.ndarray, var: str = "z") -> str:
    """A short human-readable polynomial, e.g. [1, 3, 0, 2] -> '1 + 3z + 2z³' (integers shown
    without decimals; zero terms dropped)."""
    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    terms = []
    for i, v in enumerate(np.asarray(c, dtype=np.float64)):
        if v == 0:
            continue
        num = f"{v:g}"
        if i == 0:
            terms.append(num)
        else:
            coef = "" if v == 1 else ("-" if v == -1 else num)
            power = var if i == 1 else f"{var}{str(i).translate(sup)}"
            terms.append(f"{coef}{power}")
    return " + ".join(terms).replace("+ -", "- ") if terms else "0"


@dataclass
class LeakSweep:
    """The leaked energy of one signal and kernel for every FFT size from L to 2L.

    sizes:       (L + 1,) int, the FFT sizes N = L .. 2L.
    fractions:   (L + 1,) `PaddingDemo.leak_fraction` at each N.
    n_min:       L + K - 1, the smallest N whose matrix has no wrapped entry.
    first_clean: the smallest N from which on the leak of this signal is exactly 0 (at most n_min:
                 a signal that is zero where the last wrapped terms come from stops leaking earlier).
    """

    sizes: np.ndarray
    fractions: np.ndarray
    n_min: int
    first_clean: int

    @property
    def clean_by_structure(self) -> bool:
        """True when the leak stops exactly at L + K - 1 (not earlier, by a zero in the signal)."""
        return self.first_clean == self.n_min


def leak_sweep(x: np.ndarray, h: np.ndarray) -> LeakSweep:
    """`padding_demo(x, h, N).leak_fraction` for every N from L = len(x) to 2L (see `LeakSweep`)."""
    L = np.asarray(x).shape[-1]
    sizes = np.arange(L, 2 * L + 1)
    demos = [padding_demo(x, h, int(n)) for n in sizes]
    fractions = np.array([d.leak_fraction for d in demos])
    leaky = sizes[fractions > 0]
    return LeakSweep(sizes=sizes, fractions=fractions, n_min=demos[0].n_min,
                     first_clean=int(leaky.max()) + 1 if leaky.size else int(L))
