"""The offline HTML report, opened in a real headless Chromium: every figure renders, the console
stays clean, nothing is fetched, and hostile text, file names and training records execute
nothing and show as typed."""

from __future__ import annotations

import dataclasses
import re

import pytest
from playwright.sync_api import sync_playwright

from caracal_viz.report import write_report
from caracal_viz.text import TextError
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import load_sample

ATTACK = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
TEXT = f"ROMEO:\nBut soft, what light & shade {ATTACK} é☃\n"


def _open(path):
    """Load the report in Chromium; return (page facts, console messages, page errors, requests)."""
    console, errors, requests = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri(), wait_until="load", timeout=120_000)
            page.wait_for_function("document.querySelectorAll('.figure').length > 0 && "
                                   "document.querySelectorAll('.figure .main-svg').length >= "
                                   "document.querySelectorAll('.figure').length", timeout=120_000)
            facts = page.evaluate("""() => ({
                pwned: window.__pwned === undefined ? null : window.__pwned,
                figures: document.querySelectorAll('.figure').length,
                plots: document.querySelectorAll('.figure .js-plotly-plot').length,
                imgs: document.querySelectorAll('img').length,
                pre: document.querySelector('pre.text').textContent,
                title: document.title,
                h1: document.querySelector('h1').textContent,
                cells: Array.from(document.querySelectorAll('td')).map(td => td.textContent),
                svgText: Array.from(document.querySelectorAll('.figure svg text')).map(t => t.textContent),
                verdict: document.querySelector('.verdict').textContent,
                cells2: Array.from(document.querySelectorAll('.blocks > section')).map(sec => {
                    const r = sec.getBoundingClientRect();
                    const widest = Math.max(0, ...Array.from(sec.querySelectorAll('.main-svg'))
                                                      .map(svg => svg.getBoundingClientRect().width));
                    return {top: r.top, left: r.left, width: r.width, widest: widest};
                }),
            })""")
        finally:
            browser.close()
    return facts, console, errors, requests


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ck = load_sample("caracal-periodic")
    hostile = dataclasses.replace(ck, name=f'{ATTACK}.safetensors',
                                  meta={**ck.meta, "description": ATTACK, "loss_curve": "<script>not a curve"})
    path = write_report(hostile, TEXT, tmp_path_factory.mktemp("report") / "report.html")
    return path, _open(path)


@pytest.mark.browser
def test_report_renders_offline_without_console_errors(report):
    path, (facts, console, errors, requests) = report
    assert errors == [] and console == []
    assert all(u.startswith("file:") for u in requests), requests  # nothing from the network
    assert facts["figures"] >= 20 and facts["plots"] == facts["figures"]
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js is inlined, not linked
    assert "Content-Security-Policy" in html
    assert "CAUSAL" in facts["verdict"]


@pytest.mark.browser
def test_per_block_panels_sit_two_abreast_and_fit_their_cells(report):
    """Issue 13 item 12: the report was 30,000 px tall, every block's figures one under another at
    full width. At 1,280 px the per-block panels form two columns, each figure inside its cell."""
    _, (facts, *_rest) = report
    cells = facts["cells2"]
    assert len(cells) >= 4
    first, second = cells[0], cells[1]
    assert abs(first["top"] - second["top"]) < 1 and second["left"] >= first["left"] + first["width"]
    assert all(0 < c["widest"] <= c["width"] + 1 for c in cells), cells


@pytest.mark.browser
def test_hostile_text_name_and_record_execute_nothing(report):
    _, (facts, *_rest) = report
    assert facts["pwned"] is None
    assert facts["imgs"] == 0
    assert facts["pre"] == TEXT  # the text, exactly as typed
    assert ATTACK in facts["title"] and ATTACK in facts["h1"]
    assert ATTACK in facts["cells"]  # the training record's description, as text
    # byte labels inside the figures arrive as text too
    assert "<" in facts["svgText"] and "&" in facts["svgText"]


def test_report_rejects_bad_text(tmp_path):
    with pytest.raises(TextError):
        write_report(load_sample("caracal-periodic"), "", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_a_short_texts_report_is_sized_to_its_content(tmp_path, monkeypatch):
    """Issue 13 item 12: a 97-byte text's report was 13.5 MB (8.7 MB of it figure data) with a
    blank 'aliased terms' panel (drawn on the weights' range, 6x its own largest value) and every
    head's group delay on one plot. Now: plotly.js once, the figure data small for a short text,
    every panel holding data drawn on a range it fills, no all-heads tangle."""
    import numpy as np
    import plotly.offline

    from caracal_viz import report as rp

    shown = []
    original = rp._Page.figure
    monkeypatch.setattr(rp._Page, "figure", lambda self, fig: (shown.append(fig), original(self, fig))[1])
    text = ("GRUMIO:\nFirst, know, my horse is tired; my master and mistress fallen out. " * 2)[:97]
    assert len(text.encode()) == 97
    path = write_report(load_sample("caracal-shakespeare"), text, tmp_path / "r.html")
    doc = path.read_text(encoding="utf-8")
    js = plotly.offline.get_plotlyjs()
    assert doc.count(js[:400]) == 1
    assert len(doc.encode()) - len(js.encode()) < 3.5e6  # the figures, tables and text: 8.7 MB before

    for fig in shown:
        spec = fig.to_plotly_json()
        title = spec["layout"].get("title", {}).get("text", "")
        assert not title.startswith("Frequency response of every head"), title  # group-delay spaghetti
        for tr in fig.data:
            if tr.type != "heatmap":
                continue
            z = np.asarray(tr.z, dtype=float)
            assert np.isfinite(z).any(), f"{title}: a panel without data"
            if tr.zmid == 0 and tr.zmax is not None:  # signed, on a fixed range: that range must fit its data
                top = float(np.nanmax(np.abs(z)))
                assert top > 0 and tr.zmax <= 2 * top, f"{title}: drawn on ±{tr.zmax:.3g}, its data reach {top:.3g}"
