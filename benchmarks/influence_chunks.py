"""Question 4, the hot spot: what does the token-influence map's time depend on? The map
(caracal_viz.influence.token_influence) is one backward pass per row, batched with torch.func
vmap over a vjp pullback, the MHF's FFT products in float32. Timed here: rows per batched pass
(its chunk_size) and, for a causal model, running each span of rows on the prefix it can read
(as shipped) against every row on the whole text. Every variant is checked against the
shipped default's values. Peak GPU memory per variant on CUDA.

    python3 -m benchmarks.influence_chunks [--device cuda] [--length 4096] [--chunks 16 64 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._util import ROOT, header, save, sync, table
from benchmarks.analysis_latency import text_of
from caracal_viz import influence, load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", type=int, default=0, metavar="CHUNK",
                    help="also profile one shipped run with this many rows per pass; print the top operators")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    text = text_of(args.length)
    ids = torch.tensor(list(text.encode("utf-8")), device=ck.device)
    influence.token_influence(ck, text_of(64, 3), None)  # warm-up

    def timed(name, chunk, fn):
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(dev)
        t0 = time.perf_counter()
        vals = fn()
        sync(dev)
        row = {"variant": name, "chunk": chunk, "seconds": time.perf_counter() - t0,
               "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if dev == "cuda" else float("nan")}
        print(row, flush=True)
        return row, vals

    first, ref = timed("token_influence as shipped", "default", lambda: influence.token_influence(ck, text).values[:-1])
    first["rel_diff"] = 0.0
    rows = [first]
    scale = np.abs(ref).max()
    for chunk in args.chunks:
        variants = [("spans on their prefix (shipped)",
                     lambda: influence.token_influence(ck, text, chunk_size=chunk).values[:-1]),
                    ("every row on the whole text",
                     lambda: influence._gradient_norms(ck.model, ids, 0, chunk, causal=False))]
        for name, fn in variants:
            try:
                row, vals = timed(name, chunk, fn)
                row["rel_diff"] = float(np.abs(np.tril(vals) - np.tril(ref)).max() / scale)
            except torch.OutOfMemoryError:
                row = {"variant": name, "chunk": chunk, "seconds": "out of memory"}
                torch.cuda.empty_cache()
            rows.append(row)
    result = {"rows": rows, "length": args.length}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
        with profile(activities=acts) as p:
            influence.token_influence(ck, text, chunk_size=args.profile)
            sync(dev)
        key = "self_cuda_time_total" if dev == "cuda" else "self_cpu_time_total"
        result["profile"] = p.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70)
    save(f"influence_chunks_{dev}", result)
    print(header(f"Token influence of caracal-shakespeare, {args.length} bytes, {dev}", dev))
    print("one run each after a warm-up at 64 bytes; rel diff = max |values - shipped| / max |shipped| on and "
          "below the diagonal\n")
    print(table(rows, [("variant", "variant"), ("chunk", "rows per pass"), ("seconds", "seconds"),
                       ("peak_gb", "peak GPU GB"), ("rel_diff", "rel diff")]))
    if "profile" in result:
        print(f"\nprofile of token_influence(chunk_size={args.profile}):\n{result['profile']}")


if __name__ == "__main__":
    main()
