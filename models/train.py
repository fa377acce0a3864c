"""Train a byte-level LM preset and write a self-describing checkpoint.

    python -m models.train --preset caracal-shakespeare --out sample_checkpoints/caracal-shakespeare.safetensors

Deterministic for a seed on a given device and torch build (batches come from a seeded numpy
generator; torch's deterministic algorithms are switched on). The checkpoint is written
atomically at every evaluation, so an interrupted run leaves the last good one in place; its
training record holds the loss curve and validation bits per byte.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint_format import save_checkpoint
from .config import ModelConfig
from .data import PeriodicData, TextData
from .lm import ByteLM

SHAKESPEARE_MODEL = dict(d_model=160, n_layers=6, n_heads=4, context=512, dropout=0.1)


@dataclass(frozen=True)
class Preset:
    """A named training recipe: the model config, the data ("shakespeare" or "periodic"), steps,
    batch size, peak learning rate (linear warm-up over `warmup` steps, then cosine decay to 10%),
    evaluation interval in steps, and a one-line description for the checkpoint's record."""

    config: ModelConfig
    data: str = "shakespeare"
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 200
    eval_every: int = 500
    description: str = ""


PRESETS: dict[str, Preset] = {
    "caracal-shakespeare": Preset(ModelConfig(mixer="mhf", **SHAKESPEARE_MODEL),
                                  description="Caracal MHF, causal pad mode, learned spectral filter + modReLU"),
    "caracal-circular-leaky": Preset(ModelConfig(mixer="mhf", causal_mode="circular", **SHAKESPEARE_MODEL),
                                     description="as caracal-shakespeare but no padding: wrap-around leak"),
    "caracal-hybrid-shakespeare": Preset(ModelConfig(mixer="mhf", swa_every=3, swa_window=256, **SHAKESPEARE_MODEL),
                                         description="Caracal hybrid: sliding-window attention after every two MHF layers"),
    "transformer-shakespeare": Preset(ModelConfig(mixer="attention", **SHAKESPEARE_MODEL),
                                      description="plain causal Transformer baseline (SDPA, rotary positions)"),
    "fftnet-shakespeare": Preset(ModelConfig(mixer="fftnet", d_model=128, n_layers=4, n_heads=4, context=512, dropout=0.1),
                                 description="FFTNet adaptive spectral filter used as an LM: reads the future"),
    "caracal-long": Preset(ModelConfig(mixer="mhf", d_model=128, n_layers=6, n_heads=4, context=2048, dropout=0.1),
                           steps=2000, batch_size=16, eval_every=250,
                           description="Caracal MHF, causal pad mode, context 2048: kernels with long lags"),
    "caracal-periodic": Preset(ModelConfig(mixer="mhf", d_model=64, n_layers=2, n_heads=4, context=256),
                               data="periodic", steps=1500, lr=3e-3, warmup=100, eval_every=250,
                               description="Caracal MHF on repeating patterns with periods 3, 8 and 20"),
    "tiny-test": Preset(ModelConfig(mixer="mhf", d_model=32, n_layers=2, n_heads=4, context=64),
                        steps=20, batch_size=4, warmup=5, eval_every=10, description="for tests only"),
}


def code_version() -> str:
    """The git commit when there is a checkout, else a hash of the model sources (a copied tree)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py"))))
    return "src-" + digest.hexdigest()[:12]


def lr_at(step: int, preset: Preset, steps: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < preset.warmup:
        return preset.lr * (step + 1) / preset.warmup
    progress = (step - preset.warmup) / max(1, steps - preset.warmup)
    return preset.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: ByteLM, data, cfg: ModelConfig, device: torch.device, batches: int = 16, batch_size: int = 16) -> float:
    """Validation bits per byte on a fixed set of windows (the same for every call)."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(12345)
    total, count = 0.0, 0
    for _ in range(batches):
        xy = torch.from_numpy(data.batch("val", batch_size, cfg.context, rng)).long().to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(xy[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), xy[:, 1:].flatten(), reduction="sum").item()
        count += xy[:, 1:].numel()
    model.train(was_training)
    return total / count / math.log(2)


def train(preset_name: str, out: Path, *, steps: int | None = None, device: str | None = None, seed: int = 0,
          progress: bool = True) -> dict:
    """Train preset `preset_name` and write the checkpoint to `out` (.safetensors or .pt) at every
    evaluation; returns the training record (the checkpoint's "training" metadata). steps: the
    preset's count unless given; device: CUDA when available unless given."""
    preset = PRESETS[preset_name]
    steps = steps or preset.steps
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = preset.config
    data = PeriodicData() if preset.data == "periodic" else TextData()
    model = ByteLM(cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "spectrum" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "spectrum" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=preset.lr, betas=(0.9, 0.95))
    record = {
        "preset": preset_name, "description": preset.description, "data": data.description,
        "data_sha256": data.sha256, "steps": 0, "batch_size": preset.batch_size, "context": cfg.context,
        "lr": preset.lr, "seed": seed, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "code_version": code_version(), "loss_curve": [], "val_curve": [],
        "val_bits_per_byte": None, "train_time_s": 0.0, "params": model.num_parameters(),
    }
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=preset_name, file=sys.stderr, mininterval=2.0)
    start = time.perf_counter()
    running = None
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, preset, steps)
        xy = torch.from_numpy(data.batch("train", preset.batch_size, cfg.context, rng)).long().to(dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), xy[:, 1:].flatten())
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}: lower --lr or change --seed")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 10 == 0:
            record["loss_curve"].append([step, round(loss.item() / math.log(2), 4)])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(bpb=f"{running / math.log(2):.3f}", refresh=False)
        if (step + 1) % preset.eval_every == 0 or step + 1 == steps:
            bpb = evaluate(model, data, cfg, dev)
            record["val_curve"].append([step + 1, round(bpb, 4)])
            record.update(steps=step + 1, val_bits_per_byte=round(bpb, 4),
                          train_time_s=round(time.perf_counter() - start, 1))
            save_checkpoint(out, model.eval(), record)
            model.train()
    if bar is not None:
        bar.close()
    return record


def main(argv: list[str] | None = None) -> int:
    """`python -m models.train`: parse the arguments, train, print one summary line; exit status."""
    p = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--out", required=True, type=Path, help="checkpoint path (.safetensors or .pt)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.out.suffix not in (".safetensors", ".pt"):
        p.error(f"--out must end in .safetensors or .pt, got {args.out.name!r}")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    rec = train(args.preset, args.out, steps=args.steps, device=args.device, seed=args.seed,
                progress=not args.no_progress)
    print(f"{args.preset}: {rec['steps']} steps, val {rec['val_bits_per_byte']} bits/byte, "
          f"{rec['train_time_s']} s on {rec['device']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
