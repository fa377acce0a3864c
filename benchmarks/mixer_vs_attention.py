"""Question 1: how does the MHF mixer (causal_mode 'pad') compare with causal attention through
PyTorch SDPA (the flash backend on the GPU) at the same width, as the length grows?

Both are whole mixer modules of the project (models.mhf.MultiHeadFourier, and
models.attention.CausalSelfAttention with no window and no rotary positions), float32 weights
under bf16 autocast as training runs them: the MHF's FFTs in float32, everything else in bf16.
'mhf fast' is the module's default path, 'mhf plain' the reference path (`fast = False`).
fwd runs under torch.no_grad in eval mode; fwd+bwd backpropagates a random output gradient into
the input and every parameter. Times are medians of repeated runs after warm-up (CUDA events).

    python3 -m benchmarks.mixer_vs_attention [--device cuda] [--batch 1 8] [--lengths 1024 4096 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import math

import torch

from benchmarks._util import bench, header, is_oom, save, sync, table
from models.attention import CausalSelfAttention
from models.config import ModelConfig
from models.mhf import MultiHeadFourier


def build(D: int, H: int, C: int, device: str):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=D, n_heads=H, context=C, causal_mode="pad")
    mhf = MultiHeadFourier(cfg).to(device)
    with torch.no_grad():  # a trained-looking filter: some gates shut, a non-trivial kernel
        mhf.spectrum.add_(0.3 * torch.randn_like(mhf.spectrum))
        mhf.gate_bias.add_(0.3 * torch.randn_like(mhf.gate_bias))
    attn = CausalSelfAttention(cfg).to(device)
    return mhf, attn


def sdpa_context(device: str):
    if device != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)  # fail loudly rather than fall back


def run_one(module, x, passes: str, device: str, grad_out=None, budget_s: float = 1.0, heavy: bool = False):
    kw = dict(warmup=1 if heavy else 2, min_reps=3 if heavy else 5, budget_s=budget_s)
    with sdpa_context(device), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
        if passes == "fwd":
            module.eval()
            with torch.no_grad():
                return bench(lambda: module(x), device, **kw)
        module.train()
        xg = x.detach().requires_grad_(True)

        def step():
            module(xg).backward(grad_out)

        def clear():
            xg.grad = None
            for p in module.parameters():
                p.grad = None
        return bench(step, device, after=clear, **kw)


def profile_pass(mhf, L: int, D: int, device: str, backward: bool = False) -> None:
    """Print the top operators (self device time) of 10 fast MHF passes at B=1, length L: the
    forward under no_grad, or with `backward` a forward+backward into the input and every
    parameter, as training runs it."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(1, L, D, device=device, requires_grad=backward)
    mhf.train(backward)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])

    def once():
        y = mhf(x)
        if backward:
            y.backward(torch.randn_like(y))
            x.grad = None
            for p in mhf.parameters():
                p.grad = None

    with torch.set_grad_enabled(backward), torch.autocast(device_type=device, dtype=torch.bfloat16,
                                                          enabled=device == "cuda"):
        for _ in range(3):
            once()
        sync(device)
        with profile(activities=acts) as p:
            for _ in range(10):
                once()
            sync(device)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(f"MHF {'forward+backward' if backward else 'forward'}, B=1, L={L}, D={D}, 10 runs:")
    print(p.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 262144])
    ap.add_argument("--passes", nargs="+", default=["fwd", "fwd+bwd"])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--context", type=int, default=2048, help="MHF training context C (learned kernel lags)")
    ap.add_argument("--max-predicted-s", type=float, default=4.0,
                    help="skip a run whose time, extrapolated from the previous length, exceeds this")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain reference path")
    ap.add_argument("--profile", type=int, default=0, metavar="L",
                    help="only profile the fast MHF forward (B=1, length L) and print its top operators")
    ap.add_argument("--profile-backward", action="store_true", help="with --profile: forward+backward")
    args = ap.parse_args()
    dev = args.device
    mhf, attn = build(args.width, args.heads, args.context, dev)
    if args.profile:
        profile_pass(mhf, args.profile, args.width, dev, args.profile_backward)
        return
    rows = []
    for passes in args.passes:
        for B in args.batch:
            prev: dict[str, tuple[int, float]] = {}
            for L in args.lengths:
                row = {"pass": passes, "B": B, "L": L}
                x = torch.randn(B, L, args.width, device=dev)
                grad_out = torch.randn(B, L, args.width, device=dev, dtype=torch.bfloat16) if passes != "fwd" else None
                variants = [("mhf_fast", mhf, True), ("attention", attn, None)]
                if not args.no_plain:
                    variants.insert(1, ("mhf_plain", mhf, False))
                outs = {}
                for name, module, fast in variants:
                    if fast is not None:
                        module.fast = fast
                    if name in prev and prev[name][1] != math.inf:
                        L0, t0 = prev[name]
                        expo = 2 if name == "attention" else 1
                        predicted = t0 * (L / L0) ** expo / 1e3
                        if predicted > args.max_predicted_s:
                            row[name] = None
                            row[name + "_note"] = f"skipped: predicted {predicted:.1f} s"
                            prev[name] = (L, math.inf)
                            continue
                    elif name in prev:
                        row[name + "_note"] = "skipped"
                        continue
                    try:
                        heavy = name in prev and prev[name][1] * (L / prev[name][0]) ** 2 > 300
                        r = run_one(module, x, passes, dev, grad_out, heavy=heavy)
                        row[name] = r["median_ms"]
                        row[name + "_reps"] = r["reps"]
                        prev[name] = (L, r["median_ms"])
                        if passes == "fwd" and name.startswith("mhf"):
                            with torch.no_grad(), torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                                module.eval()
                                outs[name] = module(x).float()
                    except Exception as e:  # noqa: BLE001 - report OOM as a result, re-raise the rest
                        if not is_oom(e):
                            raise
                        row[name] = None
                        row[name + "_note"] = "OOM"
                        prev[name] = (L, math.inf)
                    finally:
                        if dev == "cuda":
                            torch.cuda.empty_cache()
                mhf.fast = True
                if "mhf_fast" in outs and "mhf_plain" in outs:
                    ref = outs["mhf_plain"]
                    row["max_abs_diff"] = (outs["mhf_fast"] - ref).abs().max().item()
                    row["rel_diff"] = row["max_abs_diff"] / ref.abs().max().item()
                outs.clear()
                tok = B * L
                for name in ("mhf_fast", "mhf_plain", "attention"):
                    if row.get(name):
                        row[name + "_tok_s"] = tok / (row[name] / 1e3)
                if row.get("mhf_fast") and row.get("attention"):
                    row["speedup_vs_attention"] = row["attention"] / row["mhf_fast"]
                if row.get("mhf_fast") and row.get("mhf_plain"):
                    row["speedup_vs_plain"] = row["mhf_plain"] / row["mhf_fast"]
                for name in ("mhf_fast", "mhf_plain", "attention"):
                    if row.get(name) is None and row.get(name + "_note"):
                        row[name] = row[name + "_note"]
                rows.append(row)
                print(row, flush=True)
                del x, grad_out
    crossover = []
    for passes in args.passes:
        for B in args.batch:
            pts = [(r["L"], r["speedup_vs_attention"]) for r in rows
                   if r["pass"] == passes and r["B"] == B and isinstance(r.get("speedup_vs_attention"), float)]
            cross = None
            if pts and pts[0][1] >= 1:
                cross = f"<= {pts[0][0]}"
            for (l0, s0), (l1, s1) in zip(pts, pts[1:]):
                if cross is None and s0 < 1 <= s1:  # interpolate log(speed-up) against log(L)
                    f = -math.log(s0) / (math.log(s1) - math.log(s0))
                    cross = f"~{round(math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0))))}"
            crossover.append({"pass": passes, "B": B, "crossover_L": cross or "none measured"})
    save("mixer_vs_attention", {"args": vars(args), "rows": rows, "crossover": crossover})
    print()
    print(header(f"Mixer vs attention: D={args.width}, H={args.heads}, C={args.context}, bf16 autocast", dev))
    cols = [("pass", "pass"), ("B", "B"), ("L", "L"), ("mhf_fast", "mhf fast ms"), ("mhf_plain", "mhf plain ms"),
            ("attention", "attention ms"), ("mhf_fast_tok_s", "mhf fast tok/s"), ("attention_tok_s", "attention tok/s"),
            ("speedup_vs_attention", "fast vs attention"), ("speedup_vs_plain", "fast vs plain"),
            ("rel_diff", "max|fast-plain|/max|plain|")]
    print(table(rows, cols))
    print()
    print(table(crossover, [("pass", "pass"), ("B", "B"), ("crossover_L", "crossover length (mhf fast = attention)")]))


if __name__ == "__main__":
    main()
