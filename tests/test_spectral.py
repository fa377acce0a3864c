"""caracal_viz.spectral and models.fourier against independent oracles: numpy, scipy and
brute-force float64 loops, on random shapes."""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from caracal_viz import spectral
from models import fourier

FAST = settings(max_examples=40, deadline=None)


def brute_causal(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    L = len(x)
    y = np.zeros(L)
    for t in range(L):
        for j in range(t + 1):
            if t - j < len(h):
                y[t] += x[j] * h[t - j]
    return y


def brute_circular(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    L = len(x)
    y = np.zeros(L)
    for t in range(L):
        for m in range(min(len(h), L)):
            y[t] += h[m] * x[(t - m) % L]
    return y


@FAST
@given(L=st.integers(1, 70), K=st.integers(1, 90), seed=st.integers(0, 2**31))
def test_causal_fft_conv_matches_brute_force_and_scipy(L, K, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=L), rng.normal(size=K)
    y = spectral.causal_fft_conv(x, h)
    np.testing.assert_allclose(y, brute_causal(x, h), atol=1e-10)
    np.testing.assert_allclose(y, scipy.signal.fftconvolve(x, h)[:L], atol=1e-10)


@FAST
@given(L=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_triple_product_needs_three_factor_padding(L, seed):
    rng = np.random.default_rng(seed)
    v, g, k = rng.normal(size=(3, L))
    exact = np.convolve(np.convolve(v, g), k)[:L]
    np.testing.assert_allclose(spectral.causal_fft_conv(v, g, k), exact, atol=1e-9)
    assert fourier.causal_fft_size(L, 3) >= 3 * L - 2


@FAST
@given(L=st.integers(1, 60), factors=st.integers(2, 4), seed=st.integers(0, 2**31))
def test_causal_fft_size_is_the_least_fast_size_meeting_the_exact_condition(L, factors, seed):
    """The product of `factors` causal length-L spectra is an exact linear convolution on outputs
    0..L-1 iff N >= factors (L - 1) + 1: exact at causal_fft_size's N (np.convolve the oracle),
    wrapped at one less than the bound, and no 7-smooth size between the bound and N."""
    rng = np.random.default_rng(seed)
    sig = rng.normal(size=(factors, L))
    exact = sig[0]
    for s in sig[1:]:
        exact = np.convolve(exact, s)
    exact = exact[:L]

    def product(n):
        return np.fft.irfft(np.prod([np.fft.rfft(s, n=n) for s in sig], axis=0), n=n)[:L]

    bound = factors * (L - 1) + 1
    n = fourier.causal_fft_size(L, factors)
    assert n >= bound and _smooth7(n) and not any(_smooth7(k) for k in range(bound, n))
    np.testing.assert_allclose(product(n), exact, atol=1e-9)
    if L > 1:
        assert np.abs(product(bound - 1) - exact).max() > 1e-6
    assert fourier.causal_fft_size(4, 3) == 10 and fourier.causal_fft_size(4, 2) == 7


def test_two_factor_padding_is_not_enough_for_three_factors():
    # With N = 2L - 1 the triple convolution (length 3L - 2) wraps onto the first outputs.
    rng = np.random.default_rng(0)
    L = 32
    v, g, k = rng.normal(size=(3, L))
    exact = np.convolve(np.convolve(v, g), k)[:L]
    short = spectral.causal_fft_conv(v, g, k, n_fft=2 * L - 1)
    assert np.abs(short - exact).max() > 1e-3


@FAST
@given(L=st.integers(1, 60), K=st.integers(1, 80), seed=st.integers(0, 2**31))
def test_circular_conv_matches_brute_force(L, K, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=L), rng.normal(size=K)
    np.testing.assert_allclose(spectral.circular_conv(x, h), brute_circular(x, h[:L]), atol=1e-10)


@FAST
@given(L=st.integers(2, 40), K=st.integers(1, 40), extra=st.integers(-39, 40), seed=st.integers(0, 2**31))
def test_wraparound_leak_vanishes_exactly_at_min_size(L, K, extra, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=L), rng.normal(size=K)
    n_min = spectral.min_causal_fft_size(L, K)
    n = max(L, n_min + extra)
    leak, frac = spectral.wraparound_leak(x, h, n)
    if n >= n_min:
        assert np.abs(leak).max() < 1e-9 and frac < 1e-18
    else:
        # the padded-conv matrix says exactly which terms wrap: compare with the brute-force sum
        M = np.zeros((L, L))
        for t in range(L):
            for j in range(L):
                for m in range(-2, 3):
                    lag = t - j + m * n
                    if 0 <= lag < min(K, L):
                        M[t, j] += h[lag]
        np.testing.assert_allclose(spectral.padded_conv_matrix(h, L, n), M, atol=1e-12)
        np.testing.assert_allclose(leak, M @ x - brute_causal(x, h), atol=1e-9)


@FAST
@given(L=st.integers(1, 40), K=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_matrices(L, K, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=L), rng.normal(size=K)
    T = spectral.causal_toeplitz(h, L)
    np.testing.assert_allclose(T @ x, brute_causal(x, h), atol=1e-10)
    assert np.all(np.triu(T, 1) == 0)
    np.testing.assert_allclose(spectral.circulant(h, L) @ x, brute_circular(x, h[:L]), atol=1e-10)
    np.testing.assert_allclose(spectral.padded_conv_matrix(h, L, L), spectral.circulant(h, L), atol=1e-12)
    np.testing.assert_allclose(spectral.padded_conv_matrix(h, L, 2 * L - 1), T, atol=1e-12)
    # a stack of kernels gives the stack of their matrices
    hs = rng.normal(size=(3, K))
    n = max(L, L + min(K, L) - 3)
    np.testing.assert_array_equal(spectral.causal_toeplitz(hs, L), np.stack([spectral.causal_toeplitz(r, L) for r in hs]))
    np.testing.assert_array_equal(spectral.padded_conv_matrix(hs, L, n),
                                  np.stack([spectral.padded_conv_matrix(r, L, n) for r in hs]))


@FAST
@given(n=st.integers(2, 200), seed=st.integers(0, 2**31))
def test_parseval_one_sided(n, seed):
    x = np.random.default_rng(seed).normal(size=n)
    e_time = float(np.sum(x**2))
    full = float(np.sum(np.abs(np.fft.fft(x)) ** 2) / n)  # two-sided oracle
    assert abs(full - e_time) <= 1e-9 * e_time
    assert abs(spectral.frequency_energy(np.fft.rfft(x), n) - e_time) <= 1e-9 * e_time
    esd = spectral.energy_spectral_density(x)
    assert esd.shape == (n // 2 + 1,) and abs(esd.sum() - e_time) <= 1e-9 * e_time
    np.testing.assert_allclose(spectral.time_energy(x), e_time)


def test_one_sided_weights_odd_and_even():
    np.testing.assert_array_equal(spectral.one_sided_weights(8), [1, 2, 2, 2, 1])
    np.testing.assert_array_equal(spectral.one_sided_weights(7), [1, 2, 2, 2])


@FAST
@given(F=st.integers(3, 60), seed=st.integers(0, 2**31))
def test_impulse_response_and_mask(F, seed):
    rng = np.random.default_rng(seed)
    S = rng.normal(size=F) + 1j * rng.normal(size=F)
    S[0] = S[0].real
    S[-1] = S[-1].real
    n = 2 * (F - 1)
    two, causal = spectral.impulse_response(S)
    # brute-force inverse DFT of the Hermitian-extended spectrum
    full = np.concatenate([S, np.conj(S[-2:0:-1])])
    brute = np.array([sum(full[k] * np.exp(2j * np.pi * k * m / n) for k in range(n)) / n for m in range(n)])
    np.testing.assert_allclose(two, brute.real, atol=1e-10)
    np.testing.assert_allclose(causal, brute.real[: n // 2], atol=1e-10)
    lags = spectral.two_sided_lags(n)
    neg = np.sum(brute.real[lags < 0] ** 2) / np.sum(brute.real**2)
    np.testing.assert_allclose(spectral.masked_energy(two), neg, atol=1e-12)


def test_group_delay_of_a_delay_and_against_scipy():
    freqs = spectral.rfft_freqs(128)
    for m in (0, 3, 17):
        h = np.zeros(40)
        h[m] = 1.0
        np.testing.assert_allclose(spectral.group_delay(h, 128), m, atol=1e-9)
    h = np.random.default_rng(1).normal(size=6) * np.exp(-np.arange(6))
    w = 2 * np.pi * freqs[1:-1]
    _, gd = scipy.signal.group_delay((h, [1.0]), w=w)
    ours = spectral.group_delay(h, 4096)
    idx = (freqs[1:-1] * 4096).round().astype(int)
    np.testing.assert_allclose(ours[idx], gd, atol=1e-2)


def test_magnitude_db_and_modrelu():
    H = np.array([1.0, 10.0, 0.0, 1e-3j])
    np.testing.assert_allclose(spectral.magnitude_db(H), [0.0, 20.0, -120.0, -60.0])
    z = np.array([3 + 4j, 0.3 + 0.4j, 0j])
    out = spectral.modrelu(z, np.array([-1.0, -1.0, 1.0]))
    np.testing.assert_allclose(out, [(4 / 5) * (3 + 4j), 0, 0])


@given(n=st.integers(1, 5000))
@settings(max_examples=200, deadline=None)
def test_fast_fft_sizes_agree_with_scipy(n):
    # models.fourier's fast sizes: the least 7-smooth number >= n (cuFFT and pocketfft are fast there)
    ours = fourier.fast_fft_size(n)
    assert ours >= n
    m = ours
    for p in (2, 3, 5, 7):
        while m % p == 0:
            m //= p
    assert m == 1
    brute = next(k for k in range(n, 2 * n + 2) if _smooth7(k))
    assert ours == brute


def _smooth7(k: int) -> bool:
    for p in (2, 3, 5, 7):
        while k % p == 0:
            k //= p
    return k == 1


def test_torch_fourier_helpers_match_numpy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 9)) + 1j * rng.normal(size=(3, 9))
    b = rng.normal(size=(3, 9))
    ours = fourier.modrelu(torch.tensor(z), torch.tensor(b), eps=0.0).numpy()
    np.testing.assert_allclose(ours, spectral.modrelu(z, b), atol=1e-12)
    C = 8
    k = torch.tensor(rng.normal(size=(2, 2 * C)))
    for L, n in ((5, 20), (8, 30), (12, 40)):
        buf = fourier.place_two_sided(k, L, n).numpy()
        lags = spectral.two_sided_lags(2 * C)
        expect = np.zeros((2, n))
        for i, lag in enumerate(lags):
            if -L < lag < L:
                expect[:, lag % n] = k.numpy()[:, i]
        np.testing.assert_array_equal(buf, expect)


def test_upper_triangle_maxima_against_a_loop():
    rng = np.random.default_rng(5)
    m = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    m[0, 1, 1, 4] = np.nan  # ignored
    got = spectral.upper_triangle_maxima(m)
    assert got.shape == (3, 2) and got.dtype == np.float32
    for a in range(3):
        for b in range(2):
            want = max(abs(float(m[a, b, t, j])) for t in range(6) for j in range(t + 1, 6)
                       if not np.isnan(m[a, b, t, j]))
            assert got[a, b] == np.float32(want)
    assert spectral.upper_triangle_maxima(np.ones((1, 1))) == 0.0


def test_upper_triangle_maxima_over_several_bands():
    # L = 300 spans three bands of rows: the maximum sits right of a band's diagonal block, inside one
    # just above the diagonal, or is negative; larger entries on and below the diagonal are ignored
    rng = np.random.default_rng(6)
    L = 300
    m = rng.uniform(-1, 1, (4, L, L))
    for h, (t, j, v) in enumerate([(3, 290, 7.0), (130, 131, 6.0), (255, 256, -5.0), (140, 200, 4.0)]):
        m[h][np.tril_indices(L)] = 50.0
        m[h, t, j] = v
        m[h, 10, 20] = np.nan
    mask = np.triu(np.ones((L, L), dtype=bool), 1)
    want = [np.nanmax(np.abs(m[h][mask])) for h in range(4)]
    np.testing.assert_array_equal(spectral.upper_triangle_maxima(m), want)
    np.testing.assert_array_equal(want, [7.0, 6.0, 5.0, 4.0])
    assert spectral.upper_triangle_maxima(np.arange(9).reshape(3, 3)) == 5.0  # integers
