"""Parseval energies against numpy's FFT in float64 on the model's own activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz.energy import parseval_report
from caracal_viz.trace import forward_pass

from .conftest import load_sample


def weights(L: int) -> np.ndarray:
    """One-sided weights, written out: DC once, Nyquist once when L is even, the rest twice."""
    w = np.full(L // 2 + 1, 2.0)
    w[0] = 1.0
    if L % 2 == 0:
        w[-1] = 1.0
    return w


def oracle(x: np.ndarray, H: int):
    """x (L, D) float64 -> per-head time energy, frequency energy and ESD (H, F), numpy only."""
    L = x.shape[0]
    xh = x.reshape(L, H, -1)
    X = np.fft.rfft(xh, axis=0)  # (F, H, dh)
    esd = (weights(L)[:, None, None] * np.abs(X) ** 2 / L).sum(-1).T
    return (xh**2).sum(axis=(0, 2)), esd.sum(-1), esd


@pytest.mark.parametrize("name,text", [("caracal-periodic", "abcabcabc 12312312 even!"),  # 24 bytes
                                       ("caracal-periodic", "odd length text"),            # 15 bytes
                                       ("fftnet-shakespeare", "To be, or not to be \u2603")])
def test_parseval_against_numpy(name, text):
    ck = load_sample(name)
    ids = torch.tensor([list(text.encode())])
    with torch.no_grad():
        _, recs = ck.model(ids, return_internals=True)
    rep = parseval_report(ck, forward_pass(ck, text))
    H = ck.config.n_heads
    for rec, e in zip(recs, rep.layers):
        v, y = (rec.fft_input[0].double().numpy(), rec.fft_output[0].double().numpy())
        t_in, f_in, esd_in = oracle(v, H)
        t_out, f_out, esd_out = oracle(y, H)
        np.testing.assert_allclose(e.input_time, t_in, rtol=1e-12)
        np.testing.assert_allclose(e.input_freq, f_in, rtol=1e-12)
        np.testing.assert_allclose(e.output_time, t_out, rtol=1e-12)
        np.testing.assert_allclose(e.esd_input, esd_in, rtol=1e-10, atol=1e-12 * esd_in.max())
        np.testing.assert_allclose(e.esd_output, esd_out, rtol=1e-10, atol=1e-12 * esd_out.max())
        np.testing.assert_allclose(e.input_rel_error, np.abs(t_in - f_in) / t_in, atol=1e-14)
        np.testing.assert_allclose(e.energy_gain, t_out / t_in, rtol=1e-12)
        np.testing.assert_allclose(e.gain, esd_out / esd_in, rtol=1e-9)
        np.testing.assert_allclose(e.freqs, np.fft.rfftfreq(ids.shape[1]))
        x = rec.mixer_input[0].double().numpy()
        assert e.mixer_input_time == pytest.approx((x**2).sum(), rel=1e-12)
        assert e.mixer_input_freq == pytest.approx(oracle(x, 1)[1][0], rel=1e-12)
        np.testing.assert_allclose(e.mixer_esd_output, oracle(rec.mixer_output[0].double().numpy(), 1)[2][0],
                                   rtol=1e-10, atol=1e-12)
    assert rep.ok and rep.max_rel_error < 1e-12


def test_nan_activations_fail_the_check():
    from caracal_viz import load_checkpoint

    from .conftest import sample_path

    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # a private copy, damaged below
    with torch.no_grad():
        ck.model.tok_emb.weight[ord("x")] = float("inf")
    rep = parseval_report(ck, forward_pass(ck, "abcxabc"))
    assert not rep.ok and np.isnan(rep.max_rel_error)
