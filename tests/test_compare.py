"""compare_checkpoints against differences computed from the raw parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz.compare import CompareError, compare_checkpoints

from .conftest import load_sample


def gate_params(mixer):
    S = torch.view_as_complex(mixer.spectrum.detach().contiguous()).numpy().astype(np.complex128)
    b = mixer.gate_bias.detach().double().numpy()
    return S, b


def test_pad_against_circular_checkpoint():
    a, b = load_sample("caracal-shakespeare"), load_sample("caracal-circular-leaky")
    cmp = compare_checkpoints(a, b)
    assert (cmp.name_a, cmp.name_b) == (a.name, b.name)
    for block_a, block_b, d in zip(a.model.blocks, b.model.blocks, cmp.layers):
        Sa, ba = gate_params(block_a.mixer)
        Sb, bb = gate_params(block_b.mixer)
        open_a, open_b = np.abs(Sa) + ba > 0, np.abs(Sb) + bb > 0
        np.testing.assert_array_equal(d.opened, ~open_a & open_b)
        np.testing.assert_array_equal(d.closed, open_a & ~open_b)
        np.testing.assert_array_equal(d.n_changed, (open_a != open_b).sum(-1))
        np.testing.assert_allclose(d.bias_diff, bb - ba)
        rel = np.linalg.norm(Sb - Sa, axis=-1) / np.linalg.norm(Sa, axis=-1)
        np.testing.assert_allclose(d.spectrum_rel_change, rel, rtol=1e-6)
        ka = block_a.mixer.causal_kernel().detach().double().numpy()
        kb = block_b.mixer.causal_kernel().detach().double().numpy()
        np.testing.assert_allclose(d.kernel_diff, kb - ka, atol=1e-6)
        np.testing.assert_allclose(d.kernel_rel_change, np.linalg.norm(kb - ka, axis=-1) / np.linalg.norm(ka, axis=-1),
                                   rtol=1e-4)
        Ha, Hb = np.fft.rfft(ka, n=2 * ka.shape[-1]), np.fft.rfft(kb, n=2 * kb.shape[-1])
        np.testing.assert_allclose(d.db_diff, 20 * np.log10(np.abs(Hb) / np.abs(Ha)), atol=1e-3)
    assert "block" in cmp.summary and "\n" not in cmp.summary


def test_self_comparison_is_zero():
    a = load_sample("caracal-periodic")
    cmp = compare_checkpoints(a, a)
    for d in cmp.layers:
        assert not d.db_diff.any() and not d.kernel_diff.any() and not d.n_changed.any()


@pytest.mark.parametrize("other,what", [("caracal-periodic", "blocks"), ("fftnet-shakespeare", "blocks")])
def test_shape_mismatch_is_a_clear_error(other, what):
    with pytest.raises(CompareError, match=what) as e:
        compare_checkpoints(load_sample("caracal-shakespeare"), load_sample(other))
    assert "\n" not in str(e.value)
