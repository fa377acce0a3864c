"""Question 3: how fast does caracal-shakespeare generate 1,024 bytes, re-running the whole
sequence at every step (naive) against incremental decoding (ByteLM.generate_stream: the prompt
in one FFT pass, then each new output a dot product of the cached mixer inputs with the causal
kernel)? Greedy decoding, so both must produce the same bytes; the logits of the two paths are
compared at every step. Also the prompt's cost: one prefill pass against stepping through it.

    python3 benchmarks/generation.py [--device cpu|cuda] [--tokens 1024] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _util import ROOT, header, save, sync, table

from caracal_viz import load_checkpoint

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
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--naive-reps", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ck = load_checkpoint(ROOT / "sample_checkpoints" / "caracal-shakespeare.safetensors", device=dev)
    model = ck.model
    prompt = ck.tokenizer.encode(PROMPT)
    n = args.tokens

    def incremental():
        return list(model.generate_stream(prompt, n, temperature=0))

    def naive():
        ids, logits_all = list(prompt), []
        with torch.no_grad():
            for _ in range(n):
                logits = model(torch.tensor([ids], device=dev))[0, -1]
                logits_all.append(logits)
                ids.append(int(logits.argmax()))
        return ids[len(prompt):], torch.stack(logits_all)

    incremental()  # warm-up (kernels, caches)
    t_inc, toks_inc = timed(incremental, dev, args.reps)
    t_naive, (toks_naive, logits_naive) = timed(naive, dev, args.naive_reps)
    # the incremental path's logits along the naive path's tokens
    with torch.no_grad():
        last, states = model.stream_logits(torch.tensor([prompt], device=dev))
        inc_logits = [last[0]]
        for tok in toks_naive[:-1]:
            inc_logits.append(model.step(torch.tensor([tok], device=dev), states)[0])
    diff = (torch.stack(inc_logits) - logits_naive).abs().max().item()
    # the prompt's cost: prefill (one pass) against stepping position by position
    long_prompt = torch.tensor([(ck.tokenizer.encode(PROMPT) * 40)[:1024]], device=dev)

    def stepwise():
        with torch.no_grad():
            states = [b.mixer.init_state(1, dev) for b in model.blocks]
            for t in range(long_prompt.shape[1]):
                logits = model.step(long_prompt[:, t], states)
        return logits
    t_prefill, lp = timed(lambda: model.stream_logits(long_prompt)[0], dev, args.reps)
    t_step, ls = timed(stepwise, dev, 1)
    with torch.no_grad():
        full = model(long_prompt)[:, -1]
    rows = [{"path": "naive (full forward per byte)", "seconds": t_naive, "tok_s": n / t_naive},
            {"path": "incremental (generate_stream)", "seconds": t_inc, "tok_s": n / t_inc}]
    prompt_rows = [{"path": "prefill (stream_logits, one pass)", "seconds": t_prefill,
                    "max_abs_diff": (lp - full).abs().max().item()},
                   {"path": "step by step", "seconds": t_step, "max_abs_diff": (ls - full).abs().max().item()}]
    result = {"device": dev, "tokens": n, "threads": torch.get_num_threads(), "rows": rows, "prompt_rows": prompt_rows,
              "same_bytes": toks_inc == toks_naive, "max_abs_logit_diff": diff,
              "speedup": t_naive / t_inc, "loadavg": os.getloadavg()}
    save(f"generation_{dev}", result)
    print(header(f"Generation: caracal-shakespeare, {n} bytes, greedy, {dev}", dev))
    print(f"torch threads: {torch.get_num_threads()}; load average during the run: {os.getloadavg()[0]:.1f}\n")
    print(table(rows, [("path", "path"), ("seconds", "seconds"), ("tok_s", "bytes/s")]))
    print(f"\nspeed-up {t_naive / t_inc:.1f}x; same {n} bytes: {toks_inc == toks_naive}; "
          f"max |logit difference| over all {n} steps: {diff:.2e}\n")
    print(table(prompt_rows, [("path", "1,024-byte prompt"), ("seconds", "seconds"),
                              ("max_abs_diff", "max |last logits - full forward|")]))


if __name__ == "__main__":
    main()
