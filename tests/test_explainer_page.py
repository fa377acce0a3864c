"""The causal-trick and token-influence pages under Streamlit's AppTest, with the real shipped
checkpoints: no exception, the right causality verdict, and the widgets change what is shown.
Expected numbers come from independent oracles (np.convolve, brute-force loops)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from caracal_viz import explainer
from caracal_viz.causality import causality_report
from tests.conftest import CAUSAL_SAMPLES, LEAKY_SAMPLES, ROOT, SAMPLE_NAMES, load_sample
from tests.test_app import in_order, verdicts

CAUSAL_PAGE = "pages/4_causal_trick.py"
INFLUENCE_PAGE = "pages/6_token_influence.py"
TIMEOUT_S = 240


def open_page(page: str, sample: str, text: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    at.session_state["ck_select"] = sample
    if text is not None:
        at.session_state["text_box"] = text
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_array(a) -> np.ndarray:
    """An array of a figure's JSON: a list, or Plotly's typed array (base64 bytes, dtype, shape)."""
    if isinstance(a, dict):
        shape = [int(n) for n in str(a.get("shape", -1)).split(",")]
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"]).reshape(shape)
    return np.asarray(a)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_causal_trick_page_gives_the_right_verdict(sample):
    at = open_page(CAUSAL_PAGE, sample)
    assert not at.error, [e.value for e in at.error]
    if sample in CAUSAL_SAMPLES:
        assert verdicts(at) == ["green"]
    else:
        assert sample in LEAKY_SAMPLES
        assert verdicts(at) == ["red"]
    # the certificate's numbers are the ones the CLI and every other page show (one function, one cache)
    cert = causality_report(load_sample(sample))
    line = next(m.value for m in in_order(at.main, ("markdown",)) if m.value.startswith(f":{verdicts(at)[0]}-"))
    assert cert.leak_text in line and cert.headline.split(" (")[0] in line
    assert (f"up to {cert.model_leak:.3g} " in line) == (cert.model_leak > 0)  # a leak of 0 is said in words


def oracle_leak(x: np.ndarray, h: np.ndarray, n_fft: int) -> tuple[float, int]:
    """(leaked energy fraction, number of outputs reading a later input) by brute force."""
    L = len(x)
    exact = np.convolve(x, h)[:L]
    y = np.zeros(L)
    reads_future = np.zeros(L, bool)
    for j in range(L):
        for m in range(len(h)):
            t = (j + m) % n_fft
            if t < L:
                y[t] += x[j] * h[m]
                reads_future[t] |= j > t and h[m] != 0
    leak = y - exact
    return float(leak @ leak / (exact @ exact)), int(reads_future.sum())


def test_causal_trick_sliders_move_the_leak_readout():
    at = open_page(CAUSAL_PAGE, "caracal-periodic")
    L, taps = at.select_slider(key="ct_L").value, at.slider(key="ct_taps").value
    x = explainer.toy_signal(at.radio(key="ct_signal").value, L)
    h = explainer.toy_filter(taps, at.slider(key="ct_decay").value, at.slider(key="ct_delay").value,
                             at.slider(key="ct_osc").value)

    assert at.slider(key="ct_n").value == L  # no padding to start with
    frac, count = oracle_leak(x, h, L)
    assert frac > 0.01
    assert metric(at, "Leaked energy") == f"{100 * frac:.3g} %"
    # ask first, reveal after (issue 13 item 7): the count and the smallest safe N wait for an answer
    assert metric(at, "Outputs that read the future") == "answer first"
    assert metric(at, "Smallest N with no leak") == "answer first"
    at.button(key="ct_show").click().run()
    assert metric(at, "Outputs that read the future") == f"{count} of {L}"
    assert any(i.value.startswith(f"The answer is {count}.") for i in at.info)

    n_mid = L + taps // 2
    at.slider(key="ct_n").set_value(n_mid).run()
    frac_mid, count_mid = oracle_leak(x, h, n_mid)
    assert 0 < frac_mid < frac and 0 < count_mid < count
    assert metric(at, "Leaked energy") == f"{100 * frac_mid:.3g} %"

    # predict, then check: the page agrees with the brute-force count
    assert metric(at, "Outputs that read the future") == "answer first"  # a new N asks again
    at.number_input(key="ct_guess").set_value(count_mid).run()
    assert metric(at, "Outputs that read the future") == "answer first"  # typing is not answering
    at.button(key="ct_check").click().run()
    assert any(s.value.startswith(f"Right: {count_mid}.") for s in at.success)
    assert metric(at, "Outputs that read the future") == f"{count_mid} of {L}"
    at.number_input(key="ct_guess").set_value(count_mid + 1).run()
    at.button(key="ct_check").click().run()
    assert any(w.value.startswith(f"Not quite: the answer is {count_mid}.") for w in at.warning)

    # the leak is gone exactly at N = L + K - 1, not one earlier
    at.slider(key="ct_n").set_value(L + taps - 2).run()
    assert metric(at, "Leaked energy") != "0 (exactly)"
    at.slider(key="ct_n").set_value(L + taps - 1).run()
    assert oracle_leak(x, h, L + taps - 1) == (0.0, 0)
    assert metric(at, "Leaked energy") == "0 (exactly)"
    at.button(key="ct_show").click().run()
    assert metric(at, "Outputs that read the future") == f"0 of {L}"

    # a preset sets the filter; a shorter filter needs less padding
    preset = next(name for name, p in explainer.PRESETS.items() if p["taps"] < taps)
    at.selectbox(key="ct_preset").set_value(preset).run()
    assert at.slider(key="ct_taps").value == explainer.PRESETS[preset]["taps"]
    at.button(key="ct_show").click().run()
    assert metric(at, "Smallest N with no leak") == f"L + K − 1 = {L + explainer.PRESETS[preset]['taps'] - 1}"
    assert not at.exception


SHORT_TEXT = "abcabcabcabc qwertyuiqwertyui"


def test_token_influence_page_on_a_causal_model():
    at = open_page(INFLUENCE_PAGE, "caracal-periodic", SHORT_TEXT)
    assert not at.error and not at.warning, [e.value for e in [*at.error, *at.warning]]
    L = len(SHORT_TEXT.encode())
    pos = at.select_slider(key="ti_pos")
    assert pos.value == (L - 1) // 2
    before = next(c.value for c in at.caption if "Strongest:" in c.value)
    # a causal model's strongest influences all lie at or before the prediction's own position
    assert "in the future" not in before
    pos.set_value(L - 2).run()
    after = next(c.value for c in at.caption if "Strongest:" in c.value)
    assert after != before and "in the future" not in after
    at.selectbox(key="ti_layer").set_value(1).run()
    at.selectbox(key="ti_mix_layer").set_value(1).run()
    assert not at.exception and not at.error
    mixing = next(c.value for c in at.caption if c.value.startswith("Largest entry above the diagonal"))
    assert all(part.endswith(": 0") for part in mixing.split(": ", 1)[1].split(". ")[0].split(", "))


def test_token_influence_page_flags_a_model_that_reads_the_future():
    at = open_page(INFLUENCE_PAGE, "fftnet-shakespeare", SHORT_TEXT)
    assert not at.error
    assert any("this checkpoint is not causal" in w.value for w in at.warning)


def test_token_influence_page_shows_a_named_window_of_long_texts(monkeypatch):
    # the map costs one backward pass per byte: past the window size the page analyses a window of
    # whole characters (default: the text's end), says which bytes, and a slider moves it
    from caracal_viz.windows import text_window

    monkeypatch.setenv("CARACAL_MAX_INFLUENCE_BYTES", "64")
    text = "xyz" * 40 + "a" * 63 + "é"  # 186 bytes; the 2-byte 'é' ends the text
    at = open_page(INFLUENCE_PAGE, "caracal-periodic", text)
    assert not at.exception and not at.error
    w = text_window(text, 64)
    assert w.end == len(text.encode()) and w.end - w.start <= 64
    infos = [i.value for i in at.info if w.label in i.value]
    assert len(infos) == 1 and "read as a text of its own" in infos[0]
    at.slider("win_end").set_value(100).run()
    assert not at.exception and not at.error
    assert any(text_window(text, 64, 100).label in i.value for i in at.info)
    assert len(at.get("plotly_chart")) >= 2


def test_token_influence_page_offers_no_giant_csv(monkeypatch):
    # one CSV row per mixing-matrix entry would be gigabytes at 4,096 bytes: past MAX_CSV_ENTRIES the
    # page says so and keeps the NPZ
    monkeypatch.setenv("CARACAL_MAX_INFLUENCE_BYTES", "1100")
    monkeypatch.setenv("CARACAL_WINDOW_BYTES", "1100")  # the CPU's window is 256 bytes
    text = "abcdefgh" * 140
    at = open_page(INFLUENCE_PAGE, "caracal-periodic", text)
    assert not at.exception and not at.error
    assert any("too many for a CSV" in c.value and "use the NPZ" in c.value for c in at.caption)
    # the map of a 1,100-byte window is drawn as 3 x 3 block maxima (at most 512 a side), and the page
    # says what a cell is
    drawn = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert plotly_array(drawn["z"]).shape == (-(-1100 // 3),) * 2
    np.testing.assert_array_equal(plotly_array(drawn["x"])[:2], [1, 4])  # block centres
    assert any("a block of 3 × 3" in c.value for c in at.caption)
    small = open_page(INFLUENCE_PAGE, "caracal-periodic", SHORT_TEXT)
    assert not any("too many for a CSV" in c.value for c in small.caption)
    assert not any("a block of" in c.value for c in small.caption)
    drawn = json.loads(small.get("plotly_chart")[0].proto.spec)["data"][0]
    assert plotly_array(drawn["z"]).shape == (len(SHORT_TEXT),) * 2
