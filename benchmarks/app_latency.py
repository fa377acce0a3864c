"""How long a user waits for the app: the real server (`streamlit run app.py`) in headless Chromium.

Measures, with the default sample and a text of `--bytes` bytes (Shakespeare from data/):
- start: from launching `streamlit run` (imports included) to the first page drawn and idle;
- cold: each page's first visit after the text was typed (nothing of it cached yet);
- warm: the same page again after visiting another (every analysis cached);
- spinner: the longest time a bare spinner (st.spinner, no status or progress) stayed on screen
  during the visit (app_support.analysis shows an st.status box saying what it computes instead).
A page not ready after PAGE_TIMEOUT_S is recorded as a miss and the next one is measured.
A page is "ready" when Streamlit's script run has ended, no spinner, status widget or skeleton
shows, and every Plotly chart has drawn; the time is taken at the first moment that held for
`QUIET_S` without change (the quiet time itself is not counted).

    python3 -m benchmarks.app_latency [--bytes 1024] [--rounds 1]
    python3 -m benchmarks.app_latency --driver apptest --device cuda --bytes 4096

`--driver apptest` runs the same visits through `streamlit.testing.v1.AppTest` instead (the real
app.py and pages in this process, no server and no browser: the time is the script run, analyses
and figure serialisation included, without the browser's drawing). It is how the app is measured
on the GPU machine, which has no Chromium; `--device` picks the sidebar's device ("auto" default).
"cold" then excludes the model's loading (the first run loads it, as "start" reports).

Prints a markdown table and the machine's load (`uptime`) before and after; JSON in out/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks._util import ROOT, command, save, table
from tests.browser import CHROMIUM, CHROMIUM_ARGS, RUNNING_SELECTORS, free_port

QUIET_S = 0.5
TARGETS = {"start": 8.0, "cold": 3.0, "warm": 0.5, "spinner": 2.0}
STATE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return [app ? app.getAttribute('data-test-script-state') : null,
          main ? main.querySelectorAll('*').length : -1,
          charts.filter(c => !c.querySelector('.main-svg')).length,
          document.querySelectorAll('[data-testid="stSpinner"]').length,
          document.querySelectorAll('[data-testid="stSidebar"] [data-testid="stFileUploader"]').length];
}"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


PAGE_TIMEOUT_S = 300.0


def wait_ready(page, t0: float, timeout_s: float = PAGE_TIMEOUT_S) -> dict:
    """Poll until the page is ready (see the module docstring); the seconds since t0 at which it
    first became ready, and the longest continuous spinner seen meanwhile."""
    ready_at, last_size, spin_since, longest_spin = None, None, None, 0.0
    selectors = ",".join(RUNNING_SELECTORS)
    while True:
        state, size, undrawn, spinners, sidebar = page.evaluate(STATE_JS)
        now = time.perf_counter()
        if spinners:
            spin_since = spin_since or now
            longest_spin = max(longest_spin, now - spin_since)
        else:
            spin_since = None
        busy = (state != "notRunning" or undrawn > 0 or size != last_size or not sidebar
                or page.locator(selectors).count() > 0)
        last_size = size
        if busy:
            ready_at = None
        elif ready_at is None:
            ready_at = now
        elif now - ready_at >= QUIET_S:
            return {"s": ready_at - t0, "spinner_s": longest_spin}
        if now - t0 > timeout_s:  # recorded as a miss, and the next page is measured
            return {"s": float("nan"), "spinner_s": longest_spin, "note": f"not ready after {timeout_s:.0f} s"}
        page.wait_for_timeout(50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=1024, help="length of the text typed into the sidebar")
    ap.add_argument("--rounds", type=int, default=1, help="fresh servers to measure (the table shows each)")
    ap.add_argument("--driver", choices=("browser", "apptest"), default="browser",
                    help="the real server in Chromium, or AppTest in this process (no browser)")
    ap.add_argument("--device", default="auto", help="the sidebar's device choice (apptest driver)")
    ap.add_argument("--profile", action="store_true",
                    help="apptest driver: print each cold visit's top functions by cumulative time (cProfile)")
    args = ap.parse_args()

    text = (ROOT / "data" / "tinyshakespeare.txt").read_bytes()[: args.bytes].decode("utf-8", "ignore")
    load_before = uptime()
    rows = apptest_rows(text, args) if args.driver == "apptest" else browser_rows(text, args)
    for r in rows:
        r["target_s"] = TARGETS[r["what"]]
        r["met"] = "yes" if r["s"] <= r["target_s"] and r["spinner_s"] <= TARGETS["spinner"] else \
            r.get("note", "no")
    print(f"\nload before: {load_before}\nload after:  {uptime()}")
    print(f"command: {command()}\ndate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(table(rows, [("round", "round"), ("page", "page"), ("what", "visit"), ("s", "ready (s)"),
                       ("target_s", "target (s)"), ("spinner_s", "longest bare spinner (s)"), ("met", "met")]))
    save("app_latency", {"rows": rows, "load_before": load_before, "load_after": uptime(), "bytes": args.bytes,
                         "driver": args.driver, "device": args.device})


def apptest_rows(text: str, args) -> list[dict]:
    """The visits of browser_rows through AppTest: script-run times, no browser (spinner_s is 0:
    AppTest sees no spinner while a script runs)."""
    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1 import app_test as app_test_module

    from caracal_viz.app_support import PAGE_FILES
    from tests.security_helpers import server_pages_manager

    app_test_module.PagesManager = server_pages_manager()  # app.py on every run, as the server does
    rows = []

    def timed(at, label: str, what: str, rnd: int) -> None:
        prof = None
        if args.profile and what != "warm":
            prof = _thread_profiler()
        t = time.perf_counter()
        at.run()
        s = time.perf_counter() - t
        if prof is not None:
            import pstats
            import threading
            threading.setprofile(None)
            prof.disable()
            print(f"--- profile: {label} ({what}, {s:.2f} s), the project's functions by cumulative time")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(r"caracal_viz|models|pages", 14)
        problems = [e.value for e in at.error] + ([str(at.exception)] if at.exception else [])
        rows.append({"round": rnd, "page": label, "what": what, "s": s, "spinner_s": 0.0,
                     **({"note": f"error: {problems[0][:80]}"} if problems else {})})
        print(f"{label:20s} {what}: {s:.2f} s {rows[-1].get('note', '')}", flush=True)

    for rnd in range(args.rounds):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=PAGE_TIMEOUT_S)
        if args.device != "auto":
            at.session_state["device"] = args.device
        timed(at, "first page (Overview, example text)", "start", rnd)
        at.text_area("text_box").input(text)
        timed(at, f"Overview, new {args.bytes}-byte text", "cold", rnd)
        for what in ("cold", "warm"):
            for i, (path, title) in enumerate(PAGE_FILES):
                if what == "cold" and i == 0:
                    continue
                at.switch_page(path)
                timed(at, title, what, rnd)
    return rows


def _thread_profiler():
    """A cProfile.Profile that sees AppTest's script thread: from Python 3.12 cProfile records every
    thread (sys.monitoring); before, it is enabled from inside the next thread that starts."""
    import cProfile
    import threading
    prof = cProfile.Profile()
    if sys.version_info >= (3, 12):
        prof.enable()
    else:
        def start(*_):
            sys.setprofile(None)
            prof.enable()
        threading.setprofile(start)
    return prof


def browser_rows(text: str, args) -> list[dict]:
    """Each page's time to ready in Chromium against a fresh `streamlit run` server per round."""
    from playwright.sync_api import sync_playwright

    rows = []
    for rnd in range(args.rounds):
        port = free_port()
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
               str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
        log = open(ROOT / "out" / "app_latency_server.log", "wb") if (ROOT / "out").is_dir() else subprocess.DEVNULL
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                while True:  # the browser asks as soon as the port answers
                    try:
                        page.goto(f"http://127.0.0.1:{port}/", timeout=2000)
                        break
                    except Exception:  # noqa: BLE001 -- not listening yet
                        if proc.poll() is not None:
                            raise RuntimeError("streamlit exited") from None
                        time.sleep(0.1)
                start = wait_ready(page, t0)
                rows.append({"round": rnd, "page": "first page (Overview, example text)", "what": "start",
                             "s": start["s"], "spinner_s": start["spinner_s"]})
                box = page.locator('[data-testid="stSidebar"] textarea').first
                box.fill(text)
                t1 = time.perf_counter()
                box.press("Control+Enter")
                r = wait_ready(page, t1)
                rows.append({"round": rnd, "page": f"Overview, new {args.bytes}-byte text", "what": "cold", **r})
                links = page.locator('[data-testid="stSidebarNav"] a')
                titles = [links.nth(i).inner_text().strip().splitlines()[-1] for i in range(links.count())]
                for what in ("cold", "warm"):
                    for i, title in enumerate(titles):
                        if what == "cold" and i == 0:
                            continue  # measured above
                        t2 = time.perf_counter()
                        links.nth(i).click()
                        r = wait_ready(page, t2)
                        rows.append({"round": rnd, "page": title, "what": what, **r})
                        print(f"{title:20s} {what}: {r['s']:.2f} s (spinner {r['spinner_s']:.1f} s) "
                              f"{r.get('note', '')}", flush=True)
            finally:
                browser.close()
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return rows


if __name__ == "__main__":
    main()
