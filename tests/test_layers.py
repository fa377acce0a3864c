"""The layers import one way: models/ knows nothing of the app (no caracal_viz import anywhere in
it), and caracal_viz/spectral.py, the float64 reference maths, imports no torch. Read from the
source with ast, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """Top-level package names a Python file imports (absolute imports; relative ones stay inside)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_models_never_import_the_app():
    files = sorted((ROOT / "models").glob("*.py"))
    assert len(files) > 10
    offenders = [f.name for f in files if "caracal_viz" in imported(f)]
    assert not offenders, f"models/ imports caracal_viz in {offenders}"


def test_the_reference_maths_has_no_torch():
    assert "torch" not in imported(ROOT / "caracal_viz" / "spectral.py")


def test_the_walk_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from caracal_viz import load_checkpoint\n    import torch.nn\n")
    assert imported(f) == {"caracal_viz", "torch"}
