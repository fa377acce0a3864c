"""How long the causality certificate (caracal_viz.causality.causality_report) takes per sample.

Each sample is certified in a fresh process (the first certificate of a checkpoint, as a new app
server or the CLI meets it: one-time costs such as the per-config FFT size table and new FFT
plans included), then once more in the same process with another seed (a later checkpoint of a
config already seen). Prints wall and CPU seconds, the verdict and the floor; on CUDA also bf16.
The CPU machine of this project is shared: the load average is printed before and after.

    python -m benchmarks.certificate [--device cpu|cuda] [--precision float32,bf16] [--samples a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare")


def one(sample: str, device: str, precision: str) -> dict:
    """Certify one sample twice in this process (first, then again with another seed)."""
    import torch

    from caracal_viz import load_checkpoint
    from caracal_viz.causality import causality_report

    ck = load_checkpoint(ROOT / "sample_checkpoints" / f"{sample}.safetensors", device=device)
    out = {"sample": sample, "device": device, "precision": precision, "threads": torch.get_num_threads()}
    for key, seed in (("first", 0), ("again", 1)):
        if device == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        r = causality_report(ck, precision=precision, seed=seed)
        if device == "cuda":
            torch.cuda.synchronize()
        out[f"{key}_wall_s"] = round(time.perf_counter() - t, 3)
        out[f"{key}_cpu_s"] = round(time.process_time() - c, 3)
        out.update(verdict=r.verdict, headline=r.headline, model_leak=r.model_leak, floor=r.floor,
                   floor_ratio=r.floor_ratio, lengths=r.lengths, perturbations=r.perturbations,
                   leak_by_length=r.leak_by_length, floor_by_length=r.floor_by_length)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default=None, help="comma-separated; default float32 (and bf16 on CUDA)")
    p.add_argument("--samples", default=",".join(SAMPLES))
    p.add_argument("--one", nargs=2, metavar=("SAMPLE", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps([one(args.one[0], args.device, prec) for prec in args.one[1].split(",")]))
        return
    precisions = (args.precision or ("float32,bf16" if args.device == "cuda" else "float32")).split(",")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average before: {os.getloadavg()}")
    print(f"{'sample':<24} {'precision':<8} {'first wall':>10} {'first cpu':>9} {'again wall':>10} "
          f"{'again cpu':>9}  verdict (earlier-logit change, floor)")
    for sample in args.samples.split(","):
        # one process per sample: its first precision meets the checkpoint cold, the next ones after it
        res = subprocess.run([sys.executable, "-m", "benchmarks.certificate", "--device", args.device, "--one", sample, ",".join(precisions)],
                             cwd=ROOT, capture_output=True, text=True)
        if res.returncode:
            print(f"{sample:<24} failed: {res.stderr.strip().splitlines()[-1:]}")
            continue
        for r in json.loads(res.stdout.strip().splitlines()[-1]):
            prec = r["precision"]
            print(f"{sample:<24} {prec:<8} {r['first_wall_s']:>9.2f}s {r['first_cpu_s']:>8.2f}s "
                  f"{r['again_wall_s']:>9.2f}s {r['again_cpu_s']:>8.2f}s  {r['headline']} "
                  f"({r['model_leak']:.3g}, floor {r['floor']:.2g}; lengths {r['lengths']}, "
                  f"{r['perturbations']} perturbations, {r['threads']} threads)")
            print(f"{'':<24} {'':<8} by length: " + ", ".join(
                f"{L}: leak {v:.3g} floor " + ("-" if r['floor_by_length'][L] is None else f"{r['floor_by_length'][L]:.2g}")
                for L, v in r["leak_by_length"].items()))
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
