"""Load: eight browser sessions at once against one real `streamlit run app.py` server each see
their own checkpoint and text (model card, byte count, and bits per byte checked against a
float64 oracle computed here), and the app's caches evict instead of growing without bound."""

from __future__ import annotations

import gc
import hashlib
import math
import re
import time
import weakref

import numpy as np
import pytest
import torch
from playwright.sync_api import expect, sync_playwright

from caracal_viz.app_support import caching as ui
from caracal_viz import predict
from caracal_viz.checkpoint import load_checkpoint, save_checkpoint
from caracal_viz.trace import forward_pass
from tests.browser import CHROMIUM, CHROMIUM_ARGS, error_texts, streamlit_server, wait_until_idle
from tests.conftest import load_sample, sample_path
from tests.security_helpers import small_model

N_SESSIONS = 8
TEXTS = [
    "To be, or not to be, that is the question:\n",
    "Now is the winter of our discontent\nMade glorious summer",
    "abcabcabcabc qwertyuiqwertyui",
    "the quick brown fox jumps over the lazy dog, then sleeps",
    "All the world's a stage,\nAnd all the men and women merely players;",
    "x",
]


def bits_per_byte(path, text: str) -> float:
    """The oracle: mean -log2 p(next byte) over the L-1 scored positions, float64 softmax."""
    ck = load_checkpoint(path, device="cpu")
    ids = torch.tensor([list(text.encode("utf-8"))])
    with torch.no_grad():
        logp = torch.log_softmax(ck.model(ids)[0].double(), dim=-1)
    if ids.shape[1] < 2:
        return math.nan
    return float(-logp[:-1].gather(1, ids[0, 1:, None]).mean() / math.log(2))


def shown_metric(page, label_pattern: str) -> str:
    """The value of the st.metric whose label matches the regex (the page's wording may change)."""
    metrics = page.locator('[data-testid="stMetric"]')
    for i in range(metrics.count()):
        label = metrics.nth(i).locator('[data-testid="stMetricLabel"]').inner_text().strip()
        if re.search(label_pattern, label):
            return metrics.nth(i).locator('[data-testid="stMetricValue"]').inner_text().strip()
    raise AssertionError(f"no metric labelled like {label_pattern!r} on the page")


def checkpoint_uploader(page):
    uploader = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"]').filter(has_text="checkpoint")
    uploader.locator('input[type="file"]').wait_for(state="attached", timeout=120_000)
    return uploader


def settle_all(pages) -> None:
    for page in pages:
        wait_until_idle(page, timeout_s=150)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_eight_sessions_each_see_their_own_checkpoint_and_text(tmp_path):
    small = [save_checkpoint(tmp_path / f"random-{s}.safetensors", small_model(seed=s), {"steps": 0}) for s in (11, 12)]
    # (file, text): shared models with different texts, and one text under different models
    plan = [(sample_path("caracal-shakespeare"), TEXTS[0]), (sample_path("caracal-shakespeare"), TEXTS[1]),
            (sample_path("caracal-periodic"), TEXTS[2]), (sample_path("caracal-periodic"), TEXTS[0]),
            (sample_path("caracal-circular-leaky"), TEXTS[4]), (sample_path("fftnet-shakespeare"), TEXTS[3]),
            (small[0], TEXTS[5]), (small[1], TEXTS[3])]
    assert len(plan) == N_SESSIONS
    expected = []
    for path, text in plan:
        bpb = bits_per_byte(path, text)
        expected.append({"sha": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                         "bytes": str(len(text.encode("utf-8"))),
                         "bpb": "n/a" if math.isnan(bpb) else f"{bpb:.3f}"})
    # every session must be told apart from every other by what it shows
    assert len({(e["sha"], e["bytes"], e["bpb"]) for e in expected}) == N_SESSIONS

    with streamlit_server(tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            contexts = [browser.new_context(viewport={"width": 1000, "height": 700}) for _ in range(N_SESSIONS)]
            pages = [c.new_page() for c in contexts]
            t0 = time.monotonic()
            for page in pages:  # all sessions start at once
                page.goto(url)
            # Every session uploads its checkpoint as soon as its sidebar is there, while the other
            # sessions' first runs are in flight; then each types its text as soon as its upload
            # has arrived, while the others' uploads are still being loaded.
            for page, (path, _) in zip(pages, plan):
                checkpoint_uploader(page).locator('input[type="file"]').set_input_files(str(path))
            for page, (path, text) in zip(pages, plan):
                uploader = checkpoint_uploader(page)
                chip = uploader.get_by_role("button", name=f"Remove {path.name}")  # the file arrived
                try:
                    expect(chip).to_have_count(1, timeout=30_000)
                except AssertionError:  # the input was replaced by a rerun as the file was set: once more
                    uploader.locator('input[type="file"]').set_input_files(str(path))
                    expect(chip).to_have_count(1, timeout=30_000)
                box = page.locator('[data-testid="stSidebar"] textarea').first
                box.fill(text)
                box.press("Control+Enter")
            settle_all(pages)
            for page, want in zip(pages, expected):  # an upload still in flight when its page looked idle
                expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(want["sha"], timeout=60_000)
            settle_all(pages)
            print(f"8 sessions settled {time.monotonic() - t0:.0f} s after the first page opened")
            for i, (page, want) in enumerate(zip(pages, expected)):
                sidebar_text = page.locator('[data-testid="stSidebar"]').inner_text()
                assert want["sha"] in sidebar_text, f"session {i} lost its checkpoint"
                others = {e["sha"] for e in expected} - {want["sha"]}
                assert not any(sha in sidebar_text for sha in others), f"session {i} shows another's checkpoint"
                assert page.locator('[data-testid="stSidebar"] textarea').first.input_value() == plan[i][1]
                assert shown_metric(page, r"^Bytes$") == want["bytes"], f"session {i} analysed another text"
                assert shown_metric(page, r"(?i)this text") == want["bpb"], f"session {i}"
                assert error_texts(page) == [], f"session {i}: {error_texts(page)}"
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_typing_right_after_an_upload_keeps_the_upload(tmp_path):
    """A user who uploads a checkpoint and types at once: the rerun for the text interrupts the run
    that loads the upload. The upload must survive (and the text too)."""
    ck = load_sample("caracal-shakespeare")
    # a checkpoint no cache has seen, big enough that loading it takes a moment
    path = save_checkpoint(tmp_path / "fresh.safetensors", ck.model, {**ck.meta, "note": "fresh copy"})
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    text = "typed at once"
    with streamlit_server(tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(url)
            uploader = checkpoint_uploader(page)
            wait_until_idle(page, timeout_s=150)
            uploader.locator('input[type="file"]').set_input_files(str(path))
            expect(uploader.get_by_role("button", name=f"Remove {path.name}")).to_have_count(1, timeout=60_000)
            box = page.locator('[data-testid="stSidebar"] textarea').first
            box.fill(text)
            box.press("Control+Enter")
            wait_until_idle(page, timeout_s=150)
            page.wait_for_timeout(2000)
            wait_until_idle(page, timeout_s=150)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            assert sha in sidebar, "the upload was lost when the text's rerun interrupted its loading"
            assert f"{len(text)} bytes analysed" in sidebar
            assert error_texts(page) == []
        finally:
            browser.close()


# ---- cache bounds -------------------------------------------------------------------------------
def test_uploaded_models_cache_is_bounded(tmp_path):
    """More distinct uploads than UPLOAD_CACHE_ENTRIES: older models are dropped (garbage
    collected), the newest stay cached (the same object comes back)."""
    n = ui.UPLOAD_CACHE_ENTRIES + 3
    refs, last = [], None
    for seed in range(100, 100 + n):
        data = save_checkpoint(tmp_path / f"u{seed}.safetensors", small_model(seed=seed), {"steps": seed}).read_bytes()
        last = (data, hashlib.sha256(data).hexdigest(), f"u{seed}.safetensors", "cpu")
        refs.append(weakref.ref(ui._load_upload(*last).model))
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert 1 <= alive <= ui.UPLOAD_CACHE_ENTRIES, f"{alive} of {n} uploaded models still held"
    assert refs[-1]() is not None and ui._load_upload(*last).model is refs[-1]()


def test_sample_models_cache_is_bounded():
    """Each sample on two 'devices' names (the same CPU) fills the sample cache; asking for one
    more distinct key evicts, so at most MODEL_CACHE_ENTRIES models are held."""
    assert ui.MODEL_CACHE_ENTRIES >= len(ui.SAMPLE_NAMES)  # every sample fits, on one device
    ui._load_sample.clear()
    keys = [(name, dev) for dev in ("cpu", "cpu:0", "cpu:1") for name in ui.SAMPLE_NAMES]
    refs = [weakref.ref(ui._load_sample(*k).model) for k in keys]
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert 1 <= alive <= ui.MODEL_CACHE_ENTRIES, f"{alive} of {len(keys)} sample models still held"
    ui._load_sample.clear()


_calls: list[str] = []


def counted_next_token_view(ck, text: str):
    """predict.next_token_view, counting real (uncached) runs."""
    _calls.append(text)
    return predict.next_token_view(ck, forward_pass(ck, text), k=2)


def test_analysis_cache_evicts_old_entries():
    ck = load_sample("caracal-periodic")
    n = ui.ANALYSIS_CACHE_ENTRIES + 4
    texts = [f"cache probe {i:03d}" for i in range(n)]
    for t in texts:
        ui.analysis(counted_next_token_view, ck, t)
    assert _calls[-n:] == texts
    before = len(_calls)
    view = ui.analysis(counted_next_token_view, ck, texts[-1])  # recent: a hit
    assert len(_calls) == before
    np.testing.assert_array_equal(view.ids, list(texts[-1].encode()))
    ui.analysis(counted_next_token_view, ck, texts[0])  # the oldest: evicted, computed again
    assert len(_calls) == before + 1 and _calls[-1] == texts[0]
