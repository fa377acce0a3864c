"""The verdicts and selections that the pages used to compute themselves (issue 12 item 4), now on
the analyses' results, each against an independent oracle (plain Python loops, np.convolve)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from caracal_viz import causality, explainer, impulse, influence, mixing, results
from tests.conftest import load_sample


def _map(values: np.ndarray) -> influence.InfluenceMap:
    L = values.shape[0]
    upper = max((abs(values[i, j]) for i in range(L - 1) for j in range(i + 1, L)), default=0.0)
    scale = max(abs(values[i, j]) for i in range(L - 1) for j in range(i + 1))
    return influence.InfluenceMap(values=values, ids=np.arange(L), labels=[str(i) for i in range(L)], layer=None,
                                  upper_max=upper, scale=scale, causal=True)


def test_influence_map_reads_the_future_at_the_rounding_threshold_only():
    values = np.tril(np.full((4, 4), 2.0))
    values[-1] = np.nan
    assert not _map(values).reads_future
    for rel, leaks in ((0.99 * results.ROUNDING_REL, False), (results.ROUNDING_REL, True), (1e-3, True)):
        v = values.copy()
        v[0, 2] = 2.0 * rel
        assert _map(v).reads_future is leaks
        assert results.is_rounding(_map(v).upper_rel) is not leaks
    v = values.copy()
    v[1, 0] = np.inf  # NaN relative value: nothing can be read, so neither a leak nor rounding
    assert not _map(v).reads_future and not results.is_rounding(_map(v).upper_rel)


def test_strongest_inputs_are_the_largest_of_the_row_nan_last():
    rng = np.random.default_rng(3)
    for L in (2, 3, 9, 40):
        values = rng.permutation(L * L).reshape(L, L).astype(np.float64)  # distinct but for the NaN row
        values[-1] = np.nan
        values[0, L // 2] = np.nan
        m = _map(values)
        for pos in range(L):
            row = values[pos]
            expect = sorted(range(L), key=lambda j: -(row[j] if row[j] == row[j] else -1.0))[:results.TOP_INFLUENCES]
            assert m.strongest(pos).tolist() == expect
            assert m.strongest(pos, k=2).tolist() == expect[:2]
    with pytest.raises(ValueError):
        m.strongest(L)


def test_future_fraction_against_a_loop():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 7, 7))
    m[1] = np.tril(m[1])  # a causal head
    m[2] = 0.0  # a silent head
    m[0, 1, 5] = -9.0
    want = []
    for h in range(3):
        top = max(abs(m[h, t, j]) for t in range(7) for j in range(7))
        upper = max(abs(m[h, t, j]) for t in range(7) for j in range(t + 1, 7))
        want.append(upper / top if top > 0 else 0.0)
    np.testing.assert_allclose(mixing.future_fraction(m), want, rtol=1e-12)
    assert mixing.future_fraction(m)[1] == 0.0


def _circular_leak_fraction(x: np.ndarray, h: np.ndarray, n: int) -> float:
    """||FFT-of-size-n output - exact causal output||^2 / ||exact||^2 by explicit sums."""
    L = len(x)
    exact = np.convolve(x, h)[:L]
    full = np.convolve(x, h)
    wrapped = np.zeros(n)
    for p, c in enumerate(full):
        wrapped[p % n] += c
    leak = wrapped[:L] - exact
    return float(leak @ leak / (exact @ exact)) if exact @ exact > 0 else 0.0


@pytest.mark.parametrize("signal", explainer.SIGNALS)
def test_leak_sweep_against_explicit_wraparound(signal):
    for L, taps, delay in ((16, 5, 0), (24, 24, 3), (32, 1, 0)):
        x = explainer.toy_signal(signal, L)
        h = explainer.toy_filter(taps, 4.0, delay, 0.1)
        sweep = explainer.leak_sweep(x, h)
        assert sweep.sizes.tolist() == list(range(L, 2 * L + 1))
        want = np.array([_circular_leak_fraction(x, h, n) for n in range(L, 2 * L + 1)])
        np.testing.assert_allclose(sweep.fractions, want, rtol=1e-9, atol=1e-15)
        K = max((m + 1 for m in range(len(h)) if h[m] != 0), default=1)
        assert sweep.n_min == L + K - 1
        # first_clean: the least N from which on every larger size leaks exactly nothing
        clean = [n for n in range(L, 2 * L + 1) if all(explainer.padding_demo(x, h, k).leak_fraction == 0
                                                      for k in range(n, 2 * L + 1))]
        assert sweep.first_clean == clean[0] <= sweep.n_min
        assert sweep.clean_by_structure == (clean[0] == L + K - 1)


def test_a_signal_zero_at_its_end_stops_leaking_before_the_structure_does():
    x = np.zeros(16)
    x[:4] = 1.0  # the wrapped terms come from late inputs: zero here
    sweep = explainer.leak_sweep(x, np.ones(8))
    assert sweep.first_clean < sweep.n_min and not sweep.clean_by_structure


def test_leak_words():
    assert explainer.leak_words(0.0) == "0 (exactly)"
    assert explainer.leak_words(0.1234) == "12.3 %"
    assert explainer.padding_demo(np.ones(8), np.ones(3), 16).leak_text == "0 (exactly)"


def test_kernel_after_mask_is_the_causal_kernel_in_two_sided_layout():
    ck = load_sample("caracal-circular-leaky")
    L = 32
    kernels = [k for k in impulse.kernel_impulses(ck, L) if k is not None]
    assert kernels
    for ki in kernels:
        after = ki.after_mask
        for i, lag in enumerate(ki.lags):
            if lag < 0:
                assert not after[:, i].any()
            else:
                np.testing.assert_array_equal(after[:, i], ki.causal[:, lag])
        np.testing.assert_allclose(np.sum((ki.two_sided - after) ** 2, axis=-1), ki.masked_energy, rtol=1e-12)


def _layer(i: int, verdict: str, response: float, floor: float) -> causality.LayerLeak:
    return causality.LayerLeak(layer=i, kind="mhf", causal_mode="circular", verdict=verdict, structure=None,
                               leak=1.0, response=response, floor=floor, relative_leak=0.0, floor_ratio=0.0,
                               lengths=[8], leak_by_offset=np.arange(8.0), worst_offset=7, source="")


def test_leak_curves_and_tolerance_of_the_leaking_layers():
    per_layer = [_layer(0, causality.CAUSAL, 2.0, 1e-6), _layer(1, causality.LEAKS, 4.0, 1e-5),
                 _layer(2, causality.LEAKS, 0.0, 1e-5), _layer(3, causality.LEAKS, 2.0, 1e-4),
                 _layer(4, causality.LEAKS, 1.0, 0.0)]
    blank = {f.name: None for f in dataclasses.fields(causality.CausalityReport) if f.default is dataclasses.MISSING}
    report = causality.CausalityReport(**{**blank, "per_layer": per_layer})
    assert [p.layer for p in report.leaking_layers] == [1, 3, 4]
    assert [name for name, _ in report.leak_curves] == ["layer 1", "layer 3", "layer 4"]
    for (_, curve), resp in zip(report.leak_curves, (4.0, 2.0, 1.0)):
        np.testing.assert_array_equal(curve, np.arange(8.0) / resp)
    # relative thresholds: FLOOR_FACTOR x floor / response for each; a zero floor has none
    assert report.leak_tolerance == pytest.approx(causality.FLOOR_FACTOR * 1e-4 / 2.0)
    only_zero = causality.CausalityReport(**{**blank, "per_layer": [per_layer[4]]})
    assert only_zero.leak_tolerance is None
    assert causality.CausalityReport(**{**blank, "per_layer": per_layer[:1]}).leak_curves == []
