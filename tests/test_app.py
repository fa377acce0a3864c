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
from tests.conftest import CAUSAL_SAMPLES, ROOT, SAMPLE_NAMES, load_sample, sample_path
from tests.security_helpers import server_pages_manager

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
    https://github.com/streamlit/streamlit/pull/14217). tests.security_helpers.server_pages_manager
    applies that switch."""
    monkeypatch.setattr(app_test_module, "PagesManager", server_pages_manager())


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


def comparable(a: str, b: str) -> bool:
    """compare_checkpoints needs the same blocks, mixers, heads and context (its filter grids)."""
    ca, cb = load_sample(a).config, load_sample(b).config
    return (ca.mixer, ca.n_layers, ca.n_heads, ca.context) == (cb.mixer, cb.n_layers, cb.n_heads, cb.context)


def expected_figures(sample: str, page: str, sample_b: str) -> int:
    """Figures each page draws: overview 2 (loss per byte, top-k); filters 5 (the grid of every
    block and head, heatmap, head detail, kernel, and the data kernel (mhf) or the adapted filter
    (fftnet)); gates 3 (summary, map, passed energy); Parseval 4 (identity, energy by band, gain,
    ESD); compare 2 filters + 2 gate maps, plus the difference when the two can be compared head
    by head."""
    return {"pages/1_overview.py": 2, "pages/2_spectral_filters.py": 5, "pages/3_modrelu_gates.py": 3,
            "pages/5_parseval_energy.py": 4, "pages/7_compare.py": 4 + comparable(sample, sample_b)}[page]


def in_order(node, types=("success", "warning")) -> list:
    """The elements of the given types under a node, in page order."""
    if getattr(node, "type", None) in types:
        return [node]
    children = getattr(node, "children", None) or {}
    return [e for k in sorted(children) for e in in_order(children[k], types)]


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_every_page_with_each_sample(sample):
    text = PERIODIC_TEXT if sample == "caracal-periodic" else SHORT_TEXT
    at = start(text, sample)
    causal = sample in CAUSAL_SAMPLES
    assert ("**causal**: yes" in model_card(at)) == causal
    sample_b = "caracal-circular-leaky" if sample != "caracal-circular-leaky" else "caracal-shakespeare"
    for page in MY_PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert errors(at) == [], (page, errors(at))
        assert n_figures(at) == expected_figures(sample, page, sample_b), page
        # the choice survives the page change
        assert at.selectbox("ck_select").value == sample
        assert at.session_state["text"] == text
        if page == "pages/5_parseval_energy.py":
            assert any(s.value.startswith("Parseval holds") for s in at.success)
        if page == "pages/3_modrelu_gates.py":
            assert any("dead heads" in a.value.lower() for a in (*at.success, *at.warning))
        if page == "pages/7_compare.py":
            assert at.selectbox("cmp_select").value == sample_b
            assert verdicts(at) == ["green" if s in CAUSAL_SAMPLES else "red" for s in (sample, sample_b)]
            assert any(s.startswith("Head by head") for s in (h.value for h in at.subheader))
            assert comparable(sample, sample_b) != any("cannot be compared" in w.value for w in at.warning)


def verdicts(at: AppTest) -> list[str]:
    """The colours of the certificate verdicts on the page, in order (ui.show_certificate)."""
    lines = [e.value for e in in_order(at.main, ("markdown",)) if isinstance(e.value, str) and e.value.startswith(":")]
    return [v[1:].split("-background[")[0] for v in lines if "-background[:material/" in v.split("]")[0] + "]"]


def _assert_kept(at: AppTest, sample: str, text: str) -> None:
    assert at.selectbox("ck_select").value == sample
    assert at.session_state["text"] == text
    assert at.text_area("text_box").value == text
    assert "**sha256**: " in model_card(at)


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

    at.get("file_uploader")[0].set_value(None)  # removing the bad file removes its error
    at.run()
    assert errors(at) == []
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

    at.get("file_uploader")[1].set_value(("ok.txt", b"To be, or not to be\n", "text/plain"))
    at.run()
    assert errors(at) == []
    assert at.session_state["text"] == "To be, or not to be\n"


def greedy_continuation(sample: str, prompt: str, n: int) -> str:
    """Oracle: n greedy bytes by re-running the full forward pass each step (no incremental
    decoding, no FFT caching), decoded as UTF-8."""
    import torch

    ck = load_sample(sample)
    ids = list(prompt.encode("utf-8"))
    with torch.no_grad():
        for _ in range(n):
            logits = ck.model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return bytes(ids[len(prompt.encode("utf-8")):]).decode("utf-8", errors="replace")


def test_generation_streams_the_greedy_continuation():
    prompt = "KING:\nWhat say"
    at = start(prompt)
    assert at.text_area("gen_prompt").value == prompt  # the prompt follows the analysed text
    at.slider("gen_n").set_value(16)
    at.slider("gen_temp").set_value(0.0)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and errors(at) == []
    shown_prompt, generated = at.session_state["gen_result"]
    assert shown_prompt == prompt
    assert generated == greedy_continuation("caracal-shakespeare", prompt, 16)
    # a rerun (another widget) keeps the continuation on screen
    at.slider("ov_pos").set_value(3).run()
    assert at.session_state["gen_result"][1] == generated


def test_compare_second_checkpoint_upload():
    at = start(SHORT_TEXT)
    at.switch_page("pages/7_compare.py").run()
    uploaders = at.main.get("file_uploader")
    assert len(uploaders) == 1
    uploaders[0].set_value(("junk.pt", b"PK\x03\x04 not really a zip", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(errors(at)) == 1 and "junk.pt" in errors(at)[0]
    assert at.selectbox("cmp_select").value == "caracal-circular-leaky"
    assert at.selectbox("ck_select").value == "caracal-shakespeare"

    at.main.get("file_uploader")[0].set_value(
        ("periodic.safetensors", sample_path("caracal-periodic").read_bytes(), "application/octet-stream"))
    at.run()
    assert not at.exception and errors(at) == []
    assert at.selectbox("cmp_select").value == "Uploaded: periodic.safetensors"
    # 6 blocks of 160 wide against 2 of 64: shown side by side, not head by head
    assert any("cannot be compared" in w.value for w in at.warning)
    assert verdicts(at) == ["green", "green"]


def is_periodic(text: str) -> bool:
    """Some period of the periodic sample's training data repeats across the start of the text."""
    return any(len(text) >= 4 * p and text[: 3 * p] == text[p: 4 * p] for p in (3, 8, 20))


def test_example_text_follows_the_checkpoint_and_the_button_restores_it():
    at = start(text=None)
    assert not is_periodic(at.session_state["text"])
    at.selectbox("ck_select").set_value("caracal-periodic").run()
    assert is_periodic(at.session_state["text"])  # an untouched example follows the checkpoint

    at.text_area("text_box").input("zzz").run()
    at.selectbox("ck_select").set_value("caracal-shakespeare").run()
    assert at.session_state["text"] == "zzz"  # the user's own text is never replaced
    at.selectbox("ck_select").set_value("caracal-periodic").run()
    next(b for b in at.button if b.label == "Example text").click().run()
    assert is_periodic(at.session_state["text"]) and at.session_state["text"] == at.text_area("text_box").value


def test_page_draws_the_sidebar_when_app_py_did_not_run(monkeypatch):
    """The server's first request can be a deep link, which Streamlit runs in its legacy pages/
    mode (the page file without app.py): the page must still show the shared sidebar."""
    monkeypatch.setattr(app_test_module, "PagesManager", PagesManager)  # AppTest's own behaviour
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.switch_page("pages/3_modrelu_gates.py").run()  # the first run of a fresh session
    assert not at.exception and errors(at) == []
    assert at.title[0].value == "modReLU gates"
    assert "Caracal MHF (pad)" in model_card(at)
    assert n_figures(at) == 3


def test_generation_with_an_over_long_prompt_shows_an_error():
    at = start(SHORT_TEXT)
    at.text_area("gen_prompt").input("p" * (max_text_bytes() + 1))
    at.slider("gen_n").set_value(16)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    assert any("over the limit" in e for e in errors(at))
    assert "gen_result" not in at.session_state  # nothing was generated
    assert at.session_state["text"] == SHORT_TEXT


def test_error_messages_are_one_plain_line():
    import torch

    from caracal_viz.app_support import error_message
    from caracal_viz.checkpoint import CheckpointError

    oom = error_message(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"))
    assert oom.startswith("out of memory") and "shorten the text" in oom and "\n" not in oom
    message = "'x.pt' is truncated: re-download it"
    assert error_message(CheckpointError(message)) == message
    other = error_message(KeyError("blocks.9"))
    assert other.startswith("unexpected KeyError") and "\n" not in other


def test_a_one_byte_text_works_on_every_page():
    at = start("x")
    for page in MY_PAGES:
        at.switch_page(page).run()
        assert not at.exception and errors(at) == [], page
        assert n_figures(at) >= 1, page


@pytest.mark.parametrize("sample", ["caracal-hybrid-shakespeare", "transformer-shakespeare", "caracal-long"])
def test_the_comparison_samples_draw_every_page(sample):
    """Issue 14's samples (attention blocks, a context-2,048 model) are in the picker; every page draws
    without an error or an exception (page 6 raised AttributeError on the Transformer's attention blocks,
    which have no Fourier mixing matrix)."""
    from caracal_viz.app_support import PAGE_FILES
    at = start(SHORT_TEXT, sample)
    assert at.selectbox("ck_select").value == sample
    for page, _ in PAGE_FILES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert errors(at) == [], (page, errors(at))
