"""The Interventions page (pages/8_interventions.py) through AppTest with every shipped sample:
its figures and numbers against the library's, a sweep cell applied as the intervention, and bad
requests (a band outside 0..0.5, a head out of range, a one-byte text) answered with one line
while the page keeps its state."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from caracal_viz import interventions as iv
from tests.conftest import CAUSAL_SAMPLES, SAMPLE_NAMES, load_sample
from tests.test_app import APP, PERIODIC_TEXT, SHORT_TEXT, TIMEOUT_S, errors, n_figures, server_like_navigation  # noqa: F401

PAGE = "pages/8_interventions.py"


def open_page(sample: str, text: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.selectbox("ck_select").set_value(sample).run()
    at.text_area("text_box").input(text).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def run_long_parts(at: AppTest) -> None:
    """Press the buttons that run the sweep and the activation patching (a first visit runs neither)."""
    for key in ("iv_sweep_for_button", "iv_patch_for_button"):
        at.button(key).click().run()
        assert not at.exception, at.exception


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_the_page_with_each_sample(sample):
    text = PERIODIC_TEXT if sample == "caracal-periodic" else SHORT_TEXT
    at = open_page(sample, text)
    ck = load_sample(sample)
    assert errors(at) == [], errors(at)
    assert n_figures(at) == 2  # loss change, top-k: the sweep and patching wait for their buttons
    assert "iv_sweep_last" not in at.session_state
    run_long_parts(at)
    assert n_figures(at) == 4  # loss change, top-k, sweep, patching
    layer = at.number_input("iv_layer").value
    want = iv.ablate_head(ck, text, layer, 0)
    assert metric(at, "Bits/byte before") == f"{want.bits_before:.3f}"
    assert metric(at, "Bits/byte after") == f"{want.bits_after:.3f}"
    # a band in the learned spectrum
    at.radio("iv_kind").set_value("Filter a band").run()
    at.text_input("iv_band_text").input("0.1 0.2").run()
    assert errors(at) == [], errors(at)
    band = iv.filter_band(ck, text, layer, 0, (0.1, 0.2))
    assert metric(at, "Bits/byte after") == f"{band.bits_after:.3f}"
    if sample in CAUSAL_SAMPLES:  # the circular switch leaks, and the page says so
        at.radio("iv_kind").set_value("Switch a block to circular").run()
        assert errors(at) == [] and metric(at, "Causal after") == "no"
        assert any("leak" in m.value.lower() for m in at.markdown)  # the certificate's verdict line
    assert at.selectbox("ck_select").value == sample and at.session_state["text"] == text


def test_a_sweep_cell_becomes_the_intervention():
    at = open_page("caracal-periodic", PERIODIC_TEXT)
    run_long_parts(at)
    sw = at.session_state["iv_sweep_last"]
    # what a click on the cell (block 1, head 2, band 5) sends: the pick layer's customdata
    at.session_state["iv_layer"], at.session_state["iv_head"] = 1, 2
    at.radio("iv_kind").set_value("Filter a band").run()
    lo, hi = sw.band_edges[5], sw.band_edges[6]
    inside = [f / 512 for f in range(257) if lo <= f / 512 <= hi]
    at.slider("iv_band").set_range(inside[0], inside[-1]).run()
    assert errors(at) == []
    after = float(next(m.value for m in at.metric if m.label == "Bits/byte after"))
    before = float(next(m.value for m in at.metric if m.label == "Bits/byte before"))
    assert after - before == pytest.approx(sw.band_delta[1, 2, 5], abs=2e-4)


def test_bad_requests_get_one_line_and_keep_the_page():
    at = open_page("caracal-periodic", PERIODIC_TEXT)
    run_long_parts(at)
    at.number_input("iv_head").set_value(9).run()
    assert len(errors(at)) == 1 and "head must be an integer from 0 to 3" in errors(at)[0]
    assert "\n" not in errors(at)[0]
    assert n_figures(at) == 2  # the sweep and patching stay
    at.number_input("iv_head").set_value(1).run()
    at.radio("iv_kind").set_value("Filter a band").run()
    at.text_input("iv_band_text").input("0.2 0.9").run()
    assert len(errors(at)) == 1 and "outside 0..0.5" in errors(at)[0]
    assert at.number_input("iv_head").value == 1 and at.radio("iv_kind").value == "Filter a band"
    at.text_input("iv_band_text").input("").run()
    assert errors(at) == []
    at.number_input("iv_layer").set_value(0).run()
    at.text_input("iv_band_text").input("T 1 3").run()  # periods under 2 tokens: frequencies over 0.5
    assert len(errors(at)) == 1 and "\n" not in errors(at)[0], errors(at)
    at.text_input("iv_band_text").input("0.1 0.2").run()
    assert errors(at) == []
    at.text_area("text_box").input("a").run()
    assert not at.exception
    assert errors(at) and all("one byte long" in e and "\n" not in e for e in errors(at))
    # the page keeps every choice, and a valid text brings the same intervention back
    assert at.radio("iv_kind").value == "Filter a band"
    assert (at.number_input("iv_layer").value, at.number_input("iv_head").value) == (0, 1)
    assert at.text_input("iv_band_text").value == "0.1 0.2"
    at.text_area("text_box").input(PERIODIC_TEXT).run()
    assert errors(at) == []
    want = iv.filter_band(load_sample("caracal-periodic"), PERIODIC_TEXT, 0, 1, (0.1, 0.2))
    assert metric(at, "Bits/byte after") == f"{want.bits_after:.3f}"
