"""How big and how tall the offline HTML report is (caracal_viz.report.write_report), per sample.

For each sample: the report of a text of --bytes bytes (the Shakespeare example, repeated and cut),
its size on disk, how much of it is plotly.js, the number of figures, and the page's height in a
headless Chromium at 1280 px wide. Size and height, not time: the numbers do not depend on the
machine's load.

    python -m benchmarks.report_size [--bytes 97] [--samples a,b] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import tempfile
from pathlib import Path

import plotly.offline

SAMPLES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare")
ROOT = Path(__file__).resolve().parent.parent


def page_height(path: Path) -> int:
    """document height in px of the report at 1280 x 900, every figure drawn."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.as_uri(), wait_until="load", timeout=300_000)
            page.wait_for_function("document.querySelectorAll('.figure .main-svg').length >= "
                                   "document.querySelectorAll('.figure').length", timeout=300_000)
            return int(page.evaluate("document.documentElement.scrollHeight"))
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=97, help="length of the text in bytes (default 97)")
    ap.add_argument("--samples", default=",".join(SAMPLES))
    ap.add_argument("--out", type=Path, default=None, help="keep the reports in this folder")
    args = ap.parse_args()

    from caracal_viz.app_support import example_text
    from caracal_viz.checkpoint import load_checkpoint
    from caracal_viz.report import write_report

    out = args.out or Path(tempfile.mkdtemp(prefix="report-size-"))
    out.mkdir(parents=True, exist_ok=True)
    js = len(plotly.offline.get_plotlyjs().encode("utf-8"))
    print(f"# report size, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; plotly.js inlined: {js / 1e6:.2f} MB")
    print("| sample | text bytes | figures | size (MB) | size without plotly.js (MB) | height (px, 1280 wide) |")
    print("|---|---|---|---|---|---|")
    for name in args.samples.split(","):
        base = example_text(name)
        text = (base * (args.bytes // max(len(base), 1) + 1)).encode("utf-8")[: args.bytes].decode("utf-8", "ignore")
        ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{name}.safetensors")
        path = write_report(ck, text, out / f"{name}.html")
        doc = path.read_text(encoding="utf-8")
        n_fig = len(re.findall(r'class="figure"', doc))
        size = path.stat().st_size
        print(f"| {name} | {len(text.encode('utf-8'))} | {n_fig} | {size / 1e6:.2f} | {(size - js) / 1e6:.2f} | "
              f"{page_height(path):,} |", flush=True)


if __name__ == "__main__":
    main()
