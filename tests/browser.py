"""Driving the real app in headless Chromium: start `streamlit run app.py` on a free port, open it
with Playwright, and wait for Streamlit's script runs to finish. Used by tests/test_e2e_browser.py."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium in a container: no sandbox, no GPU, and no calls home (there is no network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

ERROR_SELECTORS = ('[data-testid="stException"]', '[data-testid="stAlertContentError"]')
RUNNING_SELECTORS = ('[data-testid="stStatusWidget"]', '[data-testid="stSpinner"]', '[data-testid="stSkeleton"]',
                     '[data-testid="stAppSkeleton"]')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log_path: Path, timeout_s: float = 90.0, env: dict | None = None):
    """Run `streamlit run app.py` headless on a free port; yield its URL once /_stcore/health
    answers. The server is always stopped (terminate, then kill) when the block ends."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with code {proc.returncode}: see {log_path}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not answer within {timeout_s:.0f} s: see {log_path}")
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# Streamlit marks its root with the script's state ("running", "notRunning", ...) for tests.
_PAGE_STATE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return [app ? app.getAttribute('data-test-script-state') : null,
          main ? main.querySelectorAll('*').length : -1,
          charts.filter(c => !c.querySelector('.main-svg')).length];
}"""


def wait_until_idle(page, timeout_s: float = 90.0, quiet_s: float = 1.0) -> None:
    """Wait until Streamlit has finished running the script and the page has drawn: the app's
    script state is "notRunning", no status widget, spinner or skeleton, every Plotly chart drawn,
    and the page's element count unchanged, continuously for `quiet_s` (a rerun can start just
    after one ends)."""
    deadline = time.monotonic() + timeout_s
    quiet_since, last_size = None, None
    while True:
        state, size, undrawn = page.evaluate(_PAGE_STATE_JS)
        busy = (state != "notRunning" or undrawn > 0 or size != last_size
                or any(page.locator(sel).count() for sel in RUNNING_SELECTORS))
        last_size = size
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return
        if now > deadline:
            raise TimeoutError(f"the app was still running after {timeout_s:.0f} s")
        page.wait_for_timeout(100)


def error_texts(page) -> list[str]:
    """Texts of every exception box and error alert on the page."""
    out = []
    for sel in ERROR_SELECTORS:
        loc = page.locator(sel)
        out += [loc.nth(i).inner_text() for i in range(loc.count())]
    return out
