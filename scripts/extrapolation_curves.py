"""Measure the length-extrapolation curves the app ships (sample_checkpoints/extrapolation.json).

    python3 -m scripts.extrapolation_curves --out sample_checkpoints/extrapolation.json [--device cuda]
        [--sample NAME=PATH ...]   (only these files instead of the four comparison samples)

For each comparison sample, on the validation split: windows of 16x the sample's training context
(as many as fit without overlap, at most caracal_viz.extrapolate.MAX_WINDOWS), a fine curve (4 bins
per octave from position 4) and the README's table bins (0-512, 512-2,048, 2,048-8,192) from
windows of 8,192 bytes for every model, so the table compares the same windows. Meant for the GPU:
a 32,768-byte window of caracal-long takes minutes on a 2-core CPU. Prints one line per sample.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import torch

from caracal_viz.checkpoint import load_checkpoint
from caracal_viz.extrapolate import README_EDGES, extrapolate, log_bin_edges, save_curves, validation_bytes

SAMPLES = ("caracal-shakespeare", "caracal-hybrid-shakespeare", "transformer-shakespeare", "caracal-long")
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Measure, write the JSON, print a table; exit status."""
    p = argparse.ArgumentParser(prog="python3 -m scripts.extrapolation_curves", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default=None)
    p.add_argument("--sample", action="append", default=[], help="NAME=PATH: measure these files instead of the samples")
    args = p.parse_args(argv)
    paths = (dict(s.split("=", 1) for s in args.sample) if args.sample
             else {n: ROOT / "sample_checkpoints" / f"{n}.safetensors" for n in SAMPLES})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = validation_bytes()
    curves = {}
    for name, path in paths.items():
        t0 = time.perf_counter()
        ck = load_checkpoint(path, device=device)
        long = extrapolate(ck, data)
        table = extrapolate(ck, data, README_EDGES[-1]).binned(README_EDGES)
        curves[name] = {"curve": long.binned(log_bin_edges(long.length, first=4, per_octave=4)), "table": table}
        print(f"{name}: context {ck.config.context}, {long.length} bytes x {long.starts.size} windows, "
              f"mean {long.mean_bits:.4f}; table ({table.n_windows} windows of {table.length}): "
              + ", ".join(f"{lab} {b:.4f}" for lab, b in zip(table.labels(), table.bits))
              + f" [{time.perf_counter() - t0:.1f} s]", flush=True)
    machine = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    meta = {"command": "python3 -m scripts.extrapolation_curves --out sample_checkpoints/extrapolation.json",
            "machine": machine, "torch": torch.__version__, "precision": "float32",
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")}
    save_curves(args.out, curves, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
