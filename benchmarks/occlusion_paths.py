"""Occlusion's forward passes two ways on the same edited texts: every text run whole
(`attribution._plain_scores`) and the causal suffix path (`attribution._suffix_scores`: only the
positions after each text's first edit, the FFT product updated). The prediction is the text's
last (position L-2). Timed in process CPU seconds on the CPU (insensitive to other processes on
a shared machine), wall clock synchronised on a GPU; best of `--reps`, after a warm-up. Prints the
ratio and the largest difference between the two paths' occlusion scores (nats).

    python3 -m benchmarks.occlusion_paths [--device cpu] [--length 1024] [--every 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks._util import ROOT, header, save, sync, table
from benchmarks.analysis_latency import text_of
from caracal_viz import attribution, load_checkpoint


def _timed(fn, dev: str) -> float:
    clock = time.process_time if dev == "cpu" else time.perf_counter
    sync(dev)
    t = clock()
    fn()
    sync(dev)
    return clock() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--every", type=int, default=6, help="occlude every k-th byte (1: every byte)")
    ap.add_argument("--samples", nargs="+", default=["caracal-periodic", "caracal-shakespeare"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev, L = args.device, args.length
    print(header(f"occlusion: whole-text passes against the causal suffix path, {L} bytes", dev))
    rows = []
    for name in args.samples:
        ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{name}.safetensors", device=dev)
        ids = np.frombuffer(text_of(L).encode(), dtype=np.uint8).astype(np.int64)
        edit = np.flatnonzero(ids != attribution.DEFAULT_BASELINE_BYTE)[::args.every]
        texts = np.repeat(ids[None], edit.size, axis=0)
        texts[np.arange(edit.size), edit] = attribution.DEFAULT_BASELINE_BYTE
        out = {}
        paths = (("plain", attribution._plain_scores), ("suffix", attribution._suffix_scores))
        for _path, fn in paths:
            fn(ck, ids, texts[:8], L - 2)  # warm-up
        times = {"plain": [], "suffix": []}
        for _ in range(args.reps):  # interleaved, so a change of load hits both
            for path, fn in paths:
                times[path].append(_timed(lambda fn=fn, path=path: out.__setitem__(path, fn(ck, ids, texts, L - 2)), dev))
        diff = np.abs((out["plain"][1] - out["plain"][0]) - (out["suffix"][1] - out["suffix"][0])).max()
        row = {"sample": name, "texts": int(edit.size), "plain_s": min(times["plain"]), "suffix_s": min(times["suffix"]),
               "load": os.getloadavg()[0], "max_diff": float(diff)}
        row["ratio"] = row["plain_s"] / row["suffix_s"]
        rows.append(row)
        print(f"{name}: {row['plain_s']:.2f} s -> {row['suffix_s']:.2f} s ({row['ratio']:.2f}x)", flush=True)
    print()
    print(table(rows, [("sample", "sample"), ("texts", "occluded texts"), ("plain_s", "whole texts (s)"),
                       ("suffix_s", "suffix path (s)"), ("ratio", "ratio"), ("max_diff", "max |diff| (nats)"),
                       ("load", "load")]))
    save(f"occlusion_paths_{dev}_{L}", {"rows": rows})


if __name__ == "__main__":
    main()
