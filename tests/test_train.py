"""Training: deterministic for a seed, atomic checkpoints with the training record, CLI errors."""

from __future__ import annotations

import subprocess
import sys

import torch

from caracal_viz import load_checkpoint
from caracal_viz.checkpoint import weights_of
from models.data import PERIODS, PeriodicData, TextData, periodic_text
from tests.conftest import ROOT


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "models.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_training_is_deterministic_and_records_its_curve(tmp_path):
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    for out, seed in ((a, "1"), (b, "1"), (c, "2")):
        r = run_train("--preset", "tiny-test", "--out", str(out), "--steps", "12", "--seed", seed, "--device", "cpu")
        assert r.returncode == 0, r.stderr
        assert "it/s" in r.stderr or "%" in r.stderr  # the progress bar
    ca, cb, cc = (load_checkpoint(p, device="cpu") for p in (a, b, c))
    wa, wb, wc = weights_of(ca.model), weights_of(cb.model), weights_of(cc.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    rec = ca.meta
    assert rec["steps"] == 12 and rec["seed"] == 1 and rec["preset"] == "tiny-test"
    assert [s for s, _ in rec["loss_curve"]] == [0, 10]
    assert rec["val_curve"][-1] == [12, rec["val_bits_per_byte"]] and 0 < rec["val_bits_per_byte"] < 9
    assert rec["data"].startswith("tinyshakespeare.txt") and len(rec["data_sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors", "c.safetensors"]


def test_cli_rejects_bad_arguments(tmp_path):
    r = run_train("--preset", "tiny-test", "--out", str(tmp_path / "x.bin"))
    assert r.returncode == 2 and "--out must end in .safetensors or .pt" in r.stderr
    r = run_train("--preset", "nope", "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_data_splits_and_periodic_task():
    import numpy as np

    text = TextData()
    raw = (ROOT / "data" / "tinyshakespeare.txt").read_bytes()
    assert len(text.splits["train"]) == int(0.9 * len(raw))
    assert text.splits["train"].tobytes() + text.splits["val"].tobytes() == raw
    batch = PeriodicData().batch("train", 16, 100, np.random.default_rng(0))
    for row in batch:  # every row repeats with one of the periods
        assert any(np.array_equal(row[p:], row[:-p]) for p in PERIODS)
    s = periodic_text(8, 40, seed=3)
    assert s[8:] == s[:-8] and len(s) == 40
