"""CONTRIBUTING.md's map of the views names real things: every page file exists and every
`module.function` in the table is an attribute of that caracal_viz module (".name" continues the
module named before it in the same cell)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table_rows() -> list[list[str]]:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## A map of the views", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| page")]


def test_the_view_map_names_real_pages_functions_and_figures():
    rows = table_rows()
    assert len(rows) >= 8
    pages = {p for r in rows for p in re.findall(r"`(pages/[^`]+)`", r[0])}
    assert pages == {str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py")}
    checked = 0
    for row in rows:
        for cell in row[2:]:
            module = None
            for name in re.findall(r"`([.\w]+)`", cell):
                if name.startswith("."):
                    attr = name[1:]
                elif "." not in name:  # a module named alone
                    importlib.import_module(f"caracal_viz.{name}")
                    continue
                else:
                    module, _, attr = name.rpartition(".")
                mod = importlib.import_module(f"caracal_viz.{module}")
                assert hasattr(mod, attr), f"CONTRIBUTING.md names {module}.{attr}, which does not exist"
                checked += 1
    assert checked >= 40
