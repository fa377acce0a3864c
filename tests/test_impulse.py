"""Impulse responses against running the mixers on unit impulses; aliasing against brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from caracal_viz import Checkpoint
from caracal_viz.impulse import aliasing, kernel_impulses, mixer_impulse
from models import ByteLM

from .conftest import load_sample


def with_mode(name: str, mode: str) -> Checkpoint:
    """The weights of a shipped checkpoint under another causal_mode (a new model, the sample untouched)."""
    src = load_sample(name)
    cfg = dataclasses.replace(src.config, causal_mode=mode)
    model = ByteLM(cfg)
    model.load_state_dict(src.model.state_dict())
    return Checkpoint(model=model.eval(), tokenizer=src.tokenizer, config=cfg, meta={}, name=f"{name}-{mode}",
                      sha256=f"{src.sha256}-{mode}", device=torch.device("cpu"))


def unit(L: int, D: int, t: int) -> torch.Tensor:
    x = torch.zeros(1, L, D, dtype=torch.float64)
    x[0, t] = 1.0
    return x


@pytest.mark.parametrize("L", [40, 300])  # shorter and longer than the kernel (C = 256)
def test_causal_kernel_is_the_mixers_response_to_unit_impulses(L):
    ck = load_sample("caracal-periodic")
    D, dh = ck.config.d_model, ck.config.head_dim
    for block, ki in zip(ck.model.blocks, kernel_impulses(ck, L)):
        with torch.no_grad():  # v = delta_0 and gate kernel g = delta_0: the output is the learned kernel k
            y = block.mixer.mix(unit(L, D, 0), unit(L, D, 0))[0][0].numpy()
        np.testing.assert_allclose(ki.causal, y[:, ::dh].T, atol=1e-6)
        np.testing.assert_array_equal(ki.lags, np.arange(-(L - 1), L))
        np.testing.assert_array_equal(ki.two_sided[:, L - 1:], ki.causal)


@pytest.mark.parametrize("L", [40, 300])
def test_two_sided_kernel_is_the_unmasked_mixers_response(L):
    ck = with_mode("caracal-periodic", "two_sided")
    D, dh = ck.config.d_model, ck.config.head_dim
    for block, ki in zip(ck.model.blocks, kernel_impulses(ck, L)):
        with torch.no_grad():  # an impulse at the last position: output t shows lag t - (L-1) <= 0
            y = block.mixer.mix(unit(L, D, L - 1), unit(L, D, 0))[0][0].numpy()
        np.testing.assert_allclose(ki.two_sided[:, : L], y[:, ::dh].T, atol=1e-6)
        neg = ki.two_sided[:, ki.lags < 0]
        np.testing.assert_allclose(ki.masked_energy, (neg**2).sum(-1))
        np.testing.assert_allclose(ki.masked_fraction, (neg**2).sum(-1) / (ki.two_sided**2).sum(-1))
        assert ki.masked_fraction.max() > 0.01  # the mask has real work to do on this checkpoint


def test_fftnet_kernel_is_its_circular_filter():
    ck = load_sample("fftnet-shakespeare")
    L = 33
    ki = kernel_impulses(ck, L)[0]
    W = ck.model.blocks[0].mixer.base_spectrum().detach().numpy().astype(np.complex128)
    x0, x = np.linspace(0, 0.5, W.shape[-1]), np.linspace(0, 0.5, L // 2 + 1)
    Wr = np.stack([np.interp(x, x0, w.real) + 1j * np.interp(x, x0, w.imag) for w in W])
    circ = np.fft.irfft(Wr, n=L)
    for m in range(-(L - L // 2), L // 2):  # the irfft layout's lags for an odd length
        np.testing.assert_allclose(ki.two_sided[:, ki.lags == m][:, 0], circ[:, m % L], atol=1e-6)
    assert np.all(ki.two_sided[:, ki.lags < -(L - L // 2)] == 0) and np.all(ki.two_sided[:, ki.lags >= L // 2] == 0)


@pytest.mark.parametrize("name,causal", [("caracal-periodic", True), ("caracal-circular-leaky", False),
                                         ("fftnet-shakespeare", False)])
def test_mixer_impulse_against_running_the_mixer(name, causal):
    ck = load_sample(name)
    L, t0 = 24, 9
    imp = mixer_impulse(ck, 0, t0, L, seed=3)
    D = ck.config.d_model
    u = np.random.default_rng(3).standard_normal(D)
    x = torch.zeros(2, L, D)
    x[1, t0] = torch.as_tensor(u / np.linalg.norm(u) * np.sqrt(D), dtype=torch.float32)
    with torch.no_grad():
        y = ck.model.blocks[0].mixer(x)
    want = (y[1] - y[0]).numpy()
    np.testing.assert_allclose(imp.response, want, atol=1e-6)
    assert imp.leak == np.abs(want[:t0]).max()
    if causal:
        assert imp.leak <= 1e-6 * imp.peak
    else:
        assert imp.leak > 1e-2 * imp.peak
    assert imp.head_response.shape == (ck.config.n_heads, L)


def brute_force_matrix(k: np.ndarray, L: int, n_fft: int) -> np.ndarray:
    """Column j: pad e_j and k to n_fft, multiply spectra, inverse FFT, keep the first L."""
    K = np.fft.rfft(k[:L], n=n_fft)
    return np.stack([np.fft.irfft(np.fft.rfft(np.eye(L)[j], n=n_fft) * K, n=n_fft)[:L] for j in range(L)], axis=1)


@pytest.mark.parametrize("n_fft", [48, 60, 95])
def test_aliasing_against_brute_force_fft(n_fft):
    ck = load_sample("caracal-periodic")
    L = 48
    a = aliasing(ck, 1, L, n_fft)
    k = kernel_impulses(ck, L)[1].causal
    t = np.arange(L)
    for h in range(ck.config.n_heads):
        M = brute_force_matrix(k[h], L, n_fft)
        np.testing.assert_allclose(a.matrix[h], M, atol=1e-9)
        exact = np.where(t[:, None] >= t[None, :], k[h][np.abs(t[:, None] - t[None, :])], 0.0)
        np.testing.assert_allclose(a.alias[h], M - exact, atol=1e-9)
        np.testing.assert_allclose(a.future_fraction[h], (np.triu(M, 1) ** 2).sum() / (M**2).sum(), atol=1e-12)
    assert a.safe_n_fft == 2 * L - 1 and a.model_n_fft >= 3 * L - 2  # L < C: v * g * k is 3L - 2 long
    assert (a.alias_fraction == 0).all() == (n_fft >= 2 * L - 1)


def test_bad_arguments():
    ck = load_sample("caracal-periodic")
    for call in (lambda: mixer_impulse(ck, 5, 0, 10), lambda: mixer_impulse(ck, 0, 10, 10),
                 lambda: kernel_impulses(ck, 0), lambda: aliasing(ck, 0, 10, 9), lambda: aliasing(ck, 0, 5000, 9999)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError, match="no learned mhf kernel"):
        aliasing(load_sample("fftnet-shakespeare"), 0, 16, 16)
