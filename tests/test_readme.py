"""Issue 13 item 18: the README's set-up section says what its commands really do.

The run command is started as the README gives it (on a free port) and what it prints is read;
the torch build that a fresh Linux x86-64 machine gets (PyPI's torch 2.13.0 is the CUDA 13.0
build: `pip --isolated install --dry-run --report r.json torch==2.13.0 -i https://pypi.org/simple`
resolves it with fifteen nvidia-* CUDA 13 wheels) must be stated the same way in
requirements.txt and README.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib

from tests.browser import ROOT, free_port

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _run_command() -> list[str]:
    block = re.search(r"\n    (python3 -m pip install -r requirements.txt && (python3 -m streamlit run app.py))\n", README)
    assert block, "the README's two-command set-up is gone"
    return block.group(2).split()


def test_readme_says_what_the_run_command_does():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    port = free_port()
    cmd = [sys.executable if c == "python3" else c for c in _run_command()]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "STREAMLIT_SERVER_PORT": str(port)})
    printed = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "Local URL:" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    local = next((ln.strip() for ln in printed if "Local URL:" in ln), None)
    assert local == f"Local URL: http://localhost:{port}", "".join(printed)
    assert "`Local URL: http://localhost:8501`" in README  # what it prints at the default port
    if config["server"]["headless"]:
        assert "opens at" not in README
        assert "no\nbrowser window opens" in README or "no browser window opens" in README
        assert "open that address yourself" in README


def test_readme_and_requirements_agree_on_the_torch_build():
    req = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    comment = " ".join(ln.lstrip("# ") for ln in req.splitlines() if ln.startswith("#"))
    pin = re.search(r"^torch==([\d.]+)$", req, re.M)
    assert pin, "requirements.txt no longer pins torch"
    version = pin.group(1)
    readme = " ".join(README.split())
    claim = f"Linux x86-64 PyPI's torch {version} is the CUDA 13.0 build"
    assert claim in " ".join(comment.split()), comment
    assert f"installs PyPI's torch {version} wheel, which is the CUDA 13.0 build" in readme
    assert "CPU build of torch" not in comment  # what it said before the dry run showed otherwise
    section = re.search(r'see README.md \("([^"]+)"\)', comment)
    assert section and f"**{section.group(1)}:**" in readme, "requirements.txt points to a README section that is gone"
