"""caracal_viz.explainer and its figures against independent oracles: np.convolve,
scipy.signal.fftconvolve and brute-force float64 loops."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from caracal_viz import explainer
from caracal_viz.figures import explainer as xf

FAST = settings(max_examples=40, deadline=None)


def brute_fft_matrix(h: np.ndarray, L: int, n_fft: int) -> np.ndarray:
    """M[t, j] by loops: term x_j h_m sits at position j + m of the linear convolution; an FFT of
    size n_fft puts it on output (j + m) mod n_fft."""
    M = np.zeros((L, L))
    for j in range(L):
        for m in range(len(h)):
            t = (j + m) % n_fft
            if t < L:
                M[t, j] += h[m]
    return M


def brute_fft_conv(x: np.ndarray, h: np.ndarray, n_fft: int) -> np.ndarray:
    y = np.zeros(len(x))
    for j in range(len(x)):
        for m in range(len(h)):
            t = (j + m) % n_fft
            if t < len(x):
                y[t] += x[j] * h[m]
    return y


def kernel_with_support(rng: np.random.Generator, K: int) -> np.ndarray:
    h = rng.normal(size=K)
    h[-1] = 1.0 + abs(h[-1])  # the support is exactly K
    return h


@FAST
@given(L=st.integers(2, 40), K=st.integers(1, 40), extra=st.integers(0, 45), seed=st.integers(0, 2**31))
def test_padding_demo_matches_brute_force(L, K, extra, seed):
    K = min(K, L)
    n_fft = L + extra
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=L), kernel_with_support(rng, K)
    d = explainer.padding_demo(x, h, n_fft)

    np.testing.assert_allclose(d.exact, np.convolve(x, h)[:L], atol=1e-12)
    np.testing.assert_allclose(d.linear_full, np.convolve(x, h), atol=1e-12)
    brute_M = brute_fft_matrix(h, L, n_fft)
    np.testing.assert_allclose(d.matrix, brute_M, atol=1e-12)
    np.testing.assert_allclose(d.output, brute_fft_conv(x, h, n_fft), atol=1e-10)
    # the actual FFT route agrees with the loops (scipy's FFT convolution folded onto the buffer)
    full = scipy.signal.fftconvolve(x, h)
    folded = np.zeros(n_fft)
    np.add.at(folded, np.arange(len(full)) % n_fft, full)
    np.testing.assert_allclose(d.fft_output, folded[:L], atol=1e-9)

    exact_brute = brute_fft_conv(x, h, 10 * L)
    leak_brute = brute_fft_conv(x, h, n_fft) - exact_brute
    np.testing.assert_allclose(d.leak, leak_brute, atol=1e-10)
    expected_frac = float(leak_brute @ leak_brute) / float(exact_brute @ exact_brute)
    assert math.isclose(d.leak_fraction, expected_frac, rel_tol=1e-9, abs_tol=1e-24)

    future_brute = np.triu(brute_M != 0, 1)
    np.testing.assert_array_equal(d.future, future_brute)
    np.testing.assert_array_equal(d.future_rows, future_brute.any(axis=1))
    assert d.future_rows.sum() == explainer.future_output_count(L, K, n_fft)
    assert d.wraps == [(n, n - n_fft) for n in range(n_fft, L + K - 1)]
    assert d.n_min == L + K - 1 and d.K == K


@FAST
@given(L=st.integers(2, 40), K=st.integers(1, 40), extra=st.integers(0, 45), seed=st.integers(0, 2**31))
def test_leak_is_exactly_zero_iff_fft_size_reaches_L_plus_K_minus_1(L, K, extra, seed):
    K = min(K, L)
    n_fft = L + extra
    rng = np.random.default_rng(seed)
    x = rng.normal(size=L)
    x[-1] = 1.0 + abs(x[-1])  # the last input is there to wrap
    h = kernel_with_support(rng, K)
    d = explainer.padding_demo(x, h, n_fft)
    no_leak = n_fft >= L + K - 1
    assert (not d.leaks) == no_leak
    assert (d.leak_fraction == 0.0) == no_leak
    assert np.all(d.leak == 0.0) == no_leak
    if no_leak:
        np.testing.assert_array_equal(d.output, d.exact)


@FAST
@given(L=st.integers(2, 30), K=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_circulant_and_toeplitz_are_the_two_ends_of_the_padding_slider(L, K, seed):
    K = min(K, L)
    rng = np.random.default_rng(seed)
    h = kernel_with_support(rng, K)
    d_circ = explainer.padding_demo(rng.normal(size=L), h, L)
    d_pad = explainer.padding_demo(rng.normal(size=L), h, 2 * L)
    hl = np.concatenate([h, np.zeros(L - K)])
    circ = np.array([[hl[(t - j) % L] for j in range(L)] for t in range(L)])
    toep = np.array([[hl[t - j] if t >= j else 0.0 for j in range(L)] for t in range(L)])
    np.testing.assert_array_equal(d_circ.circulant, circ)
    np.testing.assert_array_equal(d_circ.matrix, circ)
    np.testing.assert_array_equal(d_pad.toeplitz, toep)
    np.testing.assert_array_equal(d_pad.matrix, toep)
    # the circulant's strict upper triangle is exactly the wrapped part
    np.testing.assert_array_equal(np.tril(circ), toep)


def test_kernels_longer_than_the_signal_are_cut_to_L_lags():
    x, h = np.arange(1.0, 6.0), np.arange(1.0, 11.0)
    d = explainer.padding_demo(x, h, 5)
    assert d.K == 5 and d.n_min == 9
    np.testing.assert_allclose(d.exact, np.convolve(x, h)[:5])


def test_toy_filter_matches_its_formula():
    taps, decay, delay, osc = 12, 3.5, 2, 0.1
    h = explainer.toy_filter(taps, decay, delay, osc)
    for m in range(taps):
        want = 0.0 if m < delay else math.exp(-(m - delay) / decay) * math.cos(2 * math.pi * osc * (m - delay))
        assert math.isclose(h[m], want, rel_tol=1e-13, abs_tol=1e-300)
    assert explainer.support_length(h) == taps


@pytest.mark.parametrize("bad", [dict(taps=0, decay=1.0), dict(taps=4, decay=1.0, delay=4),
                                 dict(taps=4, decay=0.0), dict(taps=4, decay=1.0, oscillation=0.7)])
def test_toy_filter_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        explainer.toy_filter(**bad)


def test_toy_signals():
    L = 30
    spikes = explainer.toy_signal("spike train", L)
    assert set(np.flatnonzero(spikes)) == {t for t in range(L) if (L - 1 - t) % explainer.SPIKE_PERIOD == 0}
    step = explainer.toy_signal("step", L)
    assert step[: L // 2].sum() == 0 and np.all(step[L // 2 :] == 1)
    np.testing.assert_array_equal(explainer.toy_signal("noise", L, seed=3), explainer.toy_signal("noise", L, seed=3))
    with pytest.raises(ValueError):
        explainer.toy_signal("square", L)
    with pytest.raises(ValueError):
        explainer.padding_demo(np.ones(8), np.ones(3), 7)


@FAST
@given(a=st.lists(st.integers(-5, 5), min_size=1, max_size=8), b=st.lists(st.integers(-5, 5), min_size=1, max_size=8),
       n=st.integers(1, 20))
def test_polynomial_products(a, b, n):
    np.testing.assert_array_equal(explainer.poly_product(a, b), np.convolve(a, b))
    wrapped = np.zeros(n)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            wrapped[(i + j) % n] += ai * bj
    np.testing.assert_array_equal(explainer.poly_product_mod(a, b, n), wrapped)


def test_format_poly():
    assert explainer.format_poly([1, 3, 5, 3]) == "1 + 3z + 5z² + 3z³"
    assert explainer.format_poly([0, -1, 0, 2.5]) == "-z + 2.5z³"
    assert explainer.format_poly([4, 0, -2]) == "4 - 2z²"
    assert explainer.format_poly([0, 0]) == "0"


def test_figures_build_from_the_demo():
    for preset in explainer.PRESETS.values():
        x = explainer.toy_signal(preset["signal"], 32)
        h = explainer.toy_filter(preset["taps"], preset["decay"], preset["delay"], preset["oscillation"])
        d = explainer.padding_demo(x, h, 40)
        for fig in (xf.toy_inputs_figure(d.x, d.h), xf.outputs_figure(d),
                    xf.wraparound_figure(d), xf.matrices_figure(d)):
            assert isinstance(fig, go.Figure)
        wrap_fig = xf.wraparound_figure(d)
        # three zones of bars, then one arc and one arrowhead per wrapped term
        assert len(wrap_fig.data) == 3 + 2 * len(d.wraps)
        bars = {tr.name: np.asarray(tr.x) for tr in wrap_fig.data if tr.type == "bar"}
        assert len(bars["past the buffer: wraps to the start"]) == len(d.wraps)
        mat_fig = xf.matrices_figure(d)
        middle = {tr.name: np.asarray(tr.z, dtype=float) for tr in mat_fig.data if tr.xaxis == "x2" and tr.type == "heatmap"}
        np.testing.assert_array_equal(middle["weights"], d.matrix)
        tinted = ~np.isnan(middle["reads the future"]) if "reads the future" in middle else np.zeros((32, 32), bool)
        np.testing.assert_array_equal(tinted, d.future)
