"""What only a browser shows of issue 13's rough edges: input kept across pages (item 1), where
Plotly draws the threshold labels on log axes (item 3) and how tall colour bars are (item 4),
in the real app in a real headless Chromium."""

from __future__ import annotations

import pytest

from tests.browser import error_texts
from tests.test_links_browser import app_page, go_to, selectbox_text, settle

PROMPT = "ZQ: a prompt of my own, typed and not generated from"


@pytest.mark.timeout(400)
def test_the_generation_prompt_and_settings_survive_a_visit_to_another_page(tmp_path):
    with app_page(tmp_path, "/") as (page, _):
        main = page.locator('[data-testid="stMain"]')
        box = main.get_by_label("Prompt")
        box.scroll_into_view_if_needed()
        box.fill(PROMPT)
        box.press("Tab")  # the text area sends its value when it loses the focus
        settle(page)
        seed = main.get_by_label("Seed")
        seed.fill("7")
        seed.press("Tab")
        main.get_by_role("button", name="Generate").click()
        settle(page)

        go_to(page, "Spectral filters")
        go_to(page, "Overview")
        box = main.get_by_label("Prompt")
        box.scroll_into_view_if_needed()
        assert box.input_value() == PROMPT
        assert main.get_by_label("Seed").input_value() == "7"
        assert error_texts(page) == []


@pytest.mark.timeout(400)
def test_the_layer_box_shows_the_new_checkpoints_block_kind_after_a_switch(tmp_path):
    """Item 2 as the browser draws it: the Layer box's text, not only the options it was sent."""
    with app_page(tmp_path, "/spectral_filters?ck=caracal-shakespeare") as (page, _):
        assert selectbox_text(page, "Layer") == "block 0 (mhf)"
        page.locator('input[role="combobox"][aria-label="Checkpoint"]').first.click()
        page.get_by_role("option", name="fftnet-shakespeare").click()
        settle(page)
        assert selectbox_text(page, "Layer") == "block 0 (fftnet)"
        assert error_texts(page) == []
