"""Attribution methods for one prediction (caracal_viz.attribution.attribute): every method, both
faithfulness curves and the random baseline, per sample checkpoint, at one text length.

Timed: the whole `attribute` call (the number a user waits for), after a warm-up (Captum's
import; on CUDA another text of the same length, for cuFFT's plans of its sizes), and its parts as the report records them; the forward passes it
ran (occlusion: one per byte not equal to the baseline byte; curves: one per distinct edited
text). The prediction is the text's last (position L-2: the whole text is read). The machine's
load average is printed before and after each sample: the 2-core CPU is shared.

    python3 -m benchmarks.attribution [--device cpu|cuda] [--length 1024] [--samples caracal-shakespeare ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks._util import ROOT, header, save, table
from benchmarks.analysis_latency import text_of
from caracal_viz import load_checkpoint
from caracal_viz.attribution import attribute

SAMPLES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--length", type=int, default=0, help="text bytes (default: 4096 on cuda, 1024 on cpu)")
    ap.add_argument("--samples", nargs="+", default=list(SAMPLES))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    L = args.length or (4096 if dev == "cuda" else 1024)
    print(header(f"attribution: every method and both curves for one prediction, {L} bytes", dev))
    rows = []
    for name in args.samples:
        ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{name}.safetensors", device=dev)
        text = text_of(L)
        # warm-up: Captum's import; on CUDA another text of this length (cuFFT plans and work areas of its sizes)
        attribute(ck, text_of(L if dev == "cuda" else 64, 7), (L if dev == "cuda" else 64) - 2)
        load_before = os.getloadavg()[0]
        times, rep = [], None
        for _ in range(args.reps):
            t = time.perf_counter()
            rep = attribute(ck, text, L - 2)
            times.append(time.perf_counter() - t)
        load_after = os.getloadavg()[0]
        ig = rep.methods["integrated_gradients"]
        row = {"sample": name, "bytes": L, "total_s": min(times), "gradients_s": rep.seconds.get("gradients"),
               "ig_s": rep.seconds.get("integrated_gradients"), "ig_steps": ig.steps,
               "occlusion_s": rep.seconds.get("occlusion"), "occlusion_passes": rep.passes.get("occlusion"),
               "curves_s": rep.seconds.get("curves"), "curve_points": int(rep.ks.size), "curve_passes": rep.passes.get("curves"),
               "load_before": load_before, "load_after": load_after, "reps": len(times),
               "ig_delta": ig.delta, "aopc_del_occlusion": rep.aopc_deletion["occlusion"],
               "aopc_del_random": rep.aopc_deletion["random"]}
        rows.append(row)
        print(f"{name}: {row['total_s']:.2f} s (load {load_before:.2f} -> {load_after:.2f})", flush=True)
        if dev == "cuda":
            del ck
            torch.cuda.empty_cache()
    print()
    print(table(rows, [("sample", "sample"), ("bytes", "bytes"), ("total_s", "total (s)"),
                       ("gradients_s", "gradients (s)"), ("ig_s", "IG (s)"), ("ig_steps", "IG steps"),
                       ("occlusion_s", "occlusion (s)"), ("occlusion_passes", "occlusion passes"),
                       ("curves_s", "curves (s)"), ("curve_points", "curve points"), ("curve_passes", "curve passes"),
                       ("load_before", "load before"), ("load_after", "load after")]))
    save(f"attribution_{dev}_{L}", {"rows": rows, "header": header("attribution", dev)})


if __name__ == "__main__":
    main()
