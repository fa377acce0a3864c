"""The Reach page (pages/9_reach.py) and the window of the O(L^2) views, through AppTest with a
16,384-byte text (the CPU's longest): every head's curves, the window's bytes named, the slider
moving the window and travelling in the URL."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from caracal_viz.reach import influence_by_lag, text_reach
from caracal_viz.text import max_text_bytes
from caracal_viz.influence import token_influence
from caracal_viz.windows import text_window
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample
from tests.test_app import errors, server_like_navigation, start  # noqa: F401 -- the fixture runs app.py
from tests.test_windows import LONG

PAGE = "pages/9_reach.py"


def figure(at, key):
    return json.loads(next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id).proto.spec)


def arr(v):
    """A Plotly JSON array: a list, or numpy's typed array as base64 ({"dtype", "bdata"})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def long_app():
    from streamlit.testing.v1 import AppTest  # noqa: F401 -- start() builds it

    assert len(LONG.encode()) == 16384 == max_text_bytes("cpu")
    at = start(LONG, sample="caracal-long")
    at.switch_page(PAGE).run()
    return at


def test_reach_page_draws_every_heads_kernels_at_16384_bytes(long_app):
    at = long_app
    assert not at.exception and not errors(at), errors(at)
    ck = load_sample("caracal-long")
    n = ck.config.n_layers * ck.config.n_heads
    figs = charts(at)
    cum = next(f for f in figs if "cumulative kernel energy" in f["layout"]["title"]["text"])
    lines = [d for d in cum["data"] if d.get("mode") == "lines"]
    assert len(lines) == n
    want = [r for b in text_reach(ck, forward_pass(ck, LONG)) for r in b.combined]  # the default: the combined kernel
    for d, r in zip(lines, want):
        x = arr(d["x"]).astype(np.int64)
        assert len(x) <= 410 and x[-1] == 16383  # decimated, to the last lag
        np.testing.assert_allclose(arr(d["y"]), r.cumulative[x], rtol=1e-9)
        assert (r.lag50 < 1 or r.lag50 in x) and r.lag90 in x
    assert sum(len(json.dumps(f)) for f in figs) < 1_000_000  # small figures whatever the length
    info = " ".join(i.value for i in at.info)
    w = text_window(LONG, 256)
    assert w.label in info and w.end == 16384


def test_the_window_slider_moves_the_window_and_the_url_keeps_it(long_app):
    at = long_app
    at.slider("win_end").set_value(5000).run()
    assert not at.exception and not errors(at)
    w = text_window(LONG, 256, 5000)
    assert any(w.label in i.value for i in at.info)
    assert at.query_params["win"] == ["5000"] or at.query_params["win"] == "5000"
    by_lag = figure(at, "re_fig_by_lag") if any("re_fig_by_lag" in (c.proto.id or "") for c in at.get("plotly_chart")) \
        else next(f for f in charts(at) if "influence by distance" in f["layout"]["title"]["text"])
    want = influence_by_lag(token_influence(load_sample("caracal-long"), w.text).values)
    x = arr(by_lag["data"][0]["x"]).astype(np.int64)
    np.testing.assert_allclose(arr(by_lag["data"][0]["y"]), want.mean[x], rtol=1e-6)
    at.switch_page("pages/6_token_influence.py").run()  # the same window on the influence page
    assert not at.exception and not errors(at), errors(at)
    assert any(w.label in i.value for i in at.info) and at.slider("win_end").value == 5000
