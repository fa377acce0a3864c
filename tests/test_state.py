"""State: a failed upload or a failed analysis leaves the previous checkpoint, text and settings
in place (the real app through AppTest, real checkpoints, real hostile files)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, sample_path
from tests.security_helpers import (RunsShell, checkpoint_bytes, pt_fields, server_like_navigation, small_model,
                                    torch_save_bytes)

__all__ = ["server_like_navigation"]
pytestmark = pytest.mark.usefixtures("server_like_navigation")
TEXT = "abcabcabcabc qwertyuiqwertyui"
OCTET = "application/octet-stream"


def start() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def card(at: AppTest) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def snapshot(at: AppTest) -> dict:
    """What the user set up: checkpoint, text (box and analysed), device, model card."""
    return {"ck": at.selectbox("ck_select").value, "text_box": at.text_area("text_box").value,
            "text": at.session_state["text"], "device": at.selectbox("device").value, "card": card(at)}


def test_failed_uploads_keep_the_previous_upload_text_and_settings(tmp_path):
    at = start()
    at.selectbox("device").set_value("cpu").run()
    good = checkpoint_bytes(small_model(seed=5), ".safetensors", tmp_path)
    at.get("file_uploader")[0].set_value(("mine.safetensors", good, OCTET)).run()
    at.text_area("text_box").input(TEXT).run()
    assert not at.exception and errors(at) == []
    before = snapshot(at)
    assert before["ck"] == "Uploaded: mine.safetensors" and before["text"] == TEXT and before["device"] == "cpu"

    marker = tmp_path / "ran"
    hostile = torch_save_bytes({**pt_fields(small_model()), "training": RunsShell(marker)})
    periodic = sample_path("caracal-periodic").read_bytes()
    bad_uploads = [
        ("evil.pt", hostile, "code"),
        ("cut.safetensors", periodic[: len(periodic) // 2], "truncated"),
        ("notes.pt", b"not a checkpoint at all", "not a PyTorch checkpoint archive"),
    ]  # a file with NaN weights is not refused: it loads flagged (tests/test_certificate_everywhere.py)
    for name, data, why in bad_uploads:
        at.get("file_uploader")[0].set_value((name, data, OCTET)).run()
        assert not marker.exists(), f"{name}: the app ran code from the upload"
        assert not at.exception, name
        assert len(errors(at)) == 1 and name in errors(at)[0] and why in errors(at)[0], (name, errors(at))
        assert snapshot(at) == before, name
    # the kept upload is still the one analysed, on every page
    at.switch_page("pages/2_spectral_filters.py").run()
    assert not at.exception and snapshot(at)["ck"] == before["ck"] and snapshot(at)["card"] == before["card"]


def test_upload_over_the_size_limit_keeps_everything(monkeypatch):
    at = start()
    at.selectbox("ck_select").set_value("caracal-periodic").run()
    at.text_area("text_box").input(TEXT).run()
    before = snapshot(at)
    monkeypatch.setenv("CARACAL_MAX_CHECKPOINT_MB", "1")
    at.get("file_uploader")[0].set_value(
        ("shakespeare.safetensors", sample_path("caracal-shakespeare").read_bytes(), OCTET)).run()
    assert not at.exception
    assert len(errors(at)) == 1 and "over the 1 MB limit" in errors(at)[0]
    assert snapshot(at) == before


def test_failed_text_upload_keeps_the_text():
    at = start()
    at.text_area("text_box").input(TEXT).run()
    before = snapshot(at)
    for name, data in [("latin1.txt", "caf\u00e9".encode("latin-1")), ("empty.txt", b""),
                       ("big.txt", b"a" * 100_000)]:
        at.get("file_uploader")[1].set_value((name, data, "text/plain")).run()
        assert not at.exception, name
        assert any(name in e for e in errors(at)), (name, errors(at))
        assert snapshot(at) == before, name


def test_failed_analysis_keeps_checkpoint_text_and_page_settings(monkeypatch):
    """An analysis that fails (here every analysis refuses the analysed text, because the text
    limit was lowered under the running app and the cache emptied) shows one error line; once
    it works again the checkpoint, the text and the page's own settings (which layer to
    differentiate, and the mixing layer, a widget the failed run never reached) are as they were."""
    from caracal_viz.app_support import caching

    at = start()
    at.selectbox("ck_select").set_value("caracal-periodic").run()
    at.text_area("text_box").input(TEXT).run()
    at.switch_page("pages/6_token_influence.py").run()
    assert not at.exception and errors(at) == []
    at.selectbox("ti_layer").set_value(1).run()
    at.selectbox("ti_mix_layer").set_value(1).run()
    assert not at.exception and errors(at) == []
    before = snapshot(at)

    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", str(len(TEXT) - 1))
    caching._cached_analysis.clear()
    at.run()
    assert not at.exception
    assert any(f"over the limit of {len(TEXT) - 1} bytes" in e for e in errors(at)), errors(at)
    assert len(at.get("plotly_chart")) == 0  # the page stopped at the failure

    monkeypatch.delenv("CARACAL_MAX_TEXT_BYTES")
    at.run()
    assert not at.exception and errors(at) == []
    assert snapshot(at) == before
    assert at.selectbox("ti_layer").value == 1, "the page forgot which layer to differentiate"
    assert at.selectbox("ti_mix_layer").value == 1, "the page forgot which mixing layer was shown"
