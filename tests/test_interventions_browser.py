"""The Interventions page in a real headless Chromium with every shipped sample (opened by link,
?ck=NAME): no error box, every figure drawn, and a click on a sweep cell (the invisible scatter
layer under the heatmap) applies that ablation: the widgets show it and the bits/byte change is
the sweep's. Screenshots at 1280 and 900 px to artifacts/screenshots/ (gitignored)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from caracal_viz import interventions as iv
from tests.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, error_texts, streamlit_server, wait_until_idle
from tests.conftest import SAMPLE_NAMES, load_sample

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"
TEXTS = {name: "First Citizen:\nBefore we proceed any further, hear me speak.\n" for name in SAMPLE_NAMES}
TEXTS["caracal-periodic"] = "abc" * 8 + "qwertyui" * 4 + "thequickbrownfoxjump" * 2

# page coordinates of the sweep's (column, row) cell: Plotly's own axis maps, on its pick layer
_CELL_JS = """([col, row]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
      g => (g.layout.title.text || '').includes('Which heads'));
  const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return [r.left + xa._offset + xa.l2p(col), r.top + ya._offset + ya.l2p(row)];
}"""


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


@pytest.mark.timeout(900)
def test_interventions_page_with_every_sample_and_a_sweep_click(tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems, console = {}, []
    with streamlit_server(tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in (1280, 900):
                for name in SAMPLE_NAMES if width == 1280 else ("caracal-periodic",):
                    page = browser.new_page(viewport={"width": width, "height": 1000})
                    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                    page.goto(f"{url}/interventions?ck={name}&text={quote(TEXTS[name])}")
                    page.wait_for_selector('[data-testid="stSidebar"]', timeout=90_000)
                    wait_until_idle(page, timeout_s=180)
                    assert page.locator('[data-testid="stPlotlyChart"]').count() == 2, name  # nothing long yet
                    for button in ("Run the sweep", "Run activation patching"):
                        page.get_by_role("button", name=button).click(timeout=180_000)  # after the last rerun
                        page.wait_for_timeout(500)
                        wait_until_idle(page, timeout_s=180)
                    if error_texts(page):
                        problems[name] = error_texts(page)
                    assert page.locator('[data-testid="stPlotlyChart"]').count() == 4, name
                    if name == "caracal-periodic":
                        ck = load_sample(name)
                        sw = iv.sweep(ck, TEXTS[name])
                        layer, head, band = 1, 2, 5  # the cell of block 1 head 2, band 5 (column 6)
                        page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
                        x, y = page.evaluate(_CELL_JS, [band + 1, layer * ck.config.n_heads + head])
                        page.mouse.move(x, y)
                        page.wait_for_timeout(300)
                        page.mouse.click(x, y)
                        page.wait_for_timeout(800)
                        wait_until_idle(page, timeout_s=120)
                        checked = page.locator('[data-testid="stRadio"] label:has(input:checked)').first.inner_text()
                        assert "Filter a band" in checked
                        blk = page.get_by_label("Block (0..1)").input_value()
                        hd = page.get_by_label("Head (0..3)").input_value()
                        assert (blk, hd) == ("1", "2")
                        change = float(metric(page, "Bits/byte after")) - float(metric(page, "Bits/byte before"))
                        # the page rounds each bits/byte to three decimals: the difference of two is within 1e-3
                        assert change == pytest.approx(sw.band_delta[layer, head, band], abs=1.05e-3)
                        assert not error_texts(page)
                    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                    page.set_viewport_size({"width": width, "height": max(1000, min(int(height), 16000))})
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(SHOTS / f"8_interventions_{name}_{width}.png"))
                    page.close()
        finally:
            browser.close()
    assert not problems, problems
    assert not console, console
