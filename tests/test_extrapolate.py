"""caracal_viz.extrapolate against independent paths: models.train.evaluate on the same windows,
a float64 log-softmax per position from one plain forward per window, and numpy means per bin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from caracal_viz.extrapolate import (MAX_WINDOWS, README_EDGES, BinnedBits, Extrapolation, extrapolate,
                                     load_curves, log_bin_edges, per_position_bits, save_curves, validation_bytes,
                                     window_starts)
from models.train import evaluate
from .conftest import load_sample


class _SameWindows:
    """A models.data stand-in whose every batch is the given windows (evaluate draws none of its own)."""

    def __init__(self, windows: np.ndarray):
        self.windows = windows

    def batch(self, split, B, L, rng):
        assert split == "val" and B == len(self.windows)
        return self.windows


@pytest.mark.parametrize("name, length", [("caracal-periodic", 600), ("caracal-hybrid-shakespeare", 1100)])
def test_mean_bits_match_models_evaluate_on_the_same_windows(name, length):
    ck = load_sample(name)
    data = validation_bytes()
    r = extrapolate(ck, data, length, 3)
    assert r.length == length > ck.config.context and r.starts.size == 3
    windows = np.stack([data[s:s + length + 1] for s in r.starts])
    want = evaluate(ck.model, _SameWindows(windows), ck.config, torch.device("cpu"), batches=1, batch_size=3)
    assert r.mean_bits == pytest.approx(want, abs=2e-5)


def test_per_position_bits_match_a_float64_log_softmax_of_each_window():
    ck = load_sample("caracal-periodic")
    rng = np.random.default_rng(3)
    windows = rng.integers(0, 256, size=(3, 41)).astype(np.uint8)
    got = per_position_bits(ck, windows, batch_size=3)  # one batched pass
    want = np.zeros(40)
    for w in windows:
        with torch.no_grad():
            logits = ck.model(torch.tensor(w[None, :-1], dtype=torch.long))[0].double().numpy()
        lp = log_softmax(logits, axis=-1)
        for p in range(40):
            want[p] -= lp[p, w[p + 1]] / np.log(2) / len(windows)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_bins_are_means_of_their_positions():
    bits = np.random.default_rng(0).random(1000)
    r = Extrapolation("x", 256, np.array([0]), bits, "test")
    b = r.binned()
    assert b.edges.tolist() == [0, 64, 128, 256, 512, 1000]
    for k, (lo, hi) in enumerate(zip(b.edges[:-1], b.edges[1:])):
        assert b.bits[k] == pytest.approx(np.mean([bits[p] for p in range(lo, hi)]))
    t = r.binned(README_EDGES)
    assert t.edges.tolist() == [0, 512, 1000] and t.labels() == ["0-512", "512-1,000"]
    assert np.all(np.diff(b.centres) > 0) and b.centres[0] == pytest.approx(np.sqrt(64))


def test_log_bin_edges_and_window_starts():
    e = log_bin_edges(8192, first=4, per_octave=4)
    assert e[0] == 0 and e[1] == 4 and e[-1] == 8192 and np.all(np.diff(e) > 0)
    assert 512 in e and 2048 in e and len(e) == 2 + 4 * 11
    s = window_starts(10_000, 999)
    assert s.size == 10 and np.all(np.diff(s) >= 1000) and s[-1] + 1000 <= 10_000
    assert window_starts(10**6, 9).size == MAX_WINDOWS
    with pytest.raises(ValueError, match="needs 101 bytes but the text has 100"):
        window_starts(100, 100)


def test_curves_round_trip(tmp_path):
    b = BinnedBits("a.safetensors", 512, 1000, 2, np.array([0, 512, 1000]), np.array([2.0, 2.25]), "val")
    save_curves(tmp_path / "c.json", {"a": {"table": b}}, {"machine": "cpu"})
    curves, meta = load_curves(tmp_path / "c.json")
    got = curves["a"]["table"]
    assert meta == {"machine": "cpu"} and got.edges.tolist() == [0, 512, 1000] and got.bits.tolist() == [2.0, 2.25]
    assert (got.name, got.context, got.length, got.n_windows, got.source) == ("a.safetensors", 512, 1000, 2, "val")
