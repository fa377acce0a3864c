"""The page list that app.py gives st.navigation is the pages/ folder: every page file, in the order
of its number, each titled as the page itself begins its title (so a new page file needs no list edit)."""

from __future__ import annotations

import ast
import re

from caracal_viz.app_support import PAGE_FILES

from .conftest import ROOT


def _shown_title(path) -> str:
    """The first string a page passes to page_setup, page_header or st.title."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("page_setup", "page_header", "title") and node.args and isinstance(node.args[0], ast.Constant):
            return node.args[0].value
    raise AssertionError(f"{path.name} shows no title")


def test_every_page_file_is_listed_in_order_with_its_own_title():
    files = sorted((p for p in (ROOT / "pages").glob("*.py")), key=lambda p: int(re.match(r"\d+", p.name).group()))
    assert len(files) >= 9
    assert [name for name, _ in PAGE_FILES] == [f"pages/{p.name}" for p in files]
    for (name, title), path in zip(PAGE_FILES, files):
        assert _shown_title(path).startswith(title), name  # "Compare" is "Compare two checkpoints"


def test_no_page_calls_the_entry_shim_itself():
    # page_setup / page_header do app.py's part for a deep link (ensure_entry); a page only lays out
    for path in (ROOT / "pages").glob("*.py"):
        calls = {n.func.attr for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert "ensure_entry" not in calls, path.name
        assert calls & {"page_setup", "page_header"}, path.name


def test_the_causal_trick_draws_the_sidebar_when_app_py_did_not_run():
    """A deep link as the server's first request runs the page file alone (Streamlit's legacy
    pages/ mode, AppTest's own behaviour here): page 4, which has no page_setup, still gets the
    shared sidebar through page_header."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/4_causal_trick.py").run()
    assert not at.exception and [e.value for e in at.error] == []
    assert at.title[0].value == "The causal trick"
    assert "Caracal MHF (pad)" in "\n".join(m.value for m in at.sidebar.markdown)
