"""run_trace against the model's own forward pass, NaN/Inf reported where it appears, the forward
pass (`forward_pass`) that the analyses take, kept by its caller only, and the app's cache of it."""

from __future__ import annotations

import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from caracal_viz import load_checkpoint
from caracal_viz.energy import parseval_report
from caracal_viz.filters import data_kernels, fftnet_filters
from caracal_viz.gates import gate_report
from caracal_viz.predict import next_token_view
from caracal_viz.reach import text_reach
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass, run_trace, trace_of
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


def test_bad_text_and_another_checkpoints_pass():
    ck = load_sample("caracal-periodic")
    with pytest.raises(TextError):
        forward_pass(ck, "")
    fwd = forward_pass(ck, "abc")
    other = load_sample("fftnet-shakespeare")
    for fn in (data_kernels, fftnet_filters, gate_report, parseval_report, text_reach, next_token_view, trace_of):
        with pytest.raises(ValueError, match="another checkpoint"):
            fn(other, fwd)


def test_a_forward_pass_is_run_anew_and_kept_by_no_one_but_its_caller():
    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # a private copy: edited below
    text = "abcxabc shared"
    fwd = forward_pass(ck, text)
    first = trace_of(ck, fwd)
    first.layers[0].fft_input[:] = 0.0  # the caller owns its copy: the pass is untouched
    with torch.no_grad():
        _, recs = ck.model(torch.tensor([list(text.encode())]), return_internals=True)
    np.testing.assert_array_equal(fwd.records[0].fft_input.numpy(), recs[0].fft_input.numpy())
    np.testing.assert_array_equal(run_trace(ck, text).layers[0].fft_input, recs[0].fft_input[0].numpy())
    # the library holds no pass: once the caller drops it, it is gone (the app keeps its own)
    ref = weakref.ref(fwd)
    del fwd
    gc.collect()
    assert ref() is None
    with torch.no_grad():
        ck.model.tok_emb.weight[ord("x")] = float("nan")  # an in-place edit: the next pass sees it
    assert not run_trace(ck, text).finite
    assert not forward_pass(ck, text).logits.isfinite().all()


def test_forward_passes_in_threads():
    ck = load_sample("caracal-periodic")
    texts = [f"text {i}: abcabc" for i in range(5)]

    def logits(t):
        return forward_pass(ck, t).logits.numpy()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(logits, texts * 3))
    with torch.no_grad():
        for t, out in zip(texts * 3, got):
            np.testing.assert_array_equal(out, ck.model(torch.tensor([list(t.encode())]))[0].numpy())


def test_the_app_keeps_one_pass_per_checkpoint_device_and_text():
    from caracal_viz.app_support import caching
    from caracal_viz.resources import cpu_copy

    ck = load_sample("caracal-periodic")
    caching.forward_pass.clear()
    fwd = caching.forward_pass(ck, TEXT)
    assert caching.forward_pass(ck, TEXT) is fwd  # hashed by sha256 and device, not by its tensors
    assert caching.forward_pass(cpu_copy(ck), TEXT) is fwd  # same weights, same device
    assert caching.forward_pass(ck, TEXT + "!") is not fwd
    assert caching.forward_pass(load_sample("fftnet-shakespeare"), TEXT) is not fwd
    np.testing.assert_array_equal(fwd.logits.numpy(), forward_pass(ck, TEXT).logits.numpy())
    caching.forward_pass.clear()


def test_a_forward_pass_runs_with_the_fft_options_in_effect():
    from models.mhf import fft_options

    ck = load_sample("caracal-periodic")
    ids = torch.tensor([list(TEXT.encode())])
    with fft_options(torch.float32), torch.no_grad():
        fast = forward_pass(ck, TEXT)
        want = ck.model(ids)[0]
    np.testing.assert_array_equal(fast.logits.numpy(), want.numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(forward_pass(ck, TEXT).logits.numpy(), ck.model(ids)[0].numpy())
