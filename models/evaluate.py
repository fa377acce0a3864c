"""Validation bits per byte of a checkpoint, on the same fixed windows that training reports.

    python -m models.evaluate sample_checkpoints/caracal-shakespeare.safetensors [--device cpu]
"""

from __future__ import annotations

import argparse
import sys

from .data import PeriodicData, TextData
from .train import evaluate


def main(argv: list[str] | None = None) -> int:
    """`python -m models.evaluate CKPT`: print the checkpoint's validation bits per byte; exit status."""
    from caracal_viz import CheckpointError, load_checkpoint

    p = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)
    try:
        ck = load_checkpoint(args.checkpoint, device=args.device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = PeriodicData() if ck.meta.get("data", "").startswith("synthetic") else TextData()
    bpb = evaluate(ck.model, data, ck.config, ck.device)
    print(f"{ck.name}: val {bpb:.4f} bits/byte on {ck.device} (training record: {ck.meta.get('val_bits_per_byte')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
