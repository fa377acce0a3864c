"""run_trace against the model's own forward pass, and NaN/Inf reported where it appears."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz import load_checkpoint
from caracal_viz.text import TextError
from caracal_viz.trace import reuse_trace, run_trace
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
