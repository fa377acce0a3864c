"""The token influence page's Methods section in the real app, in a real headless Chromium, with
every shipped checkpoint: each method's strip over the text, the deletion/insertion curves on one
plot, the AOPC table, the NPZ of every array as the browser downloads it, and a click on a byte of
a method's strip selecting that position. Screenshots at 1280 and 900 px go to
artifacts/screenshots/ (gitignored)."""

from __future__ import annotations

from urllib.parse import quote, urlparse

import numpy as np
import pytest

from caracal_viz import attribution
from tests.browser import ROOT, error_texts, wait_until_idle
from tests.conftest import SAMPLE_NAMES, load_sample
from tests.test_links_browser import TITLES_JS, app_page, chart_index, click_point, params

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = "abcabcabcabc qwertyuiqwertyui"
POSITION = 19
SHOTS = ROOT / "artifacts" / "screenshots"


def settle(page) -> None:
    """Every method of one prediction runs on a page's first visit: on the shared 2-core CPU that
    takes a while longer than the other pages."""
    wait_until_idle(page, timeout_s=400)
    page.wait_for_timeout(300)


def open_view(page, base: str, sample: str) -> None:
    page.goto(f"{base}/token_influence?ck={sample}&text={quote(TEXT)}&pos={POSITION}")
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stFileUploader"]', timeout=120_000)
    settle(page)
    page.get_by_role("button", name="Compare the methods").click()  # a new session: the methods wait for it
    page.wait_for_timeout(500)
    settle(page)


@pytest.mark.timeout(1800)
def test_methods_section_in_a_real_browser_with_every_sample(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with app_page(tmp_path, "/") as (page, _):
        u = urlparse(page.url)
        base = f"{u.scheme}://{u.netloc}"
        for sample in SAMPLE_NAMES:
            open_view(page, base, sample)
            assert error_texts(page) == [], (sample, error_texts(page))
            assert page.get_by_role("heading", name="Methods").count() == 1
            expected = [m for m in attribution.METHODS
                        if m != "linear_path" or load_sample(sample).config.layer_kind(0) == "mhf"]
            titles = page.evaluate(TITLES_JS)
            for m in expected:
                assert f"{attribution.METHOD_NAMES[m].capitalize()}: prediction after position {POSITION}" in titles, \
                    (sample, m, titles)
            assert "Deletion and insertion curves" in titles
            # the AOPC table: one row per method and the random order (Streamlit draws it on a canvas; its
            # accessible grid carries the rows)
            grids = page.locator('[data-testid="stDataFrame"]')
            assert grids.count() == 2
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="All attribution arrays (NPZ)").click()
            with np.load(download.value.path()) as z:
                assert int(z["position"]) == POSITION
                assert {f"{m}.signed" for m in expected} <= set(z.files)
                assert z["occlusion.signed"].shape == (len(TEXT),)
                if sample in ("caracal-shakespeare", "caracal-periodic"):
                    assert np.all(z["occlusion.signed"][POSITION + 1:] == 0)
                else:
                    assert np.abs(z["occlusion.signed"][POSITION + 1:]).max() > 0
            settle(page)
            if sample == "caracal-periodic":
                for width in (1280, 900):
                    page.set_viewport_size({"width": width, "height": 900})
                    settle(page)
                    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                    page.set_viewport_size({"width": width, "height": min(int(height), 20000)})
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(SHOTS / f"attribution_methods_{width}.png"))
                page.set_viewport_size({"width": 1280, "height": 900})
                settle(page)
                # a click on byte 5 of the occlusion strip selects position 5 for the whole page
                click_point(page, chart_index(page, "Occlusion: prediction after position"), 5, 0)
                assert params(page)["pos"] == "5"
                assert "Occlusion: prediction after position 5" in page.evaluate(TITLES_JS)
                assert error_texts(page) == []
