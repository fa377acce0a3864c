"""Question 4: how long does the app's full analysis of one text take, per function and in
total, for texts of 256, 1,024 and 4,096 bytes, on the GPU and on the CPU?

The analysis is what the app's pages compute for caracal-shakespeare and a new text: next-byte
view (overview), learned filters and data kernels (filters), gate report (gates), kernel impulse
responses at the page's default length 64 (causal trick), the causality certificate, the
Parseval report, the token-influence map and layer 0's mixing matrices (influence: the page builds
the layer it shows). Per length, two passes, wall clock (synchronised on the GPU): every function
once on a first text of that length, with no FFT plan, compiled kernel or cache made for the
length yet (what a user waits for after typing a text of a new length), then the median over
--reps other texts of the same length (each new to every cache that holds results: the app's
usual case). Functions that do not read the text (filters, impulses, certificate) are timed
anyway, though the app computes them once per checkpoint. --profile prints the top operators of
the slowest one.

    python3 -m benchmarks.analysis_latency [--device cpu|cuda] [--lengths 256 1024 4096] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks._util import ROOT, header, save, sync, table
from caracal_viz import causality, energy, filters, gates, impulse, influence, load_checkpoint, predict, trace
from caracal_viz.text import TextError

SOURCE = (ROOT / "benchmarks" / "analysis_text.txt")
FALLBACK = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
            "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n")


def text_of(n: int, shift: int = 0) -> str:
    base = SOURCE.read_text() if SOURCE.exists() else FALLBACK
    s = (base * (n // len(base) + 2))[shift:shift + n]
    return s.encode("utf-8")[:n].decode("utf-8", errors="ignore")


def analyses():
    return [
        # the analyses of a text include their forward pass (trace.forward_pass): a new text's cost
        ("forward_pass", lambda ck, t: trace.forward_pass(ck, t)),
        ("next_token_view", lambda ck, t: predict.next_token_view(ck, trace.forward_pass(ck, t), k=5)),
        ("learned_filters", lambda ck, t: filters.learned_filters(ck)),
        ("data_kernels", lambda ck, t: filters.data_kernels(ck, trace.forward_pass(ck, t))),
        ("gate_report", lambda ck, t: gates.gate_report(ck, trace.forward_pass(ck, t))),
        ("kernel_impulses", lambda ck, t: impulse.kernel_impulses(ck, 64)),
        ("causality_report", lambda ck, t: causality.causality_report(ck)),
        ("parseval_report", lambda ck, t: energy.parseval_report(ck, trace.forward_pass(ck, t))),
        ("token_influence", lambda ck, t: influence.token_influence(ck, t, None)),
        ("mixing_matrix", lambda ck, t: influence.mixing_matrix(ck, trace.forward_pass(ck, t), 0)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], help="analysis names to leave out")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="time a function once, without warm-up, when its time extrapolated as L^2 from the previous "
                         "length exceeds this; skip it when that exceeds 30 times this")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    rows, slowest, prev = [], None, {}

    def timed(fn, text):
        sync(dev)
        t0 = time.perf_counter()
        fn(ck, text)
        sync(dev)
        return time.perf_counter() - t0

    for L in args.lengths:
        first, again = {"L": L, "pass": "first text of this length"}, {"L": L, "pass": f"new text, median of {args.reps}"}
        first["total_s"] = again["total_s"] = 0.0
        texts = [text_of(L, shift=7 * (r + 1)) for r in range(args.reps)]
        for name, fn in analyses():
            if name in args.skip:
                continue
            predicted = prev.get(name, 0.0) * (L / max(1, prev.get(name + "_L", L))) ** 2
            if predicted > 30 * args.max_seconds:
                first[name] = again[name] = f"skipped: ~{predicted:,.0f} s predicted (L^2)"
                print(L, name, first[name], flush=True)
                continue
            try:
                t_first = timed(fn, text_of(L))
                times = [t_first] if predicted > args.max_seconds else [timed(fn, t) for t in texts]
                t = statistics.median(times)
            except TextError as e:
                first[name] = again[name] = f"refused: {str(e)[:60]}"
                continue
            first[name], again[name] = t_first, t
            first["total_s"] += t_first
            again["total_s"] += t
            prev[name], prev[name + "_L"] = t, L
            if slowest is None or t > slowest[2]:
                slowest = (name, L, t)
            print(L, name, t_first, t, flush=True)
        rows += [first, again]
    result = {"device": dev, "rows": rows, "threads": torch.get_num_threads(), "loadavg": os.getloadavg()}
    if args.profile and slowest:
        name, L, _ = slowest
        fn = dict(analyses())[name]
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
        with profile(activities=acts) as p:
            fn(ck, text_of(L))
            sync(dev)
        key = "self_cuda_time_total" if dev == "cuda" else "self_cpu_time_total"
        result["profile"] = p.key_averages().table(sort_by=key, row_limit=12)
    save(f"analysis_latency_{dev}", result)
    print(header(f"Analysis latency: caracal-shakespeare, {dev}", dev))
    print(f"torch threads: {torch.get_num_threads()}; load average at the end: {os.getloadavg()[0]:.1f}; seconds. "
          f"Per length, the first text (FFT plans, kernels and caches for this length not yet made: what a user "
          f"waits for after typing a text of a new length), then the median over {args.reps} other texts of the same "
          f"length (each new to every cache that holds results)\n")
    names = [n for n, _ in analyses() if n not in args.skip]
    print(table(rows, [("L", "bytes"), ("pass", "pass")] + [(n, n) for n in names] + [("total_s", "total s")]))
    if "profile" in result:
        print(f"\nprofile of {slowest[0]} at {slowest[1]} bytes:\n{result['profile']}")


if __name__ == "__main__":
    main()
