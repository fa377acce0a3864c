"""Links (issue 13, items 13 and 16) through AppTest: the URL's query parameters set up a session
(sample, text, layer, head, position), the app writes them back as the user changes things, a
selection made on one page is the selection on the others, and what cannot travel in a link
(an upload, a long text) is left out and said so."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from caracal_viz import app_support
from tests.security_helpers import open_link, server_like_navigation

__all__ = ["server_like_navigation"]
pytestmark = pytest.mark.usefixtures("server_like_navigation")
TEXT = "abcabcabcabc qwertyuiqwertyui"


def test_a_link_sets_up_the_session_and_the_app_writes_it_back():
    at = open_link("pages/2_spectral_filters.py", ck="caracal-periodic", text=TEXT, layer="1", head="2")
    assert at.selectbox("ck_select").value == "caracal-periodic"
    assert at.session_state["text"] == TEXT and at.text_area("text_box").value == TEXT
    assert at.selectbox("sf_layer").value == 1 and at.selectbox("sf_head").value == 2
    at.selectbox("sf_head").set_value(3).run()
    assert {k: at.query_params[k] for k in at.query_params} == {"ck": "caracal-periodic", "text": TEXT, "layer": "1",
                                                                 "head": "3"}


def test_values_a_link_cannot_mean_are_ignored():
    at = open_link("pages/2_spectral_filters.py", ck="no-such-model", text="", layer="-1", head="x9")
    assert at.selectbox("ck_select").value == app_support.DEFAULT_SAMPLE
    assert at.session_state["text"] == app_support.example_text(app_support.DEFAULT_SAMPLE)
    assert at.selectbox("sf_layer").value == 0 and at.selectbox("sf_head").value == 0
    assert not at.error


def test_a_position_chosen_on_one_page_is_the_position_on_the_others():
    at = open_link("pages/1_overview.py", text=TEXT)
    at.slider("ov_pos").set_value(9).run()
    assert at.query_params["pos"] == "9"
    at.switch_page("pages/6_token_influence.py").run()
    assert not at.exception and at.select_slider("ti_pos").value == 9
    at.select_slider("ti_pos").set_value(4).run()
    at.switch_page("pages/1_overview.py").run()
    assert at.slider("ov_pos").value == 4
    at.selectbox("ck_select").set_value("caracal-periodic").run()  # still valid on another model
    assert at.slider("ov_pos").value == 4


def test_a_long_text_stays_out_of_the_link_and_the_sidebar_says_so():
    long_text = "é" * 400  # 800 bytes, 2,400 characters percent-encoded
    assert len(quote(long_text, safe="")) > app_support.URL_TEXT_MAX
    at = open_link("pages/1_overview.py", ck="caracal-periodic")
    at.text_area("text_box").input(long_text).run()
    assert at.session_state["text"] == long_text
    assert "text" not in at.query_params and at.query_params["ck"] == "caracal-periodic"
    assert any("cannot carry" in c.value for c in at.sidebar.caption)
