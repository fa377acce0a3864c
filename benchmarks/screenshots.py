"""Full-page screenshots of every page of the real app with every sample, at 1280 and 900 px
wide, in headless Chromium, for a person to look at (overlaps, clipped labels, unreadable
legends, empty panels). Not a benchmark of time: it prints where each image went and any error
box a page showed.

    python -m benchmarks.screenshots [--out /work/tools/shots] [--samples a,b] [--pages overview,...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

SAMPLES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare")
PAGES = ("", "spectral_filters", "modrelu_gates", "causal_trick", "parseval_energy", "token_influence", "compare",
         "interventions")  # the URL path of each page ("" is the Overview)
WIDTHS = (1280, 900)
MAX_HEIGHT = 16_000
HEIGHT_JS = """() => Math.max(...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stMain"] *')]
  .filter(e => e.scrollHeight > e.clientHeight + 2).map(e => e.scrollHeight), 900)"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/work/tools/shots"))
    ap.add_argument("--samples", default=",".join(SAMPLES))
    ap.add_argument("--pages", default=",".join(p or "overview" for p in PAGES))
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, error_texts, streamlit_server, wait_until_idle

    args.out.mkdir(parents=True, exist_ok=True)
    pages = ["" if p == "overview" else p for p in args.pages.split(",")]
    with streamlit_server(args.out / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
            for sample in args.samples.split(","):
                for path in pages:
                    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
                    page.goto(f"{url}/{path}?ck={sample}")
                    page.wait_for_selector('[data-testid="stSidebar"]', timeout=120_000)
                    for width in WIDTHS:
                        page.set_viewport_size({"width": width, "height": 900})
                        wait_until_idle(page, timeout_s=300)
                        # Streamlit scrolls its main area inside the window: a window as tall as
                        # that area shows all of it
                        tall = min(MAX_HEIGHT, int(page.evaluate(HEIGHT_JS)))
                        page.set_viewport_size({"width": width, "height": max(900, tall)})
                        page.wait_for_timeout(800)
                        wait_until_idle(page, timeout_s=300)
                        name = args.out / f"{sample}_{path or 'overview'}_{width}.png"
                        page.screenshot(path=str(name))
                        errors = error_texts(page)
                        print(f"{name}{'  ERRORS: ' + ' | '.join(errors) if errors else ''}", flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
