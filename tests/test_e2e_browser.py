"""End to end: the real Streamlit server driven by a real headless Chromium.

Upload a checkpoint through the sidebar, type a text, visit every page through the navigation,
and check that no page shows an exception or an error alert and that the browser logged no
error. A screenshot of each page goes to artifacts/screenshots/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, error_texts, streamlit_server, wait_until_idle

pytestmark = pytest.mark.browser

CHECKPOINT = ROOT / "sample_checkpoints" / "caracal-periodic.safetensors"
TEXT = "abcabcabcabcabc qwertyuiqwertyui thequickbrownfoxjump"  # the periodic model's kind of text
SHOTS = ROOT / "artifacts" / "screenshots"
WIDTH, HEIGHT = 1400, 1000
N_PAGES = len(list((ROOT / "pages").glob("[0-9]*_*.py")))  # every page in the pages/ folder
# one data download per page of ours, checked for its header: (page title, button, CSV header start)
DOWNLOADS = {"The causal trick": ("Both outputs (CSV)", "t,x,exact_causal,circular_output"),
             "Token influence": ("This prediction's row (CSV)", "input_position,byte,label,influence"),
             "Interventions": ("Loss per byte (CSV)", "position,label,loss_bits_before")}


def settle(page) -> None:
    """Wait for the page's script run to end, then give Plotly a moment to draw."""
    wait_until_idle(page, timeout_s=120)
    page.wait_for_timeout(400)


def screenshot(page, path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, min(int(height), 20000))})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_every_page_renders_without_errors_in_a_real_browser(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    with streamlit_server(tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.on("console", lambda m: m.type == "error" and console_errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
            # a console "Failed to load resource" does not name the resource: record it here
            page.on("requestfailed", lambda r: console_errors.append(f"request failed: {r.url} ({r.failure})"))
            page.goto(url)
            # the first run imports torch and loads a model: wait for app.py's own sidebar
            page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stFileUploader"]', timeout=90_000)
            settle(page)

            sidebar = page.locator('[data-testid="stSidebar"]')
            uploader = sidebar.locator('[data-testid="stFileUploader"]').filter(has_text="checkpoint")
            uploader.locator('input[type="file"]').set_input_files(str(CHECKPOINT))
            settle(page)
            # the model card names the loaded file by the start of its sha256
            sha = hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()[:16]
            assert sha in sidebar.inner_text(), "the model card does not show the uploaded checkpoint"

            box = sidebar.locator("textarea").first
            box.fill(TEXT)
            box.press("Control+Enter")
            settle(page)
            assert sidebar.get_by_text(f"{len(TEXT.encode())} bytes analysed").count() == 1, \
                "the typed text was not taken up"

            links = sidebar.locator('[data-testid="stSidebarNav"] a')
            assert links.count() == N_PAGES
            # a link's text is its icon's ligature name, then its title
            titles = [links.nth(i).inner_text().strip().splitlines()[-1] for i in range(N_PAGES)]
            problems = {}
            for i, title in enumerate(titles):
                links.nth(i).click()
                page.wait_for_timeout(500)
                settle(page)
                errors = error_texts(page)
                if errors:
                    problems[title] = errors
                if title in DOWNLOADS:
                    button, header = DOWNLOADS[title]
                    with page.expect_download(timeout=30_000) as download:
                        page.get_by_role("button", name=button).click()
                    data = download.value.path().read_text()
                    assert data.startswith(header), f"{title}: {button} gave {data[:80]!r}"
                    settle(page)
                slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
                screenshot(page, SHOTS / f"{i + 1}_{slug}.png")
                # the upload and the text must survive page changes
                assert sha in sidebar.inner_text(), f"{title}: the uploaded checkpoint was lost"
        finally:
            browser.close()
    assert not problems, f"error boxes on valid input: {problems}"
    assert not console_errors, f"browser console errors: {console_errors}"
