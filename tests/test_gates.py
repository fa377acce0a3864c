"""modReLU gates against numpy computed from the raw parameters; dead heads; passed energy."""

from __future__ import annotations

import numpy as np
import torch

from caracal_viz import load_checkpoint
from caracal_viz.gates import DEAD_OPEN_FRACTION, gate_report
from caracal_viz.trace import forward_pass

from .conftest import load_sample, sample_path

TEXT = "abcabcabc hello, hello! 12312312 xyz"


def params(mixer):
    S = torch.view_as_complex(mixer.spectrum.detach().contiguous()).numpy().astype(np.complex128)
    return S, mixer.gate_bias.detach().double().numpy()


def test_static_gates_from_parameters():
    ck = load_sample("caracal-periodic")
    for block, g in zip(ck.model.blocks, gate_report(ck)):
        S, b = params(block.mixer)
        mag = np.abs(S)
        np.testing.assert_allclose(g.bias, b)
        np.testing.assert_allclose(g.magnitude, mag, rtol=1e-6)
        np.testing.assert_array_equal(g.open, mag + b > 0)
        np.testing.assert_allclose(g.transmission, (np.maximum(mag + b, 0) / mag) ** 2, rtol=1e-5)
        np.testing.assert_allclose(g.open_fraction, (mag + b > 0).mean(-1))
        assert g.token_energy is None and g.passed_fraction is None


def test_dead_head_is_reported():
    ck = load_checkpoint(sample_path("caracal-periodic"), device="cpu")  # private copy, modified below
    with torch.no_grad():
        ck.model.blocks[1].mixer.gate_bias[2] = -1e3
    g = gate_report(ck)[1]
    assert g.open_fraction[2] == 0.0
    np.testing.assert_array_equal(g.dead, g.open_fraction <= DEAD_OPEN_FRACTION)
    assert g.dead.tolist() == [False, False, True, False]


def test_mhf_passed_energy_against_parseval():
    ck = load_sample("caracal-periodic")
    ids = torch.tensor([list(TEXT.encode())])
    with torch.no_grad():
        _, recs = ck.model(ids, return_internals=True)
    H = ck.config.n_heads
    for rec, g in zip(recs, gate_report(ck, forward_pass(ck, TEXT))):
        v = rec.fft_input[0].double().numpy()
        head_energy = (v**2).reshape(v.shape[0], H, -1).sum(axis=(0, 2))
        np.testing.assert_allclose(g.token_energy.sum(-1), head_energy, rtol=1e-9)
        np.testing.assert_allclose(g.passed_energy, g.token_energy * g.transmission)
        np.testing.assert_allclose(g.passed_fraction, g.passed_energy.sum(-1) / head_energy, rtol=1e-9)
        np.testing.assert_array_equal(g.data_open, g.open)


def test_fftnet_passed_energy_against_numpy_modrelu():
    ck = load_sample("fftnet-shakespeare")
    ids = torch.tensor([list(TEXT.encode())])
    L = ids.shape[1]
    with torch.no_grad():
        _, recs = ck.model(ids, return_internals=True)
    H, dh = ck.config.n_heads, ck.config.head_dim
    x0, x = np.linspace(0, 0.5, ck.config.context // 2 + 1), np.linspace(0, 0.5, L // 2 + 1)
    w = np.full(L // 2 + 1, 2.0)
    w[0] = 1.0
    if L % 2 == 0:
        w[-1] = 1.0
    for block, rec, g in zip(ck.model.blocks, recs, gate_report(ck, forward_pass(ck, TEXT))):
        Z = np.fft.rfft(rec.fft_input[0].double().numpy(), axis=0) * np.repeat(
            rec.adapted_filter[0].numpy().astype(np.complex128), dh, axis=0).T
        b = np.repeat(np.stack([np.interp(x, x0, bb) for bb in block.mixer.gate_bias.detach().double().numpy()]),
                      dh, axis=0).T
        kept = np.maximum(np.abs(Z) + b, 0)  # |modReLU(Z)|
        e_in = (w[:, None] * np.abs(Z) ** 2 / L).reshape(-1, H, dh).sum(axis=(0, 2))
        e_out = (w[:, None] * kept**2 / L).reshape(-1, H, dh).sum(axis=(0, 2))
        np.testing.assert_allclose(g.token_energy.sum(-1), e_in, rtol=1e-6)
        np.testing.assert_allclose(g.passed_energy.sum(-1), e_out, rtol=1e-4)
        np.testing.assert_allclose(g.passed_fraction, e_out / e_in, rtol=1e-4)
        assert np.abs(g.open_fraction - (np.abs(Z) + b > 0).reshape(-1, H, dh).mean(axis=(0, 2))).max() < 0.01
