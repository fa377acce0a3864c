"""The layers import one way: models/ knows nothing of the app (no caracal_viz import anywhere in
it), and caracal_viz/spectral.py, the float64 reference maths, imports no torch. Read from the
source with ast, so an import inside a function counts too. Importing caracal_viz.figures (and the
thresholds in caracal_viz.results) loads neither torch nor models/: checked in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def _fresh_import(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing `module` (run from the repo root)."""
    out = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(' '.join(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_figures_and_results_import_no_torch():
    # figures draw numpy results: a figure builder (and the thresholds it draws) must not pull in
    # torch or the model code (seconds at start-up, and the layering: analyses -> figures)
    for module in ("caracal_viz.figures", "caracal_viz.results"):
        loaded = _fresh_import(module)
        assert module in loaded
        assert not {m for m in loaded if m == "torch" or m.startswith(("torch.", "models"))}, module


def test_the_package_still_exports_the_loader_lazily():
    out = subprocess.run([sys.executable, "-c", "import sys, caracal_viz; print('torch' in sys.modules); "
                          "from caracal_viz import load_checkpoint, CheckpointError; print(load_checkpoint.__module__)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "caracal_viz.checkpoint"]
