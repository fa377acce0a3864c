"""Links and linked views in the real app, in a real headless Chromium: a view's settings live in
the URL (st.query_params), so a shared link or a reload shows the same view (item 13 of issue 13),
and a click on a byte or a row of the influence map selects that position on every page (item 16).
Only a browser shows these: AppTest has no address bar and no Plotly clicks."""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qs, quote, urlparse

import numpy as np
import pytest
from plotly.colors import sample_colorscale
from playwright.sync_api import sync_playwright

from caracal_viz.text import utf8_spans
from tests.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, error_texts, streamlit_server, wait_until_idle

pytestmark = pytest.mark.browser

TEXT = "abcabcabcabc qwertyuiqwertyui thequickbrownfox"
# Streamlit's frontend looks for its server under the page's own path before the root (upstream
# issue streamlit/streamlit#7074): on a page's URL these two probes answer 404, then the root ones
# answer. Nothing else may fail.
BASE_PATH_PROBES = re.compile(r"/[a-z_]+/_stcore/(health|host-config)$")

# the page position of a Plotly point (x, y in data units) in the n-th chart of the page
POINT_JS = """([n, x, y]) => { const gd = document.querySelectorAll('.js-plotly-plot')[n];
  const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(y)]; }"""


def settle(page) -> None:
    wait_until_idle(page, timeout_s=150)
    page.wait_for_timeout(300)


def params(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


TITLES_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(
  g => ((g.layout && g.layout.title && g.layout.title.text) || '').replace(/<[^>]*>/g, ''))"""


def chart_index(page, title: str) -> int:
    """Index of the Plotly chart whose title starts with `title`."""
    titles = page.evaluate(TITLES_JS)
    found = [i for i, t in enumerate(titles) if t.startswith(title)]
    assert found, f"no chart titled {title!r} among {titles}"
    return found[0]


def chart_title(page, title: str) -> str:
    return page.evaluate(TITLES_JS)[chart_index(page, title)]


def click_point(page, chart: int, x: float, y: float) -> None:
    loc = page.locator(".js-plotly-plot").nth(chart)
    loc.scroll_into_view_if_needed()
    px, py = page.evaluate(POINT_JS, [chart, x, y])
    page.mouse.move(px, py)
    page.wait_for_timeout(300)
    page.mouse.click(px, py)
    page.wait_for_timeout(800)
    settle(page)


def selectbox_text(page, label: str) -> str:
    return page.locator(f'input[role="combobox"][aria-label="{label}"]').first.input_value()


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    page.wait_for_timeout(500)
    settle(page)


@contextlib.contextmanager
def app_page(tmp_path, path: str):
    """A fresh server and a 1280 x 900 page opened on `path` (the server's first request);
    yields (page, failed), `failed` collecting failed requests other than the base-path probes."""
    failed: list[str] = []
    with streamlit_server(tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("response", lambda r: r.status >= 400 and failed.append(r.url))
            page.on("pageerror", lambda e: failed.append(f"pageerror: {e}"))
            page.goto(url + path)
            page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stFileUploader"]', timeout=120_000)
            settle(page)
            yield page, failed
        finally:
            browser.close()
    unexpected = [u for u in failed if not BASE_PATH_PROBES.search(urlparse(u).path)]
    assert not unexpected, f"failed requests or page errors: {unexpected}"


@pytest.mark.timeout(400)
def test_a_shared_link_and_a_reload_keep_the_checkpoint_text_and_settings(tmp_path):
    link = f"/spectral_filters?ck=caracal-periodic&text={quote(TEXT)}&layer=1&head=2"
    with app_page(tmp_path, link) as (page, _):  # a shared link as the server's very first request
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert selectbox_text(page, "Checkpoint") == "caracal-periodic"
        assert sidebar.locator("textarea").first.input_value() == TEXT
        assert "block 1" in selectbox_text(page, "Layer") and selectbox_text(page, "Head") == "head 2"
        assert error_texts(page) == []

        # a setting changed in the page goes into the URL, and a reload keeps the whole view
        page.locator('input[role="combobox"][aria-label="Head"]').first.click()
        page.get_by_role("option", name="head 3").click()
        settle(page)
        assert params(page)["head"] == "3"
        page.reload()
        settle(page)
        assert selectbox_text(page, "Checkpoint") == "caracal-periodic"
        assert sidebar.locator("textarea").first.input_value() == TEXT
        assert "block 1" in selectbox_text(page, "Layer") and selectbox_text(page, "Head") == "head 3"
        assert params(page) == {"ck": "caracal-periodic", "text": TEXT, "layer": "1", "head": "3"}
        # another page keeps the checkpoint and the text in its URL
        go_to(page, "Parseval energy")
        assert params(page)["ck"] == "caracal-periodic" and params(page)["text"] == TEXT
        assert error_texts(page) == []


@pytest.mark.timeout(400)
def test_a_click_on_a_byte_or_a_map_row_selects_that_position_on_every_page(tmp_path):
    with app_page(tmp_path, "/") as (page, _):  # the default sample and text
        # a click on a byte of the Overview's text selects that position; the next page shows it
        click_point(page, chart_index(page, "Loss per byte"), 5, 0)  # row 0, column 5: position 5
        assert params(page)["pos"] == "5"
        assert chart_title(page, "Top").startswith("Top 5 next bytes after position 5 ")
        go_to(page, "Token influence")
        assert chart_title(page, "What the prediction after position").startswith("What the prediction after position 5 ")

        # a click on the influence map's row 12 (its diagonal) selects position 12 ...
        click_point(page, chart_index(page, "Token influence map"), 12, 12)
        assert params(page)["pos"] == "12"
        assert chart_title(page, "What the prediction after position").startswith("What the prediction after position 12 ")
        # ... and a click on a byte of the strip selects that byte's position
        click_point(page, chart_index(page, "What the prediction after position"), 3, 0)
        assert params(page)["pos"] == "3"
        go_to(page, "Overview")
        assert chart_title(page, "Top").startswith("Top 5 next bytes after position 3 ")

        # a click on a panel of the filter thumbnails shows that block and head
        go_to(page, "Spectral filters")
        grid = chart_index(page, "Every block and head")
        px, py = page.evaluate("""([n, name]) => { const gd = document.querySelectorAll('.js-plotly-plot')[n];
            const r = gd.getBoundingClientRect(), t = gd._fullData.find(
              d => d.name === 'pick' && d.customdata[0][0] === 3 && d.customdata[0][1] === 2);
            const xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
            const k = Math.floor(t.x.length / 2);
            return [r.left + xa._offset + xa.l2p(t.x[k]), r.top + ya._offset + ya.l2p(t.y[k])]; }""", [grid, "pick"])
        page.mouse.move(px, py)
        page.wait_for_timeout(300)
        page.mouse.click(px, py)
        page.wait_for_timeout(800)
        settle(page)
        assert "block 3" in selectbox_text(page, "Layer") and selectbox_text(page, "Head") == "head 2"
        assert params(page)["layer"] == "3" and params(page)["head"] == "2"
        assert error_texts(page) == []


LINKED_TEXT = "To be, or not to be: «ça» 🦁\nthat is the question"


@pytest.mark.timeout(400)
def test_hovering_the_linked_map_colours_the_bytes_that_row_reads_and_hovering_a_byte_its_readers(tmp_path):
    from caracal_viz import influence
    from caracal_viz.figures.linked import NO_VALUE
    from tests.conftest import load_sample
    from tests.test_linked_view import loop_levels

    name = "caracal-circular-leaky"  # reads the future: the colours must follow the map, not a causal mask
    m = influence.token_influence(load_sample(name), LINKED_TEXT)
    want = loop_levels(np.asarray(m.values))  # the colour levels, spelled out per entry
    spans = [(a, b) for a, b, _ in utf8_spans(m.ids)]

    def per_char(level_of_byte) -> list[int]:  # a character shows the largest level of its bytes
        return [max((int(level_of_byte(j)) for j in range(a, b) if level_of_byte(j) != NO_VALUE), default=-1)
                for a, b in spans]

    with app_page(tmp_path, f"/token_influence?ck={name}&text={quote(LINKED_TEXT)}") as (page, _):
        shots = ROOT / "artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        for width in (1280, 900):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(500)
            holder = page.locator("iframe[srcdoc]").first
            holder.scroll_into_view_if_needed()
            frame = page.frame_locator("iframe[srcdoc]").first
            canvas = frame.locator("canvas#map")
            box = canvas.bounding_box()
            n = len(m.ids)
            for i in (5, 17, n - 3):
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + (i + 0.5) / n * box["height"])
                expect_row = per_char(lambda j: want[i, j])
                frame.locator(f'#readout[data-row="{i}"]').wait_for(timeout=10_000)
                shown = [int(v) for v in frame.locator("#text span").evaluate_all("s => s.map(e => e.dataset.level)")]
                assert shown == expect_row, f"row {i} at {width} px"
                assert "reads most" in frame.locator("#readout").inner_text()
                # each lit byte in the map's colour scale (Cividis) at its level
                backgrounds = frame.locator("#text span").evaluate_all("s => s.map(e => getComputedStyle(e).backgroundColor)")
                for level, bg in zip(shown, backgrounds):
                    if level > 0:
                        assert bg == sample_colorscale("Cividis", [level / 254])[0], (level, bg)
            page.screenshot(path=str(shots / f"linked_view_{width}.png"))
            # a byte: each prediction that reads it colours the byte it predicts
            k = 3
            frame.locator("#text span").nth(k).hover()
            j = spans[k][0]
            frame.locator(f'#readout[data-col="{j}"]').wait_for(timeout=10_000)
            shown = [int(v) for v in frame.locator("#text span").evaluate_all("s => s.map(e => e.dataset.level)")]
            assert shown == per_char(lambda t: want[t - 1, j] if t >= 1 else 0)
            # the map and the text fit the frame: nothing cut at this width
            fits = frame.locator("body").evaluate(
                "b => [b.scrollWidth <= b.clientWidth, document.getElementById('text').getBoundingClientRect().bottom"
                " <= window.innerHeight, document.getElementById('readout').getBoundingClientRect().bottom"
                " <= window.innerHeight]")
            assert fits == [True, True, True], f"the linked view is cut at {width} px: {fits}"
        assert not error_texts(page)
