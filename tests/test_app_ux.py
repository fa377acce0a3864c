"""Issue 13 (items 1-12): rough edges a new user met, through AppTest on the real app.py, the
real library and the shipped checkpoints. What only a browser shows (the prompt surviving
navigation, label positions, colour bar sizes, the uploader's limit line) is in
tests/test_e2e_ux.py.

Markdown is checked as it renders: each element's source goes through a CommonMark renderer
(markdown-it-py, as Streamlit's react-markdown reads it), and the test reads the text a user sees."""

from __future__ import annotations

import html
import io
import re
import sys

import torch
from markdown_it import MarkdownIt

from caracal_viz.text import max_text_bytes
from tests.conftest import sample_path
from tests.security_helpers import open_link
from tests.test_app import SHORT_TEXT, server_like_navigation, start  # noqa: F401 -- the fixture runs app.py

OCTET = "application/octet-stream"
_MD = MarkdownIt("commonmark").enable(["strikethrough", "table"])


def rendered(source: str) -> str:
    """The text a Markdown source shows (tags dropped, entities decoded, whitespace collapsed)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", _MD.render(source))).split())


def shown(elements) -> list[str]:
    return [rendered(e.value) for e in elements]


class Thing:
    """Pickled as __main__.Thing: the class a hostile .pt names, refused unread."""


def pickle_naming_main_thing() -> bytes:
    main = sys.modules["__main__"]
    had = getattr(main, "Thing", None)
    Thing.__module__, main.Thing = "__main__", Thing
    try:
        buf = io.BytesIO()
        torch.save({"state_dict": Thing()}, buf)
        return buf.getvalue()
    finally:
        Thing.__module__ = __name__
        if had is None:
            del main.Thing
        else:
            main.Thing = had


def test_user_derived_names_show_literally_not_as_markdown():
    """Item 8: a refused pickle's class, an upload's file name and a text excerpt are shown as
    typed wherever Markdown renders them (sidebar error, page 4's heading line, Compare's card)."""
    at = start(SHORT_TEXT)
    at.get("file_uploader")[0].set_value(("__evil__*x*.pt", pickle_naming_main_thing(), OCTET)).run()
    assert not at.exception
    (err,) = shown(at.sidebar.error)
    assert "(__main__.Thing)" in err and "'__evil__*x*.pt'" in err, err

    name = "__my__ *model* [v2].safetensors"
    at.get("file_uploader")[0].set_value((name, sample_path("caracal-periodic").read_bytes(), OCTET)).run()
    assert not at.exception and not at.error
    at.switch_page("pages/4_causal_trick.py").run()
    assert not at.exception
    assert any(m.startswith(f"{name}: Caracal MHF") for m in shown(at.main.markdown)), shown(at.main.markdown)
    at.switch_page("pages/7_compare.py").run()
    assert not at.exception
    assert f"A: {name.rsplit('.', 1)[0]}" in shown(at.main.markdown)
    at.selectbox("cmp_select").set_value("caracal-periodic").run()  # the same shape: compared head by head
    assert not at.exception
    assert any(m.startswith(f"{name} vs caracal-periodic.safetensors: ") for m in shown(at.main.markdown))

    at.text_area("text_box").input("a*b*c_d_e_" * 3).run()
    at.switch_page("pages/6_token_influence.py").run()
    assert not at.exception
    strongest = next(c for c in shown(at.main.caption) if "Strongest:" in c)
    assert re.search(r"'[*_]' at position \d+", strongest), strongest


def test_text_uploader_states_the_text_limit():
    """Item 10: the .txt uploader's stated limit is the text limit in bytes, and the server refuses
    anything far over it unread (1 MB, Streamlit's smallest cap), not the checkpoints' 90 MB."""
    at = start(SHORT_TEXT)
    ck_up, txt_up = at.get("file_uploader")
    assert f"{max_text_bytes():,} bytes" in txt_up.proto.label
    assert txt_up.proto.max_upload_size_mb == 1
    assert ck_up.proto.max_upload_size_mb == 90


def test_pages_word_positions_and_byte_values_one_way():
    """Item 9: "position i" for where, "byte value 0x4F 'O'" for what, on the pages as drawn (the
    charts' JSON as AppTest receives it, and the widgets' labels)."""
    at = start("OK, Olé!\n")
    spec = "\n".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "byte value 0x4F 'O'" in spec and "(byte 79)" not in spec
    assert "U+00E9 latin small letter e with acute: positions 6–7, bytes 0xC3 0xA9" in spec
    at.switch_page("pages/6_token_influence.py").run()
    assert not at.exception
    assert at.select_slider(key="ti_pos").label == "Prediction after position"
    assert any(re.search(r"' at position \d+ \(", c) for c in shown(at.main.caption))
    spec = "\n".join(c.proto.spec for c in at.get("plotly_chart"))
    assert not re.search(r"\bbytes? (\d+(?![\dx])|%\{)", spec)


def test_the_layer_box_names_the_new_checkpoints_blocks_after_a_switch(server_like_navigation):  # noqa: F811
    """Item 2: the Layer box's labels come from the checkpoint shown, not the one before."""
    at = open_link("pages/2_spectral_filters.py", ck="caracal-shakespeare", layer="1")
    assert at.selectbox("sf_layer").options[at.selectbox("sf_layer").index] == "block 1 (mhf)"
    at.selectbox("ck_select").set_value("fftnet-shakespeare").run()
    box = at.selectbox("sf_layer")
    assert box.options == [f"block {i} (fftnet)" for i in range(4)] and box.options[box.index] == "block 1 (fftnet)"
    assert at.subheader[0].value == "Block 1: every head's filter" and not at.error
