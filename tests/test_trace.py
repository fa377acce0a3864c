"""run_trace against the model's own forward pass, NaN/Inf reported where it appears, and the
shared forward pass (one per checkpoint and text) that the analyses read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import numpy as np
import pytest
import torch

from caracal_viz import load_checkpoint, trace
from caracal_viz.energy import parseval_report
from caracal_viz.filters import data_kernels, fftnet_filters
from caracal_viz.gates import gate_report
from caracal_viz.text import TextError
from caracal_viz.trace import reuse_trace, run_trace, shared_forward
from models import ByteTokenizer

from .conftest import load_sample, sample_path

TEXT = "abcabcabc the cat\nsat \u00e9 \u2603!"


def test_trace_matches_the_model_forward():
    ck = load_sample("caracal-periodic")
    tr = run_trace(ck, TEXT)
    ids = list(TEXT.encode("utf-8"))
    assert tr.ids.tolist() == ids
    assert tr.labels == [ByteTokenizer.label(i) for i in ids]
    with torch.no_grad():
        logits, recs = ck.model(torch.tensor([ids]), return_internals=True)
    np.testing.assert_array_equal(tr.logits, logits[0].numpy())
    assert tr.finite and tr.nonfinite == []
    assert len(tr.layers) == ck.config.n_layers
    for layer, rec in zip(tr.layers, recs):
        assert layer.kind == "mhf" and layer.fft_size == rec.fft_size
        np.testing.assert_array_equal(layer.mixer_output, rec.mixer_output[0].numpy())
        np.testing.assert_array_equal(layer.gate_kernel, rec.gate_kernel[0].numpy())
        assert layer.kernel.shape == (ck.config.n_heads, len(ids))


def test_fftnet_trace_keeps_adapted_filter_and_data_gates():
    ck = load_sample("fftnet-shakespeare")
    tr = run_trace(ck, TEXT)
    L = len(TEXT.encode("utf-8"))
    layer = tr.layers[0]
    assert layer.adapted_filter.shape == (ck.config.n_heads, L // 2 + 1)
    assert layer.data_gate_open.shape == (L // 2 + 1, ck.config.d_model)
    assert layer.combined_kernel is None


def test_nan_is_reported_where_it_appears():
    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # a private copy: it is damaged below
    with torch.no_grad():
        ck.model.tok_emb.weight[ord("x")] = float("nan")
    text = "abcxabcabcx abc"
    tr = run_trace(ck, text)
    assert not tr.finite
    first = tr.nonfinite[0]
    assert (first.layer, first.name) == (0, "mixer_input")
    np.testing.assert_array_equal(first.positions, [i for i, c in enumerate(text) if c == "x"])
    assert first.n_nan == 2 * ck.config.d_model and first.n_inf == 0
    assert tr.nonfinite[-1].where == "logits"


def test_bad_text_and_mismatched_trace():
    ck = load_sample("caracal-periodic")
    with pytest.raises(TextError):
        run_trace(ck, "")
    tr = run_trace(ck, "abc")
    assert reuse_trace(ck, "abc", tr) is tr
    with pytest.raises(ValueError, match="another text"):
        reuse_trace(ck, "abd", tr)


def test_one_forward_pass_is_shared_and_follows_weight_edits():
    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # a private copy: edited below
    text = "abcxabc shared"
    assert shared_forward(ck, text) is shared_forward(ck, text)
    first = run_trace(ck, text)
    first.layers[0].fft_input[:] = 0.0  # the caller owns its copy: the shared pass is untouched
    with torch.no_grad():
        _, recs = ck.model(torch.tensor([list(text.encode())]), return_internals=True)
    np.testing.assert_array_equal(run_trace(ck, text).layers[0].fft_input, recs[0].fft_input[0].numpy())
    with torch.no_grad():
        ck.model.tok_emb.weight[ord("x")] = float("nan")  # an in-place edit: the next call runs again
    assert not run_trace(ck, text).finite
    assert not shared_forward(ck, text).logits.isfinite().all()
    other = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # same file, another model
    assert run_trace(other, text).finite


def test_shared_forward_bounds_and_threads(monkeypatch):
    ck = load_sample("caracal-periodic")
    texts = [f"text {i}: abcabc" for i in range(trace.TRACE_CACHE_ENTRIES + 1)]
    first = shared_forward(ck, texts[0])
    for t in texts[1:]:
        shared_forward(ck, t)
    assert shared_forward(ck, texts[0]) is not first  # the least recently used went first
    monkeypatch.setattr(trace, "TRACE_CACHE_BYTES", 0)
    assert shared_forward(ck, "too big to keep") is not shared_forward(ck, "too big to keep")
    monkeypatch.undo()

    def logits(t):
        return shared_forward(ck, t).logits.numpy()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(logits, texts * 3))
    with torch.no_grad():
        for t, out in zip(texts * 3, got):
            np.testing.assert_array_equal(out, ck.model(torch.tensor([list(t.encode())]))[0].numpy())


@pytest.mark.parametrize("name", ["caracal-periodic", "fftnet-shakespeare"])
def test_analyses_of_a_given_trace_equal_those_of_the_shared_pass(name):
    ck = load_sample(name)
    tr = run_trace(ck, TEXT)
    for fn in (data_kernels, fftnet_filters, gate_report, parseval_report):
        given, shared = fn(ck, TEXT, trace=tr), fn(ck, TEXT)
        layers = given.layers if fn is parseval_report else given
        for a, b in zip(layers, shared.layers if fn is parseval_report else shared):
            assert (a is None) == (b is None)
            if a is not None:
                for f in fields(a):
                    np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f"{fn.__name__} {f.name}")


def test_shared_forward_keys_on_the_fft_options():
    from models.mhf import fft_options

    ck = load_sample("caracal-periodic")
    ids = torch.tensor([list(TEXT.encode())])
    exact = shared_forward(ck, TEXT)
    with fft_options(torch.float32), torch.no_grad():
        fast = shared_forward(ck, TEXT)
        want = ck.model(ids)[0]
    assert fast is not exact
    np.testing.assert_array_equal(fast.logits.numpy(), want.numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(shared_forward(ck, TEXT).logits.numpy(), ck.model(ids)[0].numpy())
