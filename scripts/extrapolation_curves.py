"""Measure the length-extrapolation curves the app ships (sample_checkpoints/extrapolation.json).

    python3 -m scripts.extrapolation_curves --out sample_checkpoints/extrapolation.json [--device cuda]
        [--sample NAME=PATH ...]   (measure PATH under NAME, in place of that sample or in addition)

For each comparison sample, on the validation split (caracal_viz.extrapolate): a curve from
WINDOWS windows of 16x the sample's training context (bins 0-16, then 2 per octave), and the
README's table (0-512, 512-2,048, 2,048-8,192) from WINDOWS windows of 8,192 positions at the
same starts for every model. Meant for the GPU: a 32,768-byte window of caracal-long takes
minutes on a 2-core CPU. Prints one line per sample.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from caracal_viz.checkpoint import load_checkpoint
from caracal_viz.extrapolate import MAX_FACTOR, TABLE_EDGES, curve_edges, extrapolate

SAMPLES = ("caracal-shakespeare", "caracal-hybrid-shakespeare", "transformer-shakespeare", "caracal-long")
ROOT = Path(__file__).resolve().parent.parent
WINDOWS = 16
COMMAND = "python3 -m scripts.extrapolation_curves --out sample_checkpoints/extrapolation.json"


def main(argv: list[str] | None = None) -> int:
    """Measure, write the JSON, print a line per sample; exit status."""
    p = argparse.ArgumentParser(prog="python3 -m scripts.extrapolation_curves", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default=None)
    p.add_argument("--sample", action="append", default=[], help="NAME=PATH: measure PATH under NAME")
    args = p.parse_args(argv)
    paths = {n: ROOT / "sample_checkpoints" / f"{n}.safetensors" for n in SAMPLES}
    paths.update(s.split("=", 1) for s in args.sample)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    curves, tables = [], []
    for name, path in paths.items():
        t0 = time.perf_counter()
        ck = load_checkpoint(path, device=device)
        length = MAX_FACTOR * ck.config.context
        run = extrapolate(ck, length=length, n_windows=WINDOWS, batch_size=4, source="validation")
        table_run = run if length == TABLE_EDGES[-1] else \
            extrapolate(ck, length=TABLE_EDGES[-1], n_windows=WINDOWS, batch_size=4, source="validation")
        curve, table = run.curve(curve_edges(length)), table_run.table()
        curves.append({**curve.to_dict(), "name": name})
        tables.append({**table.to_dict(), "name": name})
        print(f"{name}: context {ck.config.context}, {run.n_windows} windows of {length}, mean {run.mean_bits:.4f}; "
              "table " + ", ".join(f"{lo}-{hi} {b:.4f}" for lo, hi, b in zip(table.edges[:-1], table.edges[1:],
                                                                            table.bits))
              + f" [{time.perf_counter() - t0:.1f} s]", flush=True)
    record = {"command": COMMAND + (f" --device {args.device}" if args.device else ""), "machine": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "precision": "float32", "windows": WINDOWS,
              "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")}
    args.out.write_text(json.dumps({"record": record, "curves": curves, "tables": tables}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
