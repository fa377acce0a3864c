"""The Length extrapolation page (pages/10_extrapolation.py) through AppTest: the shipped curves
drawn as sample_checkpoints/extrapolation.json holds them, and the curves computed on the page for
the loaded checkpoint(s) equal caracal_viz.extrapolate's on the same windows and, independently,
the numpy bin means of a float64 log-softmax of the plain forward on those windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caracal_viz import extrapolate as ex
from caracal_viz.figures.long import bin_centres
from tests.conftest import load_sample
from tests.test_app import PERIODIC_TEXT, SHORT_TEXT, errors, start
from tests.test_reach_page import arr

PAGE = "pages/10_extrapolation.py"


def figure(at, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if key in (c.proto.id or "")).proto.spec)


def plotted(fig: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Trace name -> (x, y) of a figure's lines."""
    return {d["name"]: (arr(d["x"]).astype(np.float64), arr(d["y"]).astype(np.float64)) for d in fig["data"]}


def context_lines(fig: dict) -> list[float]:
    return sorted(s["x0"] for s in fig["layout"].get("shapes", ()) if s.get("x0") == s.get("x1"))


def oracle_bins(ck, windows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bits/byte of each bin from the plain forward, a float64 log-softmax, numpy means."""
    with torch.no_grad():
        logits = ck.model(torch.from_numpy(windows[:, :-1].astype(np.int64))).double().numpy()  # (W, L, 256)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, windows[:, 1:, None].astype(np.int64), -1)[..., 0] / np.log(2)  # (W, L)
    per_pos = nll.mean(axis=0)
    return np.array([per_pos[lo:hi].mean() for lo, hi in zip(edges[:-1], edges[1:])])


@pytest.fixture(scope="module")
def page():
    at = start(PERIODIC_TEXT, "caracal-periodic")
    at.switch_page(PAGE).run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    return at


def test_the_shipped_curves_are_drawn_as_the_json_holds_them(page):
    record, curves, tables = ex.load_measured()
    assert {c.name for c in curves} >= {"caracal-shakespeare", "caracal-hybrid-shakespeare",
                                        "transformer-shakespeare", "caracal-long"}
    fig = figure(page, "ex_fig_measured")
    lines = plotted(fig)
    assert list(lines) == [c.name for c in curves]
    for c in curves:
        x, y = lines[c.name]
        keep = np.isfinite(c.bits)
        np.testing.assert_array_equal(y, c.bits[keep])
        np.testing.assert_array_equal(x, bin_centres(c.edges)[keep])
        assert (c.length, c.n_windows, c.source) == (ex.MAX_FACTOR * c.context, record["windows"], "validation")
    assert context_lines(fig) == sorted({float(c.context) for c in curves})
    assert record["machine"] in fig["layout"]["title"]["subtitle"]["text"]
    table = page.table[0].value
    assert list(table["checkpoint"]) == [t.name for t in tables]
    np.testing.assert_allclose(table["512-2,048"].to_numpy(dtype=float), [t.bits[1] for t in tables],
                               atol=5e-5)
    # nothing is computed before the button
    assert len(page.get("plotly_chart")) == 1 and "ex_for" not in page.session_state
    assert page.button("ex_for_button")


def test_the_live_curve_equals_extrapolate_on_the_same_windows(page):
    at = page
    at.select_slider("ex_length").set_value(512).run()
    at.number_input("ex_windows").set_value(2).run()
    at.button("ex_for_button").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    ck = load_sample("caracal-periodic")
    run = ex.extrapolate(ck, length=512, n_windows=2)
    want = run.curve(ex.curve_edges(512))
    fig = figure(at, "ex_fig_live")
    (x, y), = plotted(fig).values()
    np.testing.assert_allclose(y, want.bits, rtol=1e-12)
    np.testing.assert_array_equal(x, bin_centres(want.edges))
    data = ex.validation_bytes()
    windows = np.stack([data[s:s + 513] for s in run.starts])
    np.testing.assert_allclose(y, oracle_bins(ck, windows, want.edges), rtol=1e-5)
    assert context_lines(fig) == [256.0]  # the periodic sample's training context
    live = at.table[1].value
    np.testing.assert_allclose(live["0-512"].to_numpy(dtype=float), run.table().bits[:1], atol=5e-5)


def test_the_sidebar_text_with_a_second_checkpoint():
    at = start(SHORT_TEXT, "caracal-periodic")
    at.switch_page(PAGE).run()
    at.radio("ex_source").set_value("the sidebar's text").run()
    at.toggle("ex_second").set_value(True).run()
    at.selectbox("ex2_select").set_value("caracal-hybrid-shakespeare").run()
    n = len(SHORT_TEXT.encode()) - 1
    assert at.select_slider("ex_length").options == [f"{n:,}"]  # the text holds one window length
    at.button("ex_for_button").click().run()
    assert not at.exception and not errors(at), (at.exception, errors(at))
    fig = figure(at, "ex_fig_live")
    lines = plotted(fig)
    for name in ("caracal-periodic", "caracal-hybrid-shakespeare"):
        ck = load_sample(name)
        want = ex.extrapolate(ck, SHORT_TEXT, length=n, n_windows=4).curve(ex.curve_edges(n))
        np.testing.assert_allclose(lines[ck.name][1], want.bits, rtol=1e-12)
        ids = np.frombuffer(SHORT_TEXT.encode(), dtype=np.uint8)[None, :]
        np.testing.assert_allclose(lines[ck.name][1], oracle_bins(ck, ids, want.edges), rtol=1e-5)
    assert context_lines(fig) == [256.0, 512.0]
    assert any("1 distinct window" in c.value for c in at.caption)
