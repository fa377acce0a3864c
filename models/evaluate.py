"""Validation bits per byte of a checkpoint, on the same fixed windows that training reports.

    python -m models.evaluate sample_checkpoints/caracal-shakespeare.safetensors [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .checkpoint_format import CheckpointError, load_safetensors
from .data import PeriodicData, TextData
from .train import evaluate


def main(argv: list[str] | None = None) -> int:
    """`python -m models.evaluate CKPT`: print the checkpoint's validation bits per byte; exit status."""
    p = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA was asked for but no GPU is available: choose the CPU", file=sys.stderr)
        return 2
    try:
        model, meta = load_safetensors(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = model.to(device)
    data = PeriodicData() if meta.get("data", "").startswith("synthetic") else TextData()
    bpb = evaluate(model, data, model.config, device)
    print(f"{Path(args.checkpoint).name}: val {bpb:.4f} bits/byte on {device} (training record: {meta.get('val_bits_per_byte')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
