"""The causality certificate against brute-force perturbation of every position."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz import Checkpoint
from caracal_viz.causality import LEAK_TOLERANCE, causality_report
from caracal_viz.gates import gate_report
from caracal_viz.trace import run_trace
from models import ByteLM, ByteTokenizer, ModelConfig

from .conftest import load_sample
from .test_impulse import with_mode


def brute_force_leak(ck, L: int, seed: int) -> float:
    """Change every position t of a random sequence in turn (one batch); the largest change of a
    logit at a position before t."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=L)
    batch = np.repeat(base[None], L, axis=0)
    batch[np.arange(L), np.arange(L)] = (base + 1 + rng.integers(0, 255, size=L)) % 256
    with torch.no_grad():
        ref = ck.model(torch.tensor(base[None]))[0]
        out = ck.model(torch.tensor(batch))
    change = (out - ref).abs().amax(-1).numpy()  # (t, s)
    return float(np.max(np.where(np.arange(L)[None, :] < np.arange(L)[:, None], change, 0.0)))


@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-shakespeare"])
def test_pad_checkpoints_are_certified_causal(name):
    ck = load_sample(name)
    r = causality_report(ck, lengths=[16, 48], trials=2)
    assert r.causal and r.config_causal
    assert r.model_leak <= 1e-5 and brute_force_leak(ck, 32, seed=1) <= 1e-5
    assert r.tolerance == LEAK_TOLERANCE
    assert all(p.causal and p.leak <= 1e-5 * max(p.response, 1) for p in r.per_layer)
    assert all(p.response > 0 for p in r.per_layer)  # the perturbation reached the outputs at all
    assert "causal" in r.summary and "\n" not in r.summary


@pytest.mark.parametrize("name,mode,words", [
    ("caracal-circular-leaky", "circular", "wrap-around"),
    ("fftnet-shakespeare", "global", "global mixing"),
])
def test_leaky_checkpoints_are_caught_with_their_source(name, mode, words):
    ck = load_sample(name)
    r = causality_report(ck, lengths=[16], trials=3, seed=2)
    brute = brute_force_leak(ck, 16, seed=5)
    assert not r.causal and not r.config_causal
    assert r.model_leak > 1e-2 and brute > 1e-2
    # the certificate samples positions, brute force takes all of them: same order of magnitude
    assert brute / 5 < r.model_leak < brute * 5
    first = r.per_layer[0]
    assert not first.causal and first.causal_mode == mode and words in first.source
    assert first.leak_by_offset.shape == (16,)
    assert first.leak_by_offset[first.worst_offset] == first.leak_by_offset.max()
    assert words in r.summary and "LEAKS" in r.summary and "\n" not in r.summary


def test_two_sided_kernel_leak_is_located():
    ck = with_mode("caracal-periodic", "two_sided")
    r = causality_report(ck, lengths=[32], trials=1)
    assert not r.causal and r.model_leak > 1e-2
    assert all(not p.causal and "two-sided" in p.source for p in r.per_layer)
    assert r.per_layer[0].leak_by_offset[1:].min() >= 0


def test_bad_arguments():
    ck = load_sample("caracal-periodic")
    for kwargs in ({"lengths": [1]}, {"lengths": []}, {"lengths": "abc"}, {"lengths": [10**6]}, {"trials": 0}):
        with pytest.raises(ValueError):
            causality_report(ck, **kwargs)


def test_hybrid_model_with_attention_blocks():
    """Sliding-window attention blocks have no spectral internals but are certified like the rest."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=3, n_heads=2, context=32, swa_every=2, swa_window=8)
    ck = Checkpoint(model=ByteLM(cfg).eval(), tokenizer=ByteTokenizer(), config=cfg, meta={}, name="hybrid",
                    sha256="hybrid")
    r = causality_report(ck, lengths=[24], trials=1)
    assert r.causal and [p.kind for p in r.per_layer] == ["mhf", "swa", "mhf"]
    assert r.per_layer[1].response > 0 and r.per_layer[1].leak <= 1e-5
    assert brute_force_leak(ck, 24, seed=0) <= 1e-5
    assert [x is None for x in run_trace(ck, "hello").layers] == [False, True, False]
    assert [x is None for x in gate_report(ck)] == [False, True, False]


def test_nan_logits_are_never_certified():
    from caracal_viz import load_checkpoint

    from .conftest import sample_path

    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # a private copy, damaged below
    with torch.no_grad():
        ck.model.ln_f.bias[0] = float("nan")
    r = causality_report(ck, lengths=[8, 16], trials=1)
    assert not r.causal and np.isnan(r.model_leak) and "NaN" in r.summary
