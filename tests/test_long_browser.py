"""Issue 14 in the real app: a 16,384-byte text (the CPU's limit) loaded through the sidebar,
then every page visited in headless Chromium without an error box; the O(L^2) views say which
window of the text they show."""

from __future__ import annotations

import re

import pytest

from tests.browser import error_texts
from tests.test_links_browser import app_page, go_to, settle
from tests.test_long_text import LONG

pytestmark = pytest.mark.browser


@pytest.mark.timeout(1200)
def test_a_long_text_visits_every_page_without_an_error_box(tmp_path):
    n = len(LONG.encode())
    with app_page(tmp_path, "/") as (page, _):
        box = page.locator('[data-testid="stSidebar"] textarea').first
        box.fill(LONG)
        box.press("Tab")
        settle(page)
        assert page.locator('[data-testid="stSidebar"]').get_by_text(f"{n} bytes analysed").count() == 1
        assert error_texts(page) == []
        titles = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
        assert len(titles) >= 9, titles
        for title in titles[1:]:
            go_to(page, title)
            assert error_texts(page) == [], title
            if title in ("Token influence", "Reach"):  # windowed views name their window
                main = page.locator('[data-testid="stMain"]').inner_text()
                assert re.search(rf"bytes [\d,]+\s*\.\.\s*[\d,]+ of {n:,}", main), (title, main[:400])
