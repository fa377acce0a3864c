"""Filters against numpy/scipy oracles computed from the raw parameters and the model's own pass."""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch

from caracal_viz.filters import data_kernels, fftnet_filters, learned_filters
from caracal_viz.trace import forward_pass

from .conftest import load_sample

TEXT = "abcabcabc hello, hello! 12312312"


def np_modrelu(S, b):
    mag = np.abs(S)
    return np.where(mag > 0, np.maximum(mag + b, 0) / np.where(mag > 0, mag, 1) * S, 0)


def mhf_kernel_from_params(mixer) -> np.ndarray:
    """(H, C) causal kernel: irfft(modReLU(S, b), 2C) with negative lags dropped, in float64."""
    S = torch.view_as_complex(mixer.spectrum.detach().contiguous()).numpy().astype(np.complex128)
    b = mixer.gate_bias.detach().numpy().astype(np.float64)
    C = S.shape[-1] - 1
    return np.fft.irfft(np_modrelu(S, b), n=2 * C)[:, :C]


def test_mhf_filters_against_scipy():
    ck = load_sample("caracal-periodic")
    filters = learned_filters(ck)
    C = ck.config.context
    for block, f in zip(ck.model.blocks, filters):
        k = mhf_kernel_from_params(block.mixer)
        np.testing.assert_allclose(f.kernel, k, atol=1e-6 * np.abs(k).max())
        np.testing.assert_allclose(f.freqs, np.arange(C + 1) / (2 * C))
        np.testing.assert_array_equal(f.lags, np.arange(C))
        w = 2 * np.pi * f.freqs
        for h in range(ck.config.n_heads):
            _, H = scipy.signal.freqz(f.kernel[h], worN=w)
            np.testing.assert_allclose(f.response[h], H, atol=1e-9 * np.abs(H).max())
            np.testing.assert_allclose(f.magnitude_db[h], np.maximum(20 * np.log10(np.abs(H)), -120), atol=1e-6)
            np.testing.assert_allclose(f.phase[h], np.unwrap(np.angle(H)), atol=1e-6)
            _, gd = scipy.signal.group_delay((f.kernel[h], [1.0]), w=w)
            np.testing.assert_allclose(f.group_delay[h], gd, rtol=1e-6, atol=1e-6)


def test_periodic_kernels_peak_at_the_trained_periods():
    """caracal-periodic was trained on periods 3, 8 and 20: predicting x_{t+1} = x_{t+1-P} needs lag
    P - 1, and its strongest kernel lags show it (an independent fact about the data, not the code)."""
    f = learned_filters(load_sample("caracal-periodic"))[0]
    peaks = {int(np.argmax(np.abs(k[1:]))) + 1 for k in f.kernel}
    assert peaks & {2, 7, 19, 39, 23}


def test_fftnet_learned_filter_is_its_base_filter():
    ck = load_sample("fftnet-shakespeare")
    f = learned_filters(ck)[0]
    W = torch.view_as_complex(ck.model.blocks[0].mixer.base_filter.detach().contiguous()).numpy()
    np.testing.assert_allclose(f.response, W, rtol=1e-6)
    n = f.kernel.shape[-1]
    np.testing.assert_allclose(f.kernel, np.fft.irfft(W.astype(np.complex128), n=n), atol=1e-7)
    # scipy's group delay needs a causal kernel: shift lag -n/2 to index 0, then subtract the shift.
    w = 2 * np.pi * f.freqs
    for h in range(2):
        _, gd = scipy.signal.group_delay((np.fft.fftshift(f.kernel[h]), [1.0]), w=w)
        np.testing.assert_allclose(f.group_delay[h], gd - n // 2, rtol=1e-5, atol=1e-5)


def test_data_kernels_against_np_convolve():
    ck = load_sample("caracal-periodic")
    ids = torch.tensor([list(TEXT.encode())])
    L = ids.shape[1]
    with torch.no_grad():
        _, recs = ck.model(ids, return_internals=True)
    H, dh = ck.config.n_heads, ck.config.head_dim
    for block, rec, dk in zip(ck.model.blocks, recs, data_kernels(ck, forward_pass(ck, TEXT))):
        g = rec.gate_kernel[0].double().numpy()  # (L, D)
        k = mhf_kernel_from_params(block.mixer)[:, :L]
        np.testing.assert_allclose(dk.learned_kernel, k, atol=1e-6 * np.abs(k).max())
        assert dk.gate_kernel.shape == dk.combined_kernel.shape == (H, dh, L)
        for c in range(0, H * dh, 5):
            h, j = divmod(c, dh)
            np.testing.assert_allclose(dk.gate_kernel[h, j], g[:, c], rtol=1e-6)
            want = np.convolve(g[:, c], k[h])[:L]
            np.testing.assert_allclose(dk.combined_kernel[h, j], want, atol=1e-5 * np.abs(want).max())
            np.testing.assert_allclose(dk.gate_response[h, j], np.fft.rfft(g[:, c], 2 * L), atol=1e-4)
        assert dk.freqs.shape == (L + 1,) and dk.combined_db.shape == (H, L + 1)
        for kernel, db in ((dk.gate_kernel, dk.gate_db), (dk.combined_kernel, dk.combined_db)):
            mags = np.abs(np.fft.rfft(kernel.astype(np.float64), 2 * L))  # (H, dh, F): numpy float64
            with np.errstate(divide="ignore"):
                want = np.maximum(20 * np.log10(mags), -120.0).mean(axis=1)
            np.testing.assert_allclose(db, want, rtol=1e-9, atol=1e-9)


def test_fftnet_base_against_adapted_filter():
    ck = load_sample("fftnet-shakespeare")
    ids = torch.tensor([list(TEXT.encode())])
    L = ids.shape[1]
    with torch.no_grad():
        _, recs = ck.model(ids, return_internals=True)
    ff = fftnet_filters(ck, forward_pass(ck, TEXT))
    H = ck.config.n_heads
    for block, rec, f in zip(ck.model.blocks, recs, ff):
        W0 = torch.view_as_complex(block.mixer.base_filter.detach().contiguous()).numpy().astype(np.complex128)
        # independent resampling: linear interpolation over 0..0.5, endpoints aligned
        x0, x = np.linspace(0, 0.5, W0.shape[-1]), np.linspace(0, 0.5, L // 2 + 1)
        want = np.stack([np.interp(x, x0, w.real) + 1j * np.interp(x, x0, w.imag) for w in W0])
        np.testing.assert_allclose(f.base_resampled, want, atol=1e-5)
        adapted = rec.adapted_filter[0].numpy()
        np.testing.assert_allclose(f.adapted, adapted, rtol=1e-6)
        np.testing.assert_allclose(f.modulation, adapted - want, atol=1e-5)
        # gates: |rfft(v) W| + b > 0 per channel, averaged over each head's channels
        X = np.fft.rfft(rec.fft_input[0].double().numpy(), axis=0)
        b = np.stack([np.interp(x, x0, bb) for bb in block.mixer.gate_bias.detach().double().numpy()])
        Wc, bc = np.repeat(adapted, ck.config.head_dim, axis=0).T, np.repeat(b, ck.config.head_dim, axis=0).T
        open_ = (np.abs(X * Wc) + bc > 0).reshape(L // 2 + 1, H, -1).mean(-1).T
        assert np.mean(np.abs(f.data_open - open_)) < 0.01  # float32 vs float64 at the gate boundary
    assert all(x is None for x in data_kernels(ck, forward_pass(ck, TEXT)))
    assert all(x is None for x in fftnet_filters(load_sample("caracal-periodic"), forward_pass(load_sample("caracal-periodic"), TEXT)))


def test_the_device_mean_db_is_magnitude_db_averaged_over_channels():
    """The GPU's path of data_kernels' dB (torch), run here on CPU tensors, against numpy's."""
    from caracal_viz import spectral
    from caracal_viz.filters import _device_mean_db
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5, 40)) * 10.0 ** rng.uniform(-8, 3, size=(3, 5, 40)) + 1j * rng.normal(size=(3, 5, 40))
    z[0, :, 0] = 0.0  # the floor, from -inf
    z[1, 2, 3] = np.nan
    got = _device_mean_db(torch.from_numpy(z), -120.0)
    np.testing.assert_allclose(got, spectral.magnitude_db(z).mean(axis=1), rtol=1e-12, atol=1e-12)
    assert got[0, 0] == -120.0 and np.isnan(got[1, 3])
