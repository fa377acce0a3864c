"""Probe (issue 16): where the 4,096-byte influence map's GPU time goes and what lower precision
costs in error. Variants of influence._gradient_norms: float32 (as shipped), TF32 matmuls,
float16 / bfloat16 autocast over the pullback's forward. Errors against the float32 map,
relative to its scale; plus a leaky checkpoint's upper triangle.

    python3 -m benchmarks.influence_probe [--device cuda] [--length 4096]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from benchmarks._util import ROOT, header, save, sync, table
from benchmarks.analysis_latency import text_of
from caracal_viz import influence, load_checkpoint
from models.mhf import MultiHeadFourier, fft_options


@contextlib.contextmanager
def tf32(on: bool):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def norms(model, ids, chunk, amp=None, use_tf32=False, same_size=True):
    from torch.func import vjp, vmap
    L = ids.shape[0]
    chunk = min(chunk, L - 1)
    dev = ids.device
    mixers = [b.mixer for b in model.blocks if isinstance(b.mixer, MultiHeadFourier)]
    min_size = max(m.fft_size(L) for m in mixers) if same_size else 0
    out = torch.zeros((L - 1, L), device=dev)
    with tf32(use_tf32):
        for first, end, length in influence._row_spans(L - 1, chunk, True):
            part, targets = ids[:length], ids[1:end + 1]
            with torch.no_grad():
                x = model(part[None], stop_at_layer=0)

            def scored(x0):
                logp = torch.log_softmax(model(x0, start_at_layer=0)[0, :end].float(), dim=-1)
                return logp[torch.arange(end, device=dev), targets]
            ac = torch.autocast("cuda", dtype=amp) if amp else contextlib.nullcontext()
            with torch.enable_grad(), fft_options(torch.float32, min_size), ac:
                _, pull = vjp(scored, x.detach())
            with torch.no_grad(), fft_options(torch.float32, min_size):
                for s in range(first, end, chunk):
                    n = min(chunk, end - s)
                    cot = torch.zeros(chunk, end, device=dev, dtype=torch.float32)
                    cot[torch.arange(n), torch.arange(s, s + n)] = 1.0
                    (grad,) = vmap(pull)(cot)
                    out[s:s + n, :length] = grad[:n, 0].float().norm(dim=-1)
    return out.double().cpu().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=256)
    args = ap.parse_args()
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    leaky = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-circular-leaky.safetensors", device=dev)
    L = args.length
    texts = [text_of(L, 7 * (r + 1)) for r in range(2)]
    ids = [torch.tensor(list(t.encode()), device=dev) for t in texts]
    influence.token_influence(ck, text_of(64, 3))
    rows = []
    variants = [("float32 (shipped)", {}), ("tf32 matmuls", {"use_tf32": True}),
                ("fp16 autocast fwd", {"amp": torch.float16}), ("bf16 autocast fwd", {"amp": torch.bfloat16}),
                ("fp16 + tf32", {"amp": torch.float16, "use_tf32": True}),
                ("tf32, size per span", {"use_tf32": True, "same_size": False})]
    ref = None
    for name, kw in variants:
        try:
            times, vals = [], None
            for r in range(2):
                sync(dev)
                t0 = time.perf_counter()
                v = norms(ck.model, ids[r], args.chunk, **kw)
                sync(dev)
                times.append(time.perf_counter() - t0)
                if r == 0:
                    vals = v
            if ref is None:
                ref = vals
            scale = np.tril(ref).max()
            err = float(np.abs(np.tril(vals) - np.tril(ref)).max() / scale)
            upper = float(np.triu(vals, 1).max() / scale)
            row = {"variant": name, "first": times[0], "second": times[1], "rel_err": err, "upper_rel": upper}
        except Exception as e:  # noqa: BLE001
            row = {"variant": name, "first": f"failed: {type(e).__name__}: {str(e)[:80]}"}
        print(row, flush=True)
        rows.append(row)
    # leaky sample upper triangle (at 1024 bytes, fp16 autocast and float32)
    lid = torch.tensor(list(text_of(1024, 5).encode()), device=dev)
    for name, kw in [("leaky float32", {}), ("leaky fp16", {"amp": torch.float16}), ("leaky tf32", {"use_tf32": True})]:
        try:
            from torch.func import vjp  # noqa: F401
            v = norms_noncausal(leaky.model, lid, args.chunk, **kw)
            scale = np.tril(v).max()
            rows.append({"variant": name, "upper_rel": float(np.triu(v, 1).max() / scale)})
        except Exception as e:  # noqa: BLE001
            rows.append({"variant": name, "first": f"failed: {str(e)[:80]}"})
        print(rows[-1], flush=True)
    from torch.profiler import ProfilerActivity, profile
    for name, kw in [("tf32", {"use_tf32": True}), ("fp16+tf32", {"amp": torch.float16, "use_tf32": True})]:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            norms(ck.model, ids[0], args.chunk, **kw)
            sync(dev)
        print(f"\nprofile {name}:\n" + p.key_averages().table(sort_by="self_cuda_time_total", row_limit=25,
                                                            max_name_column_width=60))
    save(f"influence_probe_{dev}", {"rows": rows})
    print(header(f"influence probe {L}", dev))
    print(table(rows, [("variant", "variant"), ("first", "first s"), ("second", "second s"),
                       ("rel_err", "rel err"), ("upper_rel", "upper/scale")]))


def norms_noncausal(model, ids, chunk, amp=None, use_tf32=False):
    from torch.func import vjp, vmap
    L = ids.shape[0]
    dev = ids.device
    out = torch.zeros((L - 1, L), device=dev)
    with tf32(use_tf32):
        with torch.no_grad():
            x = model(ids[None], stop_at_layer=0)
        targets = ids[1:]

        def scored(x0):
            logp = torch.log_softmax(model(x0, start_at_layer=0)[0, :L - 1].float(), dim=-1)
            return logp[torch.arange(L - 1, device=dev), targets]
        ac = torch.autocast("cuda", dtype=amp) if amp else contextlib.nullcontext()
        with torch.enable_grad(), fft_options(torch.float32), ac:
            _, pull = vjp(scored, x.detach())
        with torch.no_grad(), fft_options(torch.float32):
            for s in range(0, L - 1, chunk):
                n = min(chunk, L - 1 - s)
                cot = torch.zeros(n, L - 1, device=dev)
                cot[torch.arange(n), torch.arange(s, s + n)] = 1.0
                (grad,) = vmap(pull)(cot)
                out[s:s + n] = grad[:, 0].float().norm(dim=-1)
    return out.double().cpu().numpy()


if __name__ == "__main__":
    main()
