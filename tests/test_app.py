"""The Streamlit app through `streamlit.testing.v1.AppTest`: app.py with its shared sidebar, every
page of Engineer C (overview, spectral filters, modReLU gates, Parseval energy, compare) with each
shipped checkpoint, and the error paths (bad uploads, empty and over-long text).

AppTest runs the real app.py, the real library and the real checkpoints; only the browser is
missing (tests/test_e2e_browser.py drives that). Texts are short to keep the suite fast.
"""

from __future__ import annotations

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from caracal_viz.text import max_text_bytes
from tests.conftest import ROOT, SAMPLE_NAMES, sample_path

APP = str(ROOT / "app.py")
TIMEOUT_S = 120
SHORT_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
PERIODIC_TEXT = "abc" * 8 + "qwertyui" * 3
MY_PAGES = ("pages/1_overview.py", "pages/2_spectral_filters.py", "pages/3_modrelu_gates.py",
            "pages/5_parseval_energy.py", "pages/7_compare.py")


@pytest.fixture(autouse=True)
def server_like_navigation(monkeypatch):
    """Run app.py on every AppTest run, as the live server does.

    AppTest re-detects the pages/ folder before each run and, finding one, runs the current page
    file alone (Streamlit's legacy multipage mode). The server does that only until app.py first
    calls st.navigation, which switches the process to running app.py every time (see
    https://github.com/streamlit/streamlit/pull/14217). This subclass applies that switch."""

    class ServerPagesManager(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test_module, "PagesManager", ServerPagesManager)


def start(text: str | None = SHORT_TEXT, sample: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception, at.exception
    if sample is not None:
        at.selectbox("ck_select").set_value(sample).run()
    if text is not None:
        at.text_area("text_box").input(text).run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def n_figures(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def model_card(at: AppTest) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def test_first_screen_shows_shakespeare_and_example_text():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception, at.exception
    assert errors(at) == []
    assert at.selectbox("ck_select").value == "caracal-shakespeare"
    assert at.text_area("text_box").value.strip()
    card = model_card(at)
    for fact in ("Caracal MHF (pad)", "**layers**: 6", "**causal**: yes", "**training context**: 512"):
        assert fact in card
    assert at.title[0].value == "Overview"
    assert n_figures(at) >= 1


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_every_page_with_each_sample(sample):
    at = start(PERIODIC_TEXT if sample == "caracal-periodic" else SHORT_TEXT, sample)
    causal = sample in ("caracal-shakespeare", "caracal-periodic")
    assert ("**causal**: yes" in model_card(at)) == causal
    for page in MY_PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert errors(at) == [], (page, errors(at))
        assert n_figures(at) >= 1, page
        # the choice survives the page change
        assert at.selectbox("ck_select").value == sample
        assert at.session_state["text"] == (PERIODIC_TEXT if sample == "caracal-periodic" else SHORT_TEXT)


def _assert_kept(at: AppTest, sample: str, text: str) -> None:
    assert at.selectbox("ck_select").value == sample
    assert at.session_state["text"] == text
    assert at.text_area("text_box").value == text
    assert f"**sha256**: " in model_card(at)


def test_bad_checkpoint_uploads_keep_checkpoint_and_text():
    at = start(SHORT_TEXT, "caracal-periodic")
    card = model_card(at)
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("notes.safetensors", b"these are my notes, not weights\n" * 4, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(errors(at)) == 1 and "notes.safetensors" in errors(at)[0]
    _assert_kept(at, "caracal-periodic", SHORT_TEXT)
    assert model_card(at) == card

    data = sample_path("caracal-periodic").read_bytes()
    at.get("file_uploader")[0].set_value(("cut.safetensors", data[: len(data) // 3], "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(errors(at)) == 1 and "truncated" in errors(at)[0]
    _assert_kept(at, "caracal-periodic", SHORT_TEXT)

    at.get("file_uploader")[0].set_value(("mine.safetensors", data, "application/octet-stream"))
    at.run()
    assert errors(at) == []
    assert at.selectbox("ck_select").value == "Uploaded: mine.safetensors"
    assert "Caracal MHF (pad)" in model_card(at)
    at.switch_page("pages/2_spectral_filters.py").run()
    assert not at.exception and errors(at) == []
    assert at.selectbox("ck_select").value == "Uploaded: mine.safetensors"


def test_empty_and_huge_text_show_errors_and_keep_the_last_text():
    at = start(SHORT_TEXT)
    at.text_area("text_box").input("").run()
    assert not at.exception
    assert any("empty" in e for e in errors(at))
    assert at.session_state["text"] == SHORT_TEXT
    assert n_figures(at) >= 1  # the page still shows the last valid text

    huge = "x" * (max_text_bytes() + 1)
    at.text_area("text_box").input(huge).run()
    assert not at.exception
    assert any(f"over the limit of {max_text_bytes()} bytes" in e for e in errors(at))
    assert at.session_state["text"] == SHORT_TEXT

    at.text_area("text_box").input(SHORT_TEXT).run()
    assert errors(at) == []


def test_text_file_upload():
    at = start(SHORT_TEXT)
    text_uploader = at.get("file_uploader")[1]
    text_uploader.set_value(("big.txt", b"y" * (max_text_bytes() + 10), "text/plain"))
    at.run()
    assert any("over the limit" in e for e in errors(at))
    assert at.session_state["text"] == SHORT_TEXT

    at.get("file_uploader")[1].set_value(("latin1.txt", "caf\u00e9".encode("latin-1"), "text/plain"))
    at.run()
    assert any("not valid UTF-8" in e for e in errors(at))
    assert at.session_state["text"] == SHORT_TEXT

    at.get("file_uploader")[1].set_value(("ok.txt", "To be, or not to be\n".encode(), "text/plain"))
    at.run()
    assert errors(at) == []
    assert at.session_state["text"] == "To be, or not to be\n"
