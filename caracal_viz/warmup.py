"""Imports that only some pages need, run in the background once the first page is drawn.

scipy.signal (the Spectral filters and Compare pages' peaks), scipy.stats (attribution's rank
correlation) and Captum (integrated gradients, which also loads matplotlib and IPython) take
1-5 s to import on the 2-core CPU. The modules that use them import them where they are called,
so the app's start-up does not wait for them (tests/test_startup_imports.py); `start` then
imports them in a daemon thread while the user reads the first page, so the page that needs one
finds it loaded. A page that asks before the thread is done waits on Python's import lock for
the rest of that import only. Nothing is computed; a failed import is left for the page that
needs the module to report.
"""

from __future__ import annotations

import importlib
import threading

MODULES = ("scipy.signal", "scipy.stats", "captum.attr")

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- the page that imports it says what is wrong
            pass


def start() -> threading.Thread:
    """Start the background imports once per process (later calls return the same thread)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name="caracal-warmup-imports", daemon=True)
            _thread.start()
        return _thread
