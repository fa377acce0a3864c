"""Long texts in the Overview and the energy views (issue 14 item 1): the loss grid drawn in bins
of consecutive bytes and the energy gain in bands of frequency bins, against numpy loops over
the per-byte losses and the energy spectral densities, and the figures' JSON under 1 MB at
65,536 bytes (it was 11.5 MB and 9.15 MB drawn sample by sample)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caracal_viz import binning, figures
from caracal_viz.energy import parseval_report
from caracal_viz.predict import next_token_view
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample
from tests.test_app import errors, start
from tests.test_reach_page import arr
from tests.test_windows import LONG

CORPUS = open("data/tinyshakespeare.txt", encoding="utf-8").read()


def corpus_text(n_bytes: int) -> str:
    return CORPUS.encode()[:n_bytes].decode("utf-8", "ignore")


def test_bin_width_is_the_smallest_power_of_two_that_fits():
    assert [binning.bin_width(n) for n in (0, 1, 1024, 1025, 4096, 16384, 32769, 65536)] == [1, 1, 1, 2, 4, 16, 64, 64]
    assert binning.bin_width(10, max_bins=3) == 4
    with pytest.raises(ValueError):
        binning.bin_width(10, max_bins=0)


def test_mean_and_ratio_bins_against_loops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 1001))
    x[1, 5] = np.nan
    x[2, 992:] = np.nan  # the short last bin holds NaN only
    b = binning.mean_bins(x, 16)
    assert b.width == 16 and b.starts.tolist() == list(range(0, 1001, 16)) and b.ends[-1] == 1001
    for r in range(3):
        for i, (lo, hi) in enumerate(zip(b.starts, b.ends)):
            vals = [v for v in x[r, lo:hi] if v == v]
            want = sum(vals) / len(vals) if vals else np.nan
            np.testing.assert_allclose(b.values[r, i], want, rtol=1e-12)
    num, den = rng.random((2, 1001)), rng.random((2, 1001))
    den[0, :16] = 0.0
    q = binning.ratio_bins(num, den, 16)
    for r in range(2):
        for i, (lo, hi) in enumerate(zip(q.starts, q.ends)):
            d = sum(den[r, lo:hi])
            np.testing.assert_allclose(q.values[r, i], sum(num[r, lo:hi]) / d if d > 0 else np.nan, rtol=1e-12)


def loss_grid(fig: dict) -> tuple[np.ndarray, np.ndarray]:
    """(bin values in reading order, the pick layer's first positions) of the binned loss figure."""
    heat = next(d for d in fig["data"] if d["type"] == "heatmap")
    z = np.array([[np.nan if v is None else v for v in row] for row in heat["z"]], dtype=np.float64) \
        if isinstance(heat["z"], list) else arr(heat["z"]).reshape(-1, figures.BIN_COLUMNS)
    pick = next(d for d in fig["data"] if d.get("name") == "pick")
    return z.ravel(), arr(pick["customdata"]).astype(np.int64)


@pytest.mark.parametrize("n_bytes", [5000, 65536])
def test_the_binned_loss_grid_holds_the_mean_loss_of_each_bin(monkeypatch, n_bytes):
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", "65536")
    text = corpus_text(n_bytes)
    view = next_token_view(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), text))
    assert view.binned and len(view.ids) == n_bytes
    width = {5000: 8, 65536: 64}[n_bytes]
    fig = figures.token_loss_figure(view)
    spec = fig.to_json()
    assert len(spec) < 1_000_000
    z, starts = loss_grid(json.loads(spec))
    assert starts.tolist() == list(range(0, n_bytes, width))
    per_byte = [np.nan] + list(view.loss_bits[:-1])  # byte t's loss is loss_bits[t - 1]
    want = [np.mean([v for v in per_byte[a:a + width] if v == v]) for a in starts]
    np.testing.assert_allclose(z[:len(want)], want, atol=5e-5)  # the figure rounds to 4 decimals
    assert np.isnan(z[len(want):]).all()  # the grid's unused cells after the last bin
    assert f"mean loss of {width} consecutive bytes" in fig.layout.title.subtitle.text.replace("<br>", " ")


def test_a_text_of_4096_bytes_is_still_drawn_byte_by_byte():
    view = next_token_view(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), corpus_text(4096)))
    assert not view.binned
    fig = figures.token_loss_figure(view)
    assert fig.layout.title.text == "Loss per byte"
    pick = next(d for d in fig.data if d.name == "pick")
    assert len(pick.customdata) == 4096


def test_the_energy_gain_is_binned_into_bands_at_65536_bytes(monkeypatch):
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", "65536")
    rep = parseval_report(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), corpus_text(65536)))
    fig = figures.energy_gain_figure(rep)
    spec = fig.to_json()
    assert len(spec) < 1_000_000
    heat = json.loads(spec)["data"][0]
    z = np.array([[np.nan if v is None else v for v in row] for row in heat["z"]], dtype=np.float64) \
        if isinstance(heat["z"], list) else arr(heat["z"]).reshape(len(heat["y"]), -1)
    row = 0
    for e in rep.layers:
        if e is None:
            continue
        F = e.freqs.size
        assert F == 32769
        for h in range(e.esd_input.shape[0]):
            want = [10 * np.log10(e.esd_output[h, a:a + 64].sum() / e.esd_input[h, a:a + 64].sum())
                    for a in range(0, F, 64)]
            np.testing.assert_allclose(z[row], want, atol=6e-3)  # rounded to 2 decimals
            row += 1
        np.testing.assert_allclose(arr(heat["x"]), [e.freqs[a:a + 64].mean() for a in range(0, F, 64)], rtol=1e-12)
    assert row == len(heat["y"]) and "band of 64 adjacent frequency bins" in \
        fig.layout.title.subtitle.text.replace("<br>", " ")
    e = next(e for e in rep.layers if e is not None)
    esd = figures.esd_figure(e)  # every head's panel
    assert len(esd.to_json()) < 1_000_000 and "each point the mean of 64" in esd.layout.title.subtitle.text
    out = next(d for d in esd.data if d.name == "output")  # head 0's output line
    np.testing.assert_allclose(np.asarray(out.y, dtype=float), [e.esd_output[0, a:a + 64].mean()
                                                                 for a in range(0, e.freqs.size, 64)], rtol=1e-12)


def test_a_short_texts_energy_gain_is_every_bin():
    rep = parseval_report(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), corpus_text(1024)))
    e = next(e for e in rep.layers if e is not None)
    b = e.gain_bins()
    assert b.width == 1
    np.testing.assert_allclose(b.values, e.gain, rtol=1e-12)
    assert not figures.energy_gain_figure(rep).layout.title.subtitle.text


def test_the_pages_say_the_views_are_binned_at_16384_bytes():
    at = start(LONG, "caracal-periodic")
    assert not at.exception and not errors(at)
    caption = " ".join(c.value for c in at.caption)
    assert "Binned: the text has 16,384 bytes" in caption and "of 16 consecutive bytes" in caption
    assert all(len(c.proto.spec) < 1_000_000 for c in at.get("plotly_chart"))
    at.switch_page("pages/5_parseval_energy.py").run()
    assert not at.exception and not errors(at)
    caption = " ".join(c.value for c in at.caption)
    assert "drawn in bands of 16 adjacent bins" in caption
    assert all(len(c.proto.spec) < 1_000_000 for c in at.get("plotly_chart")), \
        [len(c.proto.spec) for c in at.get("plotly_chart")]
    at.switch_page("pages/2_spectral_filters.py").run()
    assert not at.exception and not errors(at)
    assert "drawn as the mean dB of 32 adjacent bins" in " ".join(c.value for c in at.caption)
    assert all(len(c.proto.spec) < 1_000_000 for c in at.get("plotly_chart"))


def test_the_data_kernel_figure_is_binned_past_1024_frequency_bins(monkeypatch):
    from caracal_viz.filters import data_kernels
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", "65536")
    ck = load_sample("caracal-periodic")
    for n_bytes, width in ((1000, 1), (5000, 8), (65536, 128)):  # the responses have L + 1 bins
        dk = data_kernels(ck, forward_pass(ck, corpus_text(n_bytes)))[0]
        fig = figures.data_kernel_figure(dk)
        assert len(fig.to_json()) < 1_000_000
        combined = next(d for d in fig.data if d.name == "head 1: combined g*k")
        want = [dk.combined_db[1, a:a + width].mean() for a in range(0, dk.freqs.size, width)]
        np.testing.assert_allclose(np.asarray(combined.y, dtype=float), want, atol=5e-3)  # rounded to 2 decimals
        np.testing.assert_allclose(np.asarray(combined.x, dtype=float),
                                   [dk.freqs[a:a + width].mean() for a in range(0, dk.freqs.size, width)], rtol=1e-12)
        assert (f"mean dB of {width} adjacent" in fig.layout.title.subtitle.text.replace("<br>", " ")) == (width > 1)


def test_the_interventions_loss_change_is_binned_past_4096_bytes(monkeypatch):
    from caracal_viz.interventions import ablate_head
    ck = load_sample("caracal-periodic")
    res = ablate_head(ck, corpus_text(5000), 1, 2, position=4321)
    fig = figures.loss_change_figure(res)
    assert len(fig.to_json()) < 1_000_000 and fig.layout.title.text == "Loss change per byte, binned"
    z, starts = loss_grid(json.loads(fig.to_json()))
    assert starts.tolist() == list(range(0, 5000, 8))
    change = [np.nan] + list(res.loss_after[:-1] - res.loss_before[:-1])  # byte t: the prediction after t - 1
    want = [np.mean([v for v in change[a:a + 8] if v == v]) for a in starts]
    np.testing.assert_allclose(z[:len(want)], want, atol=5e-5)
    box, = [s for s in fig.layout.shapes if s.type == "rect"]  # the bin holding position 4321: 540 = 8 x 64 + 28
    assert (box.x0 + 0.5, box.y0 + 0.5) == (4321 // 8 % 64, 4321 // 8 // 64)
