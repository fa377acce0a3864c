"""Question 3: how fast does caracal-shakespeare generate, and through which path?

Paths, each generating --tokens bytes (default 256 and 1,024) after the same prompt:
- naive: the whole sequence through the model at every step (float64 FFTs, as inference runs);
- reference incremental: `ByteLM.stream_logits` (the prompt in one FFT pass), then one
  `ByteLM.step` per byte (MultiHeadFourier.step: the readable reference, growing buffers);
- fast (greedy): `ByteLM.generate_stream`, which runs models/decoding.py's static decoder
  (preallocated channel-major state, fused products; on CUDA the step and its sampling as one
  CUDA graph);
- app path: `caracal_viz.predict.stream_generation` with sampling (temperature 1, seed 0), its
  UTF-8 pieces consumed as they stream.
Greedy paths must produce the same bytes as the naive one, which is the argmax of the full
forward pass at every step: each fast byte is checked against one full forward pass over the
generated text, and the fast path's logits along those bytes against that pass's logits at every
step (the naive loop itself is timed only up to --naive-max bytes). Also the prompt's cost:
one prefill pass against stepping through it. On CUDA the first call (graph capture) is timed
on its own.

    python3 -m benchmarks.generation [--device cpu|cuda] [--tokens 256 1024] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks._util import ROOT, header, save, sync, table
from caracal_viz import load_checkpoint, predict
from models import decoding

PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"


def timed(fn, device, reps):
    times, out = [], None
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokens", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--naive-reps", type=int, default=1)
    ap.add_argument("--naive-max", type=int, default=1 << 30, help="time the naive loop only up to this many bytes")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    model = ck.model
    prompt = ck.tokenizer.encode(PROMPT)
    rows, checks = [], []
    sync(dev)
    t0 = time.perf_counter()
    list(model.generate_stream(prompt, 8, temperature=0))  # first call: decoder built (CUDA graph captured)
    sync(dev)
    first_call = time.perf_counter() - t0
    for n in args.tokens:
        def fast():
            return list(model.generate_stream(prompt, n, temperature=0))

        def app():
            return "".join(predict.stream_generation(ck, PROMPT, n, temperature=1.0, seed=0))

        def reference():
            out = []
            with torch.no_grad():
                logits, states = model.stream_logits(torch.tensor([prompt], device=dev))
                for _ in range(n):
                    out.append(int(logits[0].argmax()))
                    logits = model.step(torch.tensor([out[-1]], device=dev), states)
            return out

        def naive():
            ids = list(prompt)
            with torch.no_grad():
                for _ in range(n):
                    ids.append(int(model(torch.tensor([ids], device=dev))[0, -1].argmax()))
            return ids[len(prompt):]

        fast()
        app()
        t_naive, toks_naive = timed(naive, dev, args.naive_reps) if n <= args.naive_max else (float("nan"), None)
        t_ref, toks_ref = timed(reference, dev, args.reps)
        t_fast, toks_fast = timed(fast, dev, args.reps)
        t_app, text = timed(app, dev, args.reps)
        # the full forward over the fast path's text: its argmax is the naive path's choice at every step
        with torch.no_grad(), decoding._one_thread():
            full = model(torch.tensor([prompt + toks_fast], device=dev))[0, len(prompt) - 1:-1]  # (n, 256)
            dec = decoding.StaticDecoder(model, len(prompt) + n)
            P = dec.prefill(torch.tensor([prompt], device=dev))
            fast_logits = [dec.logits[0].clone()]
            for i, tok in enumerate(toks_fast[:-1]):
                fast_logits.append(dec.forward_step(torch.tensor([tok], device=dev), P + i)[0].clone())
                if dev == "cuda":
                    dec.win.advance()
        diff = (torch.stack(fast_logits) - full).abs().max().item()
        top2 = full.topk(2, dim=-1).values
        argmax_ok = all(tok == a or (t2[0] - t2[1]).item() < 1e-4
                        for tok, a, t2 in zip(toks_fast, full.argmax(-1).tolist(), top2))
        for path, t in (("naive (full forward per byte)", t_naive), ("reference incremental (ByteLM.step)", t_ref),
                        ("fast (generate_stream, greedy)", t_fast), ("app: stream_generation, sampled", t_app)):
            rows.append({"bytes": n, "path": path, "seconds": t, "tok_s": n / t, "vs_naive": t_naive / t})
        checks.append({"bytes": n, "fast_is_full_forward_argmax": argmax_ok, "same_bytes_fast_reference": toks_fast == toks_ref,
                       "same_bytes_fast_naive": "not run" if toks_naive is None else toks_naive == toks_fast,
                       "max_abs_logit_diff": diff,
                       "app_text_bytes": len(text.encode("utf-8"))})
        print(rows[-4:], checks[-1], flush=True)
    if dev == "cuda":  # where a step's time goes: its kernels, and the graph's replay alone
        from torch.profiler import ProfilerActivity, profile
        dec = decoding.StaticDecoder(model, 2048)
        dec.prefill(torch.tensor([prompt], device=dev))
        dec._capture()
        dec.prefill(torch.tensor([prompt], device=dev))
        result_extra = {"kernels_per_step": float("nan"), "kernel_us_per_step": float("nan")}
        try:
            with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
                dec._sample_and_step(None)
                sync(dev)
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            result_extra = {"kernels_per_step": len(kernels),
                            "kernel_us_per_step": sum(e.self_device_time_total for e in kernels)}
        except Exception as e:  # noqa: BLE001 (the profile is a diagnostic; the timings below stand alone)
            print("kernel profile failed:", e)
        dec.prefill(torch.tensor([prompt], device=dev))
        for reps in (10, 1000):
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(reps):
                dec.graph.replay()
            sync(dev)
            result_extra["replay_us_per_step"] = (time.perf_counter() - t0) / reps * 1e6
        print(result_extra, flush=True)
    else:
        result_extra = {}
    long_prompt = torch.tensor([(ck.tokenizer.encode(PROMPT) * 40)[:1024]], device=dev)
    t_prefill, lp = timed(lambda: model.stream_logits(long_prompt)[0], dev, args.reps)
    with torch.no_grad():
        full = model(long_prompt)[:, -1]
    result = {"device": dev, "tokens": args.tokens, "threads": torch.get_num_threads(), "rows": rows,
              "checks": checks, "first_call_s": first_call, "prefill_1024_s": t_prefill,
              "prefill_max_abs_diff": (lp - full).abs().max().item(), "loadavg": os.getloadavg(), **result_extra}
    save(f"generation_{dev}", result)
    print(header(f"Generation: caracal-shakespeare, {dev}", dev))
    print(f"torch threads: {torch.get_num_threads()}; load average during the run: {os.getloadavg()[0]:.1f}; "
          f"first call (decoder built{', CUDA graph captured' if dev == 'cuda' else ''}, 8 bytes): {first_call:.3f} s; "
          f"1,024-byte prompt prefill {t_prefill:.4f} s (max |last logits - full forward| "
          f"{result['prefill_max_abs_diff']:.1e})\n")
    if result_extra:
        print(f"CUDA step: {result_extra['kernels_per_step']} kernels, {result_extra['kernel_us_per_step']:.0f} us of "
              f"kernel time (eager, profiled); graph replay {result_extra['replay_us_per_step']:.0f} us per step "
              f"(1,000 replays back to back, T = 2,048)\n")
    print(table(rows, [("bytes", "bytes"), ("path", "path"), ("seconds", "seconds"), ("tok_s", "bytes/s"),
                       ("vs_naive", "x naive")]))
    print()
    print(table(checks, [("bytes", "bytes"), ("fast_is_full_forward_argmax", "fast = full-forward argmax"),
                         ("same_bytes_fast_naive", "fast = naive bytes"),
                         ("same_bytes_fast_reference", "fast = reference bytes"),
                         ("max_abs_logit_diff", "max |fast logits - full forward|")]))


if __name__ == "__main__":
    main()
