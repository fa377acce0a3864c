"""caracal_viz.extrapolate against independent paths: models.train.evaluate on the same windows,
a brute-force per-position loss (one plain forward per prefix, float64 log-softmax in scipy) and
numpy means per bin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from caracal_viz.extrapolate import (TABLE_EDGES, Curve, Extrapolation, bin_means, extrapolate, load_measured,
                                     log_edges, position_bits, validation_bytes, window_starts)
from models.train import evaluate
from .conftest import load_sample


class _SameWindows:
    """A models.data stand-in whose one batch is the given windows (evaluate draws none of its own)."""

    def __init__(self, windows: np.ndarray):
        self.windows = windows

    def batch(self, split, B, L, rng):
        assert split == "val" and (B, L + 1) == self.windows.shape
        return self.windows


@pytest.mark.parametrize("name, length", [("caracal-periodic", 600), ("caracal-hybrid-shakespeare", 1100)])
def test_mean_bits_match_models_evaluate_on_the_same_windows(name, length):
    ck = load_sample(name)
    data = validation_bytes()
    r = extrapolate(ck, length=length, n_windows=3, batch_size=2)
    assert r.length == length > ck.config.context and r.n_windows == 3 and r.source == "validation"
    windows = np.stack([data[s:s + length + 1] for s in r.starts])
    cfg = type(ck.config)(**{**ck.config.to_dict(), "context": length})  # evaluate reads windows of cfg.context
    want = evaluate(ck.model, _SameWindows(windows), cfg, torch.device("cpu"), batches=1, batch_size=3)
    assert r.mean_bits == pytest.approx(want, abs=2e-5)


def test_per_position_bits_match_one_forward_per_prefix():
    ck = load_sample("caracal-periodic")
    windows = np.random.default_rng(3).integers(0, 256, size=(2, 31)).astype(np.uint8)
    got = position_bits(ck, windows, batch_size=2)
    want = np.zeros((2, 30))
    with torch.no_grad():
        for w, win in enumerate(windows):
            for t in range(30):  # the prediction of byte t+1 from bytes 0..t alone
                last = ck.model(torch.tensor(win[None, :t + 1], dtype=torch.long))[0, -1].double().numpy()
                want[w, t] = -log_softmax(last)[win[t + 1]] / np.log(2)
    np.testing.assert_allclose(got, want, atol=2e-5)
    r = extrapolate(ck, windows[0].tobytes(), length=30, n_windows=1)
    np.testing.assert_allclose(r.bits, want[0], atol=2e-5)


def test_bins_are_means_of_their_positions():
    bits = np.random.default_rng(0).random(1000)
    r = Extrapolation("x", 256, np.array([0]), bits, "test", "cpu")
    c = r.curve()
    assert c.edges.tolist() == [0, 64, 128, 256, 512, 1000] and c.length == 1000 and c.factor == pytest.approx(1000 / 256)
    for k, (lo, hi) in enumerate(zip(c.edges[:-1], c.edges[1:])):
        assert c.bits[k] == pytest.approx(sum(bits[p] for p in range(lo, hi)) / (hi - lo))
    t = r.table()
    assert t.edges.tolist() == list(TABLE_EDGES) and np.isnan(t.bits[2])
    assert t.bits[1] == pytest.approx(bits[512:].mean())
    assert np.isnan(bin_means(bits, [1000, 2000])[0])


def test_log_edges_and_window_starts():
    assert log_edges(8192).tolist() == [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    e = log_edges(8192, first=16, per_octave=2)
    assert e[:4].tolist() == [0, 16, 23, 32] and e[-1] == 8192 and np.all(np.diff(e) > 0) and {512, 2048} <= set(e)
    s = window_starts(10_000, 999, 5)
    assert s.tolist() == [0, 2250, 4500, 6750, 9000] and s[-1] + 1000 == 10_000
    assert window_starts(1002, 1000, 8).tolist() == [0, 1]
    with pytest.raises(ValueError, match="needs 101 bytes, the text has 100"):
        window_starts(100, 100, 1)


def test_bad_requests_are_one_line_errors():
    ck = load_sample("caracal-periodic")
    with pytest.raises(ValueError, match="at least 2 bytes"):
        extrapolate(ck, "a")
    with pytest.raises(ValueError, match="length must be an integer from 1 to 9"):
        extrapolate(ck, "abcdefghij", length=10)


def test_curves_round_trip_through_json(tmp_path):
    c = Curve("a.safetensors", 512, 1000, 2, np.array([0, 512, 1000]), np.array([2.0, np.nan]), "validation")
    got = Curve.from_dict(json.loads(json.dumps(c.to_dict())))
    assert got.edges.tolist() == [0, 512, 1000] and got.bits[0] == 2.0 and np.isnan(got.bits[1])
    assert (got.name, got.context, got.length, got.n_windows, got.source) == ("a.safetensors", 512, 1000, 2, "validation")
    (tmp_path / "m.json").write_text(json.dumps({"record": {"machine": "cpu"}, "curves": [c.to_dict()],
                                                 "tables": [c.to_dict()]}))
    record, curves, tables = load_measured(tmp_path / "m.json")
    assert record == {"machine": "cpu"} and len(curves) == len(tables) == 1
