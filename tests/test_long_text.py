"""Issue 14: a 16,384-byte text (the CPU's limit) through every view that scales as O(L log L),
on the CPU, each against an oracle that does not share its code path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz.energy import parseval_report
from caracal_viz.filters import data_kernels
from caracal_viz.gates import gate_report
from caracal_viz.predict import next_token_view
from caracal_viz.reach import text_reach
from caracal_viz.text import max_text_bytes
from caracal_viz.trace import forward_pass

from .conftest import ROOT, load_sample

BASE = (ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:5000] + "é€😀"
LONG = (BASE * (16384 // len(BASE.encode()) + 1)).encode()[:16384].decode("utf-8", "ignore")


@pytest.fixture(scope="module")
def long_run():
    ck = load_sample("caracal-long")
    assert len(LONG.encode()) <= 16384 == max_text_bytes(ck.device)
    return ck, forward_pass(ck, LONG)  # the one pass every view below reads


def test_losses_of_a_long_text_equal_those_of_its_prefixes(long_run):
    """The loss at position i of the 16,384-byte text equals the loss the model gives the
    prefix alone (float64 log-softmax of a separate forward), at the start and past 8,000 bytes."""
    ck, fwd = long_run
    view = next_token_view(ck, fwd)
    ids = np.frombuffer(LONG.encode(), dtype=np.uint8).astype(np.int64)
    assert view.loss_bits.shape == (ids.size,) and np.isfinite(view.loss_bits[:-1]).all()
    for end in (300, 8300):
        x = torch.as_tensor(ids[: end + 1])[None]
        with torch.no_grad():
            logp = torch.log_softmax(ck.model(x[:, :-1]).double(), dim=-1)[0]
        want = -logp[torch.arange(end), x[0, 1:]].numpy() / np.log(2)
        np.testing.assert_allclose(view.loss_bits[end - 200: end], want[-200:], atol=2e-3)


def test_data_kernels_gates_energy_and_reach_of_a_long_text(long_run):
    ck, fwd = long_run
    L = len(LONG.encode())
    dks = data_kernels(ck, fwd)
    reaches = text_reach(ck, fwd)
    gates = gate_report(ck, fwd)
    rep = parseval_report(ck, fwd)
    blocks = [i for i, d in enumerate(dks) if d is not None]
    assert blocks and all(gates[i] is not None and rep.layers[i] is not None for i in blocks)
    for i in blocks:
        d = dks[i]
        assert d.combined_kernel.shape[-1] == L
        # g * k by np.convolve in float64, for one channel of the first and last head
        for h in (0, d.combined_kernel.shape[0] - 1):
            want = np.convolve(d.gate_kernel[h, 0].astype(np.float64), d.learned_kernel[h].astype(np.float64))[:L]
            np.testing.assert_allclose(d.combined_kernel[h, 0], want, atol=1e-4 * np.abs(want).max())
        # reach: |k|^2 summed over the head's channels, cumulated, in numpy
        for h, hr in enumerate(reaches[i].combined):
            e = (d.combined_kernel[h].astype(np.float64) ** 2).sum(axis=0)
            np.testing.assert_allclose(hr.cumulative, np.cumsum(e) / e.sum(), atol=1e-6)
            assert hr.lag50 == int(np.searchsorted(np.cumsum(e) / e.sum(), 0.5))
        # Parseval: the energy spectral densities sum to the time-domain energies
        le = rep.layers[i]
        np.testing.assert_allclose(le.esd_input.sum(axis=1), le.input_time, rtol=1e-5)
        np.testing.assert_allclose(le.esd_output.sum(axis=1), le.output_time, rtol=1e-5)
        g = gates[i]
        assert np.isfinite(g.passed_fraction).all() and ((g.data_open >= 0) & (g.data_open <= 1)).all()
    assert rep.ok and rep.max_rel_error < 1e-5
