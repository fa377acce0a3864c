"""Probe (issue 16 target 1): the influence map's paths and precisions against the float32
autograd map, per sample, at one length.

For each sample the hand-written backward (caracal_viz/influence_backward.py) supports, two new
texts (the first of this length after a 64-byte warm-up, then a second): the plain autograd path
(`influence._gradient_norms(path="plain")`, float32, what the app ran before) is the reference;
every fast variant (matrix products in fp32 / bf16x3 / bf16x6; rows per pass) is timed and its
error measured as max |map - reference| on and below the diagonal over the reference's scale
(its largest entry there), and its upper triangle over its scale. The float64 fast path gives
the reference's own float32 error. --profile N prints the top CUDA operators of the shipped path
with N rows per pass.

    python3 -m benchmarks.influence_probe [--device cuda] [--length 4096] [--profile 256]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._util import ROOT, header, save, sync, table
from benchmarks.analysis_latency import text_of
from caracal_viz import influence, influence_backward, load_checkpoint

SAMPLES = ["caracal-shakespeare", "caracal-periodic", "caracal-long", "caracal-circular-leaky"]
VARIANTS = [("torch", "fp32", 256), ("torch", "bf16x3", 256), ("triton", "fp32", 256), ("triton", "tf32", 256),
            ("triton", "tf32x3", 256), ("triton", "tf32x3", 128), ("triton", "tf32x3", 512)]


def timed(fn, dev):
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--samples", nargs="+", default=SAMPLES)
    ap.add_argument("--profile", type=int, default=0)
    args = ap.parse_args()
    dev, L = args.device, args.length
    rows = []
    for name in args.samples:
        ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{name}.safetensors", device=dev)
        causal = ck.config.is_causal
        ids = [torch.tensor(list(text_of(L, 7 * (r + 1)).encode())[:L], device=dev) for r in range(2)]
        influence.token_influence(ck, text_of(64, 3))  # CUDA/cuFFT start-up, not this length's plans
        variants = [("plain autograd (before)", lambda i: influence._gradient_norms(ck.model, i, 0, 256, causal,
                                                                                     path="plain"))]
        for backend, gemm, chunk in VARIANTS:
            variants.append((f"fast {backend} {gemm}, {chunk} rows", lambda i, b=backend, g=gemm, c=chunk:
                             influence_backward.gradient_norms(ck.model, i, 0, c, causal, gemm=g, backend=b)))
        variants.append(("fast float64, 256 rows", lambda i: influence_backward.gradient_norms(
            ck.model, i, 0, 256, causal, dtype=torch.float64)))
        ref = None
        for label, fn in variants:
            try:
                t1, v = timed(lambda: fn(ids[0]), dev)
                t2, _ = timed(lambda: fn(ids[1]), dev)
            except Exception as e:  # noqa: BLE001  (a variant that cannot run is a row that says why)
                print({"sample": name, "variant": label, "failed": f"{type(e).__name__}: {str(e)[:300]}"}, flush=True)
                continue
            if ref is None:
                ref = v
            scale = np.tril(ref).max()
            row = {"sample": name, "variant": label, "first": t1, "second": t2,
                   "rel_err": float(np.abs(np.tril(v) - np.tril(ref)).max() / scale),
                   "upper_rel": float(np.triu(v, 1).max() / np.tril(v).max()),
                   "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if dev == "cuda" else float("nan")}
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            print(row, flush=True)
            rows.append(row)
        if args.profile and name == args.samples[0]:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
                influence.token_influence(ck, text_of(L, 11), chunk_size=args.profile)
                sync(dev)
            print(f"\nprofile of token_influence (shipped path, {args.profile} rows):\n"
                  + p.key_averages().table(sort_by="self_cuda_time_total", row_limit=22, max_name_column_width=60))
    save(f"influence_probe_{dev}", {"rows": rows})
    print(header(f"influence map paths at {L} bytes", dev))
    print(table(rows, [("sample", "sample"), ("variant", "variant"), ("first", "first text s"),
                       ("second", "second text s"), ("rel_err", "error / scale"), ("upper_rel", "upper / scale"),
                       ("peak_gb", "peak GB")]))


if __name__ == "__main__":
    main()
