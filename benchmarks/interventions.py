"""How long the whole intervention sweep takes (caracal_viz.interventions.sweep): every layer x head
zeroed and every layer x head x band stopped (8 log-spaced bands), batched (per block, every
ablated copy runs from that block on in one batch, start_at_layer), against the same ablations
run one forward pass each through run_with_hooks (the unbatched way). The MHF FFT products in
their default float64, and in float32 (mhf.fft_options); the float32 sweep's largest difference
from the float64 one is printed.

    python3 -m benchmarks.interventions [--device cuda] [--length 4096] [--samples caracal-shakespeare] [--threads 1]

Targets (issue 11): the sweep at 512 bytes on the 2-core CPU < 20 s; at 4,096 bytes on the GPU < 2 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._util import ROOT, header, save, sync, table
from benchmarks.analysis_latency import text_of
from benchmarks.generation import timed
from caracal_viz import interventions as iv
from caracal_viz import load_checkpoint
from models.mhf import fft_options


def unbatched(ck, text: str, n_bands: int) -> float:
    """The same ablations as the sweep, one run_with_hooks forward pass each: seconds."""
    ids = torch.tensor([list(text.encode("utf-8"))], device=ck.device)
    edges = iv.sweep_band_edges(ck.config.context, n_bands)
    jobs = []
    for k in range(ck.config.n_layers):
        if ck.config.layer_kind(k) == "swa":
            continue
        for h in range(ck.config.n_heads):
            jobs.append(iv.head_hooks(ck, k, h))
            for b in range(n_bands):
                try:
                    jobs.append(iv.band_hooks(ck, k, h, (edges[b], edges[b + 1])))
                except ValueError:  # a band with no bin of this grid
                    pass
    sync(ck.device.type)
    t0 = time.perf_counter()
    with torch.no_grad():
        for hooks in jobs:
            ck.model.run_with_hooks(ids, fwd_hooks=hooks)
    sync(ck.device.type)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--length", type=int, default=None, help="bytes (default 4096 on cuda, 512 on the CPU)")
    ap.add_argument("--samples", nargs="+", default=["caracal-shakespeare", "caracal-periodic", "fftnet-shakespeare"])
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-unbatched", action="store_true", help="skip the one-pass-per-ablation baseline")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    L = args.length or (4096 if dev == "cuda" else 512)
    text = text_of(L)
    print(header(f"Intervention sweep: every layer x head x {args.bands} bands at {L} bytes", dev))
    rows = []
    for name in args.samples:
        ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{name}.safetensors", device=dev)
        n_variants = sum(ck.config.n_heads * (1 + args.bands) for k in range(ck.config.n_layers)
                         if ck.config.layer_kind(k) != "swa")
        with torch.no_grad():
            iv.sweep(ck, text, n_bands=args.bands)  # warm-up
            t64, s64 = timed(lambda: iv.sweep(ck, text, n_bands=args.bands), dev, args.reps)
            with fft_options(torch.float32):
                t32, s32 = timed(lambda: iv.sweep(ck, text, n_bands=args.bands), dev, args.reps)
        diff = float(np.nanmax(np.abs(np.concatenate([(s32.head_delta - s64.head_delta).ravel(),
                                                      (s32.band_delta - s64.band_delta).ravel()]))))
        row = {"checkpoint": name, "bytes": L, "variants": n_variants, "sweep_s": t64, "sweep_f32_s": t32,
               "f32_max_diff": diff, "bits_per_byte": s64.bits_clean}
        if not args.no_unbatched:
            row["unbatched_s"] = unbatched(ck, text, args.bands)
            row["speedup"] = row["unbatched_s"] / t64
        worst = np.unravel_index(np.nanargmax(s64.head_delta), s64.head_delta.shape)
        row["top_head"] = f"block {worst[0]} head {worst[1]} (+{np.nanmax(s64.head_delta):.3f})"
        rows.append(row)
        print(f"{name}: sweep {t64:.2f} s (float32 FFTs {t32:.2f} s, max diff {diff:.1e} bits/byte)"
              + ("" if args.no_unbatched else f"; one pass per ablation {row['unbatched_s']:.2f} s"), flush=True)
    cols = [("checkpoint", "checkpoint"), ("bytes", "bytes"), ("variants", "ablations"), ("sweep_s", "sweep (s)"),
            ("sweep_f32_s", "sweep, float32 FFTs (s)"), ("f32_max_diff", "float32 max diff (bits/byte)")]
    if not args.no_unbatched:
        cols += [("unbatched_s", "one pass each (s)"), ("speedup", "batched speed-up")]
    cols += [("top_head", "head the text needs most")]
    print()
    print(table(rows, cols))
    save(f"interventions_{dev}_{L}", {"rows": rows, "device": dev, "length": L, "bands": args.bands})


if __name__ == "__main__":
    main()
