"""The page list that app.py gives st.navigation is the pages/ folder: every page file, in the order
of its number, each titled as the page itself begins its title (so a new page file needs no list edit)."""

from __future__ import annotations

import ast
import re

from caracal_viz.app_support import PAGE_FILES

from .conftest import ROOT


def _shown_title(path) -> str:
    """The first string a page passes to page_setup(...) or st.title(...)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("page_setup", "title") and node.args and isinstance(node.args[0], ast.Constant):
            return node.args[0].value
    raise AssertionError(f"{path.name} shows no title")


def test_every_page_file_is_listed_in_order_with_its_own_title():
    files = sorted((p for p in (ROOT / "pages").glob("*.py")), key=lambda p: int(re.match(r"\d+", p.name).group()))
    assert len(files) >= 9
    assert [name for name, _ in PAGE_FILES] == [f"pages/{p.name}" for p in files]
    for (name, title), path in zip(PAGE_FILES, files):
        assert _shown_title(path).startswith(title), name  # "Compare" is "Compare two checkpoints"
