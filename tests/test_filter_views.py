"""Filters and energies that say something at a glance (issue 13, items 14 and 15): peaks of the
kernels and responses against hand-built filters, the periodic sample's known periods (as
sample_checkpoints/README.md lists them), the frequency axes, per-head normalisation and locked
dB ranges, energy by band against numpy on hand-made signals, and the pages through AppTest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from caracal_viz import energy, figures, filters
from caracal_viz.gates import gate_report
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample
from tests.security_helpers import open_link, server_like_navigation

__all__ = ["server_like_navigation"]
PERIODIC_TEXT = "abc" * 12 + "qwertyui" * 6 + "thequickbrownfoxjump" * 3


def hand_filter(kernel: np.ndarray) -> filters.LayerFilters:
    """A causal LayerFilters whose kernel (H, C) is given: its response computed by numpy."""
    H, C = kernel.shape
    response = np.fft.rfft(kernel, n=2 * C)
    return filters.LayerFilters(kind="mhf", freqs=np.fft.rfftfreq(2 * C), spectrum=response, gated_spectrum=response,
                                response=response, magnitude_db=20 * np.log10(np.maximum(np.abs(response), 1e-6)),
                                phase=np.unwrap(np.angle(response)), group_delay=np.zeros(response.shape),
                                kernel=kernel, lags=np.arange(C))


def test_kernel_peaks_are_the_lags_of_the_spikes_strongest_first():
    k = np.zeros((2, 64))
    k[0, [0, 3, 8, 20]] = [1.0, 0.5, 0.9, -0.7]  # lag 0 (the present) is not a look-back
    k[0, 30] = 0.05  # under the prominence: ripple
    k[1, 12] = 1.0
    peaks = filters.filter_peaks(hand_filter(k))
    assert peaks.lags[0].tolist() == [8, 20, 3] and peaks.lags[1].tolist() == [12]
    np.testing.assert_allclose(peaks.lag_heights[0], [0.9, 0.7, 0.5])


def test_a_comb_filter_peaks_at_its_period():
    # y_t = x_t + 0.9 x_{t-8}: |H| peaks where 8 f is a whole number, f = 1/8, 2/8, 3/8: periods 8, 4, 8/3
    k = np.zeros((1, 64))
    k[0, [0, 8]] = [1.0, 0.9]
    peaks = filters.filter_peaks(hand_filter(k))
    np.testing.assert_allclose(sorted(peaks.periods[0]), sorted([8.0, 4.0, 8 / 3]), rtol=1e-9)
    assert np.all(peaks.peak_db[0] <= 0)


def test_the_periodic_sample_peaks_at_the_periods_its_readme_lists():
    ck = load_sample("caracal-periodic")
    assert filters.task_periods(ck) == (3, 8, 20)
    assert filters.task_periods(load_sample("caracal-shakespeare")) == ()
    found = {int(m) for f in filters.learned_filters(ck) for lags in filters.filter_peaks(f).lags for m in lags}
    # README: "Its learned causal kernels peak at lags 3, 8 and 19-20 (the periods), and at 24 (3 x 8) and 40"
    assert {3, 8, 24, 40} <= found and found & {19, 20}


def test_frequency_axes():
    freqs = np.fft.rfftfreq(16)
    x, keep, ax = figures.freq_axis(freqs, "period")
    assert not keep[0] and keep[1:].all()
    np.testing.assert_allclose(x, 16 / np.arange(1, 9))
    assert ax["type"] == "log"
    x, keep, ax = figures.freq_axis(freqs, "log frequency")
    np.testing.assert_allclose(x, freqs[1:])
    with pytest.raises(ValueError, match="axis must be one of"):
        figures.freq_axis(freqs, "mel")


def test_heatmap_normalises_per_head_locks_its_range_and_marks_peaks_and_periods():
    f = filters.learned_filters(load_sample("caracal-periodic"))[0]
    peaks = filters.filter_peaks(f)
    fig = figures.filter_heatmap(f.freqs, f.magnitude_db, per_head=True, peaks=peaks, periods=(3, 8, 20),
                                 axis="period")
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_allclose(np.nanmax(z, axis=1), 0.0, atol=0.01)  # each head re its own peak
    assert heat.zmax - heat.zmin <= figures.DB_SPAN + 1e-9
    np.testing.assert_allclose(sorted(s.x0 for s in fig.layout.shapes), [3, 8, 20])  # lines at the periods
    assert {a.text for a in fig.layout.annotations} >= {"period 3", "period 8", "period 20"}
    marks = fig.data[1]
    assert marks.text[0] == f"{peaks.periods[0][0]:.3g}" and marks.x[0] == pytest.approx(peaks.periods[0][0])
    # a locked range is the range drawn, whatever the data
    locked = figures.filter_heatmap(f.freqs, f.magnitude_db, db_range=(-90.0, 10.0)).data[0]
    assert (locked.zmin, locked.zmax) == (-90.0, 10.0)


def test_grid_has_a_clickable_panel_per_block_and_head():
    lf = filters.learned_filters(load_sample("caracal-shakespeare"))
    fig = figures.filter_grid_figure(lf, "log frequency", selected=(2, 1))
    picks = [t for t in fig.data if t.name == "pick"]
    assert len(picks) == 6 * 4
    assert {tuple(np.asarray(t.customdata)[0]) for t in picks} == {(i, h) for i in range(6) for h in range(4)}
    assert len(fig.layout.shapes) == 1


def layer_energy(x_in: np.ndarray, x_out: np.ndarray, H: int) -> energy.LayerEnergy:
    """A LayerEnergy for hand-made FFT input and output signals (L, D)."""
    t_in, esd_in = energy.head_energy(torch.from_numpy(x_in), H)
    t_out, esd_out = energy.head_energy(torch.from_numpy(x_out), H)
    nan = np.full(H, np.nan)
    return energy.LayerEnergy(freqs=np.fft.rfftfreq(x_in.shape[0]), input_time=t_in, input_freq=esd_in.sum(-1),
                              output_time=t_out, output_freq=esd_out.sum(-1), input_rel_error=nan,
                              output_rel_error=nan, esd_input=esd_in, esd_output=esd_out, gain=np.divide(esd_out, esd_in, out=np.full_like(esd_out, np.nan), where=esd_in > 0),
                              energy_gain=t_out / t_in, mixer_input_time=0.0, mixer_input_freq=0.0,
                              mixer_output_time=0.0, mixer_output_freq=0.0, mixer_rel_error=0.0,
                              mixer_esd_input=esd_in[0], mixer_esd_output=esd_out[0], mixer_gain=esd_in[0])


def test_energy_bands_against_pure_tones():
    L, t = 120, np.arange(120)[:, None]  # whole periods of 3 and 8: no leakage between bins
    # head 0: a constant in, a period-8 tone out, 4x the energy; head 1: a period-3 tone in and out, 1/2 the energy
    x_in = np.hstack([np.ones((L, 2)), np.cos(2 * np.pi * t / 3) * np.ones((1, 2))])
    x_out = np.hstack([2 * np.sqrt(2) * np.cos(2 * np.pi * t / 8) * np.ones((1, 2)),
                       np.sqrt(0.5) * np.cos(2 * np.pi * t / 3) * np.ones((1, 2))])
    rep = energy.ParsevalReport(layers=[None, layer_energy(x_in, x_out, 2)], max_rel_error=0.0, tolerance=1.0, ok=True)
    b = energy.energy_bands(rep)
    assert b.rows == [(1, 0), (1, 1)]
    dc, tokens_4_16, tokens_2_4 = 0, b.names.index("4 to 16 tokens"), b.names.index("2 to 4 tokens")
    np.testing.assert_allclose(b.input_fraction[0, dc], 1.0, atol=1e-12)
    np.testing.assert_allclose(b.output_fraction[0, tokens_4_16], 1.0, atol=1e-12)
    np.testing.assert_allclose(b.input_fraction[1, tokens_2_4], 1.0, atol=1e-9)
    np.testing.assert_allclose(b.input_fraction.sum(axis=1), 1.0)
    gain = [10 * np.log10((x_out[:, :2] ** 2).sum() / (x_in[:, :2] ** 2).sum()),
            10 * np.log10((x_out[:, 2:] ** 2).sum() / (x_in[:, 2:] ** 2).sum())]
    np.testing.assert_allclose(b.gain_db, gain, rtol=1e-9)
    assert b.verdict == ["amplifies", "attenuates"]
    np.testing.assert_allclose(b.band_gain_db[1, tokens_2_4], gain[1], rtol=1e-9)
    kept = energy.energy_bands(rep, keep_db=10.0)
    assert kept.verdict == ["keeps", "keeps"]


def test_esd_small_multiples_put_each_head_in_its_own_panel():
    rep = energy.parseval_report(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), PERIODIC_TEXT))
    fig = figures.esd_figure(rep.layers[0])
    axes = {t.xaxis for t in fig.data}
    assert len(axes) == 4 and len(fig.data) == 8
    assert {a.text for a in fig.layout.annotations} >= {f"head {h}" for h in range(4)}
    assert len({t.xaxis for t in figures.esd_figure(rep.layers[0], 2).data}) == 1


def figure_json(at: AppTest, key: str) -> str:
    """The figure with widget key `key`, as plain JSON text (Plotly's own escapes undone)."""
    spec = next(c.proto.spec for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return json.dumps(json.loads(spec), ensure_ascii=False)


@pytest.mark.usefixtures("server_like_navigation")
def test_filters_page_offers_the_axes_and_labels_the_periodic_samples_periods():
    at = open_link("pages/2_spectral_filters.py", ck="caracal-periodic")
    assert at.radio("sf_axis").options == list(figures.FREQ_AXES)
    assert any("3, 8, 20 tokens" in c.value for c in at.caption)
    assert '"period 8"' in figure_json(at, "sf_heat") and "lag 8" in figure_json(at, "sf_kernel")
    at.radio("sf_axis").set_value("period").run()
    at.toggle("sf_norm").set_value(True).run()
    assert not at.exception and "re the head's peak" in figure_json(at, "sf_heat")
    assert "period 1/f (tokens" in figure_json(at, "sf_detail")
    assert "Every block and head" in figure_json(at, "sf_grid")
    at = open_link("pages/2_spectral_filters.py", ck="caracal-shakespeare")
    assert not any("tokens; see sample_checkpoints" in c.value for c in at.caption)


@pytest.mark.usefixtures("server_like_navigation")
def test_compare_draws_both_filters_on_one_db_range():
    at = open_link("pages/7_compare.py", ck="caracal-shakespeare")
    a, b = (json.loads(figure_json(at, f"cmp_heat_{s}"))["data"][0] for s in "AB")
    assert (a["zmin"], a["zmax"]) == (b["zmin"], b["zmax"])


@pytest.mark.usefixtures("server_like_navigation")
def test_parseval_page_shows_where_the_energy_goes():
    at = open_link("pages/5_parseval_energy.py", ck="caracal-periodic")
    spec = figure_json(at, "pe_bands")
    assert "Where the energy goes" in spec and "2 to 4 tokens" in spec
    assert any("keeps its energy" in c.value for c in at.caption)


@pytest.mark.parametrize("axis", figures.FREQ_AXES)
def test_the_gate_maps_offer_the_filter_axes_and_mark_the_task_periods(axis):
    """Issue 13 item 14: the gates map has the log-frequency and period axes of the filter
    heatmap (f = 0 left out where it has no log or period) and the periodic task's known
    periods marked."""
    ck = load_sample("caracal-periodic")
    g = next(x for x in gate_report(ck, forward_pass(ck, "abcabcabc xyzxyzxyz 0123456701234567")) if x is not None)
    periods = filters.task_periods(ck)
    for fig in (figures.gate_map_figure(g, axis=axis, periods=periods),
                figures.passed_energy_figure(g, axis=axis, periods=periods)):
        (heat,) = [t for t in fig.data if t.type == "heatmap"]
        x = np.asarray(heat.x, dtype=float)
        keep = g.freqs > 0 if axis != "frequency" else np.ones(g.freqs.shape, bool)
        want = {"frequency": g.freqs, "log frequency": g.freqs[keep], "period": 1.0 / g.freqs[keep]}[axis]
        np.testing.assert_allclose(x, want)
        assert np.asarray(heat.z).shape == (g.bias.shape[0], int(keep.sum()))
        assert fig.layout.xaxis.type == (None if axis == "frequency" else "log")
        lines = sorted(s.x0 for s in fig.layout.shapes if s.x0 == s.x1 and s.xref == "x")
        np.testing.assert_allclose(lines, sorted(p if axis == "period" else 1.0 / p for p in periods))
        assert {a.text for a in fig.layout.annotations} >= {f"period {p:g}" for p in periods}


@pytest.mark.usefixtures("server_like_navigation")
def test_the_gates_page_offers_the_axes_and_names_the_periods():
    at = open_link("pages/3_modrelu_gates.py", ck="caracal-periodic")
    assert at.radio("gt_axis").options == list(figures.FREQ_AXES)
    assert any("3, 8, 20 tokens" in c.value for c in at.caption)
    assert '"period 8"' in figure_json(at, "gt_map")
    at.radio("gt_axis").set_value("period").run()
    assert not at.exception and not at.error
    assert "period 1/f (tokens" in figure_json(at, "gt_map") and "period 1/f (tokens" in figure_json(at, "gt_energy")
