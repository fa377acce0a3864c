"""The app's start-up imports only what its first page needs (issue 13 item 17): scipy (1-2 s
of imports on the 2-core CPU) and Captum are imported by the functions that use them, so the
entry (app.py: app_support) and the Overview page (its caracal_viz modules) load without them."""

import subprocess
import sys

from tests.conftest import ROOT

FIRST_PAGE = ("caracal_viz.app_support", "caracal_viz.export", "caracal_viz.figures", "caracal_viz.predict",
              "caracal_viz.trace")
# imported by every page module at its top; their heavy dependencies must wait for a call
PAGE_MODULES = ("caracal_viz.filters", "caracal_viz.gates", "caracal_viz.mixing", "caracal_viz.influence",
                "caracal_viz.attribution", "caracal_viz.spectral", "caracal_viz.energy", "caracal_viz.compare")


def _imported(modules) -> set[str]:
    code = (f"import sys\nfor m in {list(modules)!r}: __import__(m)\n"
            "print(' '.join(sorted({n.partition('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_first_page_imports_no_scipy_or_captum():
    top = _imported(FIRST_PAGE)
    assert "torch" in top and "streamlit" in top  # the check sees real imports
    assert not {"scipy", "captum"} & top


def test_the_analysis_modules_import_scipy_only_when_called():
    assert not {"scipy", "captum"} & _imported(PAGE_MODULES)


def test_the_warmup_imports_what_the_later_pages_need_once_in_the_background():
    code = ("import sys, threading\nfrom caracal_viz import warmup\n"
            "assert not any(m.partition('.')[0] in ('scipy', 'captum') for m in sys.modules)\n"
            "t = warmup.start()\nassert warmup.start() is t and t.daemon\nt.join(120)\n"
            "assert all(m in sys.modules for m in warmup.MODULES)\n"
            "print(sum(th.name == t.name for th in threading.enumerate()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0"]  # done, and only one thread was started
