"""Interventions against independent oracles: copies of the model with weights edited by hand,
numpy masks and numpy FFTs; patching a text with itself; the batched sweep against the single
interventions; certificates of the intervened models; one-line errors for bad requests."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from caracal_viz import interventions as iv
from caracal_viz.causality import causality_report
from caracal_viz.predict import next_token_view
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample

PERIODIC = ("abcdefgh" * 30)[:160]
SHAKES = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n"


def edited(ck, fn, tag):
    """A checkpoint whose model is a copy with fn(model) applied to its weights (no hooks)."""
    model = copy.deepcopy(ck.model)
    with torch.no_grad():
        fn(model)
    return dataclasses.replace(ck, model=model, sha256=ck.sha256 + tag)


def oracle_loss(ck, text):
    return next_token_view(ck, forward_pass(ck, text)).loss_bits


def test_zero_head_ablation_equals_the_output_projection_edited_by_hand():
    ck = load_sample("caracal-shakespeare")
    layer, head, dh = 4, 1, ck.config.head_dim
    res = iv.ablate_head(ck, SHAKES, layer, head)

    def cut(m):
        m.blocks[layer].mixer.w_o.weight[:, head * dh:(head + 1) * dh] = 0

    want = oracle_loss(edited(ck, cut, "zero"), SHAKES)
    np.testing.assert_allclose(res.loss_after, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.loss_before, oracle_loss(ck, SHAKES))
    assert abs(res.delta_bits) > 1e-3 and res.delta_bits == pytest.approx(np.nanmean(want[:-1]) - res.bits_before)


def test_mean_head_ablation_equals_the_mean_folded_into_the_output_bias():
    ck = load_sample("caracal-periodic")
    layer, head, dh = 1, 3, ck.config.head_dim
    res = iv.ablate_head(ck, PERIODIC, layer, head, "mean")
    with torch.no_grad():
        _, cache = ck.model.run_with_cache(torch.tensor([list(PERIODIC.encode())]),
                                           names_filter=f"blocks.{layer}.mixer.hook_mixed")
    mean = cache[f"blocks.{layer}.mixer.hook_mixed"][0, :, head].double().mean(0).numpy()

    def fold(m):
        w = m.blocks[layer].mixer.w_o
        cols = w.weight[:, head * dh:(head + 1) * dh].double().numpy()
        w.bias += torch.as_tensor(cols @ mean, dtype=torch.float32)
        w.weight[:, head * dh:(head + 1) * dh] = 0

    np.testing.assert_allclose(res.loss_after, oracle_loss(edited(ck, fold, "mean"), PERIODIC), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["stop", "pass"])
def test_band_by_hook_equals_the_learned_spectrum_masked_with_numpy(mode):
    ck = load_sample("caracal-periodic")
    layer, head, lo, hi = 0, 2, 0.1, 0.26
    C = ck.config.context
    f = np.arange(C + 1) / (2 * C)
    inside = (f >= lo) & (f <= hi)
    mask = np.ones((ck.config.n_heads, C + 1), dtype=np.float32)
    mask[head] = inside if mode == "pass" else ~inside
    res = iv.filter_band(ck, PERIODIC, layer, head, (lo, hi), mode=mode)

    def apply(m):
        m.blocks[layer].mixer.spectrum.mul_(torch.as_tensor(mask)[..., None])

    np.testing.assert_allclose(res.loss_after, oracle_loss(edited(ck, apply, mode), PERIODIC), rtol=1e-5, atol=1e-5)
    by_period = iv.filter_band(ck, PERIODIC, layer, head, periods=(1 / hi, 1 / lo), mode=mode)
    np.testing.assert_allclose(by_period.loss_after, res.loss_after, rtol=1e-12, atol=1e-12)


def test_gates_forced_closed_or_open_equal_hand_edited_spectrum_and_bias():
    ck = load_sample("caracal-periodic")
    layer, head = 1, 0
    closed = iv.force_gates(ck, PERIODIC, layer, head, (0.0, 0.5), "closed")
    opened = iv.force_gates(ck, PERIODIC, layer, head, (0.0, 0.5), "open")

    def zero_head(m):
        m.blocks[layer].mixer.spectrum[head] = 0

    def no_gate(m):  # ReLU(|S| + eps) / (|S| + eps) = 1: modReLU is the identity for this head
        m.blocks[layer].mixer.gate_bias[head] = 1e-8

    np.testing.assert_allclose(closed.loss_after, oracle_loss(edited(ck, zero_head, "closed"), PERIODIC), atol=1e-5)
    np.testing.assert_allclose(opened.loss_after, oracle_loss(edited(ck, no_gate, "open"), PERIODIC), atol=1e-4)
    assert abs(closed.delta_bits) > 1e-2


def test_circular_block_mixes_as_a_numpy_circular_convolution_and_leaks():
    ck = load_sample("caracal-periodic")
    layer = 0
    circ = iv.circular_copy(ck, layer)
    ids = torch.tensor([list(PERIODIC.encode())])
    p = f"blocks.{layer}.mixer."
    with torch.no_grad():
        _, cache = circ.model.run_with_cache(ids, names_filter=lambda n: n.startswith(p))
    v, g, y = (cache[p + n][0].flatten(-2).double().numpy() for n in ("hook_v", "hook_g", "hook_mixed"))
    L = v.shape[0]
    k = np.repeat(circ.model.blocks[layer].mixer.causal_kernel().detach().double().numpy()[:, :L], ck.config.head_dim,
                  axis=0).T  # (L, D)
    want = np.fft.irfft(np.fft.rfft(v, axis=0) * np.fft.rfft(g, axis=0) * np.fft.rfft(k, axis=0), n=L, axis=0)
    np.testing.assert_allclose(y, want, atol=1e-4 * np.abs(want).max())
    assert ck.model.blocks[layer].mixer.cfg.causal_mode == "pad"  # the shared model is untouched
    res = iv.switch_to_circular(ck, PERIODIC, layer)
    assert res.certificate is not None and not res.certificate.causal


def test_the_certificate_names_each_blocks_own_mode_after_a_switch_to_circular():
    ck = load_sample("caracal-periodic")
    layer = 1
    cert = causality_report(iv.circular_copy(ck, layer), lengths=[16], trials=1)
    modes = [p.causal_mode for p in cert.per_layer]
    assert modes == ["circular" if i == layer else "pad" for i in range(ck.config.n_layers)], modes
    assert cert.per_layer[layer].verdict == "leaks" and "no zero padding" in cert.per_layer[layer].structure.text
    assert f"from block {layer} (mhf circular)" in cert.summary, cert.summary
    assert all(p.verdict == "causal" for i, p in enumerate(cert.per_layer) if i != layer)


@pytest.mark.parametrize("make", [
    lambda ck: iv.ablate_head(ck, PERIODIC, 1, 2, certify=True),
    lambda ck: iv.ablate_head(ck, PERIODIC, 0, 1, "mean", certify=True),
    lambda ck: iv.filter_band(ck, PERIODIC, 0, 3, (0.05, 0.2), certify=True),
    lambda ck: iv.force_gates(ck, PERIODIC, 1, 1, (0.1, 0.4), "open", certify=True),
    lambda ck: iv.force_gates(ck, PERIODIC, 1, 1, (0.1, 0.4), "closed", certify=True),
], ids=["zero-head", "mean-head", "band-stop", "gates-open", "gates-closed"])
def test_interventions_that_keep_causality_keep_the_certificate_causal(make):
    res = make(load_sample("caracal-periodic"))
    assert res.certificate.causal, res.certificate.summary


def test_a_band_in_the_gate_stream_reads_the_future_and_the_certificate_says_so():
    ck = load_sample("caracal-periodic")
    res = iv.filter_band(ck, PERIODIC, 0, 1, (0.1, 0.3), stream="gate")  # certified by default
    assert res.certificate is not None and not res.certificate.causal
    assert iv.ablate_head(ck, PERIODIC, 0, 1).certificate is None  # not measured where nothing can break


def test_patching_a_text_with_itself_changes_nothing_and_the_corrupted_byte_restores_all():
    ck = load_sample("caracal-periodic")
    clean = PERIODIC[:48]
    same = iv.activation_patching(ck, clean, clean)
    np.testing.assert_allclose(same.loss_bits, same.clean_bits, atol=1e-6)
    assert np.isnan(same.restored).all()  # nothing to restore
    t = 20
    bad = clean[:t] + "z" + clean[t + 1:]
    res = iv.activation_patching(ck, clean, bad, position=t + 7)  # predicts byte t + 8: one period later
    assert res.corrupted_bits > res.clean_bits + 0.1
    # block 0's input differs from the clean run at t only: patching it there is the clean run
    assert res.restored[0, t] == pytest.approx(1.0, abs=1e-5)
    others = np.delete(res.restored[0], t)
    np.testing.assert_allclose(others, 0.0, atol=1e-5)
    assert iv.activation_patching(ck, clean, bad, hook="mixer_out").loss_bits.shape == (2, 48)


@pytest.mark.parametrize("name", ["caracal-periodic", "fftnet-shakespeare"])
def test_the_batched_sweep_equals_the_single_interventions(name):
    ck = load_sample(name)
    text = PERIODIC[:96] if name == "caracal-periodic" else SHAKES
    s = iv.sweep(ck, text, n_bands=4)
    n, H = ck.config.n_layers, ck.config.n_heads
    assert s.head_delta.shape == (n, H) and s.band_delta.shape == (n, H, 4)
    assert s.bits_clean == pytest.approx(next_token_view(ck, forward_pass(ck, text)).mean_bits, abs=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(3):
        k, h, b = int(rng.integers(n)), int(rng.integers(H)), int(rng.integers(4))
        head = iv.ablate_head(ck, text, k, h)
        assert s.head_delta[k, h] == pytest.approx(head.delta_bits, abs=1e-5)
        band = iv.filter_band(ck, text, k, h, (s.band_edges[b], s.band_edges[b + 1]))
        assert s.band_delta[k, h, b] == pytest.approx(band.delta_bits, abs=1e-5)
    assert len(s.rows()) == n * H * 5


@pytest.mark.parametrize("call, match", [
    (lambda ck: iv.filter_band(ck, PERIODIC, 0, 0, (0.2, 0.7)), "outside 0..0.5"),
    (lambda ck: iv.filter_band(ck, PERIODIC, 0, 0, (0.3, 0.2)), "outside 0..0.5 or empty"),
    (lambda ck: iv.filter_band(ck, PERIODIC, 0, 0, periods=(1, 8)), "2 <= shortest"),
    (lambda ck: iv.filter_band(ck, PERIODIC, 0, 0, (0.1001, 0.1002)), "holds no bin"),
    (lambda ck: iv.ablate_head(ck, PERIODIC, 0, 4), "head must be an integer from 0 to 3"),
    (lambda ck: iv.ablate_head(ck, PERIODIC, 2, 0), "layer must be an integer from 0 to 1"),
    (lambda ck: iv.ablate_head(ck, "a", 0, 0), "one byte long"),
    (lambda ck: iv.ablate_head(ck, "", 0, 0), "empty"),
    (lambda ck: iv.ablate_head(ck, PERIODIC, 0, 0, "median"), "'zero' or 'mean'"),
    (lambda ck: iv.force_gates(ck, PERIODIC, 0, 0, (0.1, 0.2), "ajar"), "'open' or 'closed'"),
    (lambda ck: iv.activation_patching(ck, "abc", "abcd"), "same length"),
    (lambda ck: iv.sweep(ck, PERIODIC, n_bands=0), "n_bands"),
])
def test_bad_requests_get_one_line_messages(call, match):
    with pytest.raises((ValueError, TextError), match=match) as e:
        call(load_sample("caracal-periodic"))
    assert "\n" not in str(e.value)


def test_fftnet_has_no_gate_stream_and_circular_needs_an_mhf_block():
    ck = load_sample("fftnet-shakespeare")
    with pytest.raises(ValueError, match="no gate stream"):
        iv.filter_band(ck, SHAKES, 0, 0, (0.1, 0.2), stream="gate")
    with pytest.raises(ValueError, match="only MHF blocks"):
        iv.switch_to_circular(ck, SHAKES, 0)
    res = iv.force_gates(ck, SHAKES, 1, 2, (0.0, 0.25), "closed")
    assert np.isfinite(res.delta_bits) and res.certificate is None  # fftnet is not causal to begin with
