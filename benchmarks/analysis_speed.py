"""How long the analysis engine takes: every analysis of one text, one function at a time and
all together (what `python -m caracal_viz analyze` runs), on the CPU or the GPU.

  python3 benchmarks/analysis_speed.py [--checkpoint NAME] [--bytes 512] [--device cpu]

The text is the first N bytes of data/tinyshakespeare.txt. Each row is the median of a few
repetitions after a warm-up run (see _util.bench); "load" is one cold load of the checkpoint.
"""

from __future__ import annotations

import argparse
import time

from _util import ROOT, bench, header, save, table

from caracal_viz import load_checkpoint
from caracal_viz.causality import causality_report
from caracal_viz.cli import analyze
from caracal_viz.energy import parseval_report
from caracal_viz.filters import data_kernels, fftnet_filters, learned_filters
from caracal_viz.gates import gate_report
from caracal_viz.impulse import kernel_impulses
from caracal_viz.trace import run_trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="caracal-shakespeare")
    ap.add_argument("--bytes", type=int, default=512)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    text = (ROOT / "data" / "tinyshakespeare.txt").read_bytes()[: args.bytes].decode("utf-8", errors="ignore")
    t0 = time.perf_counter()
    ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{args.checkpoint}.safetensors", device=args.device)
    rows = [{"what": "load_checkpoint (cold)", "median_ms": (time.perf_counter() - t0) * 1e3, "reps": 1}]
    L = len(text.encode())
    calls = {
        "run_trace": lambda: run_trace(ck, text),
        "learned_filters": lambda: learned_filters(ck),
        "data_kernels": lambda: data_kernels(ck, text),
        "fftnet_filters": lambda: fftnet_filters(ck, text),
        "gate_report(text)": lambda: gate_report(ck, text),
        "kernel_impulses(L)": lambda: kernel_impulses(ck, L),
        "parseval_report": lambda: parseval_report(ck, text),
        "causality_report (lengths 16, 512; 3 trials)": lambda: causality_report(ck),
        "analyze (all of the above, one trace)": lambda: analyze(ck, text),
    }
    for name, fn in calls.items():
        rows.append({"what": name, **bench(fn, args.device, warmup=1, min_reps=3, max_reps=5, budget_s=0.0)})
    print(header(f"Analysis engine: {args.checkpoint}, {L}-byte text", args.device))
    print(table(rows, [("what", "analysis"), ("median_ms", "median ms"), ("min_ms", "min ms"), ("reps", "reps")]))
    save(f"analysis_speed_{args.checkpoint}_{args.device}", {"checkpoint": args.checkpoint, "bytes": L, "rows": rows})


if __name__ == "__main__":
    main()
