"""Question 4, the hot spot: what does token influence's time (caracal_viz.influence.token_influence,
L backward passes batched by autograd.grad(is_grads_batched=True)) depend on? Rows per batched
pass (its chunk_size), the batching mechanism (torch.func.vmap over torch.func.vjp, which
uses the model's batched FFT backward rule), and, for causal models, running each chunk of rows
on the prefix they can see. Every variant is checked against token_influence's values.

    python3 benchmarks/influence_chunks.py [--device cuda] [--length 4096] [--chunks 16 64 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _util import ROOT, header, save, sync, table
from analysis_latency import text_of

from caracal_viz import influence, load_checkpoint


def func_norms(ck, text, chunk, prefix):
    from torch.func import vjp, vmap
    model = ck.model
    ids = torch.tensor(list(text.encode("utf-8")), device=ck.device)
    L = ids.shape[0]
    with torch.no_grad():
        x0 = model.tok_emb(ids)[None]
    out = torch.zeros(L - 1, L, dtype=torch.float64, device=ck.device)

    def scorer(end):
        def scored(x):
            h = x
            for block in model.blocks:
                h = block(h)
            logp = torch.log_softmax(model.head(model.ln_f(h))[0].double(), dim=-1)
            return logp[torch.arange(end - 1, device=ids.device), ids[1:end]]
        return scored
    pull = None if prefix else vjp(scorer(L), x0)[1]
    for s in range(0, L - 1, chunk):
        e = min(s + chunk, L - 1)
        if prefix:  # rows s..e-1 read positions 0..e-1 only (causal model)
            _, pull_e = vjp(scorer(e + 1), x0[:, : e + 1])
        else:
            pull_e = pull
        n_out = (e + 1 if prefix else L) - 1
        cot = torch.zeros(e - s, n_out, dtype=torch.float64, device=ck.device)
        cot[torch.arange(e - s), torch.arange(s, e)] = 1.0
        (grad,) = vmap(pull_e)(cot)
        out[s:e, : grad.shape[-2]] = grad[:, 0].detach().double().norm(dim=-1)
    return out.cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    text = text_of(args.length)
    influence.token_influence(ck, text_of(64, 3), None)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    ref = influence.token_influence(ck, text, None).values[:-1]
    sync(dev)
    rows = [{"variant": "token_influence as shipped (is_grads_batched)", "chunk": "default", "seconds": time.perf_counter() - t0,
             "rel_diff": 0.0}]
    print(rows[-1], flush=True)
    scale = np.abs(ref).max()
    for chunk in args.chunks:
        variants = [("token_influence(chunk_size=...)", lambda: influence.token_influence(ck, text, None, chunk_size=chunk).values[:-1]),
                    ("torch.func vmap(vjp)", lambda: func_norms(ck, text, chunk, False)),
                    ("torch.func vmap(vjp), causal prefix per chunk", lambda: func_norms(ck, text, chunk, True))]
        for name, fn in variants:
            sync(dev)
            t0 = time.perf_counter()
            vals = fn()
            sync(dev)
            rows.append({"variant": name, "chunk": chunk, "seconds": time.perf_counter() - t0,
                         "rel_diff": float(np.abs(vals - ref).max() / scale)})
            print(rows[-1], flush=True)
    save(f"influence_chunks_{dev}", {"rows": rows, "length": args.length})
    print(header(f"Token influence of caracal-shakespeare, {args.length} bytes, {dev}", dev))
    print("one run each after a warm-up at 64 bytes; rel diff = max |values - shipped| / max |shipped|\n")
    print(table(rows, [("variant", "variant"), ("chunk", "rows per pass"), ("seconds", "seconds"), ("rel_diff", "rel diff")]))


if __name__ == "__main__":
    main()
