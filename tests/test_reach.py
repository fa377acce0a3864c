"""Reach against brute-force float64 loops over the kernels read from the model's hook points."""

import numpy as np
import torch

from caracal_viz.reach import reach, reach_from_kernel
from models.hooks import run_with_cache
from tests.conftest import load_sample


def test_reach_against_brute_force_cumulative_sum():
    ck = load_sample("caracal-shakespeare")
    tokens = torch.tensor([list(b"ROMEO:\nBut soft, what light through yonder window breaks?\n")])
    got = reach(ck.model, tokens)
    _, cache = run_with_cache(ck.model, tokens)
    want = []
    for i in range(ck.config.n_layers):
        kern = cache[f"blocks.{i}.mixer.hook_kernel"].double().numpy()
        for h in range(kern.shape[0]):
            e = [float(x) ** 2 for x in kern[h]]
            total, run, cum = sum(e), 0.0, []
            for x in e:
                run += x
                cum.append(run / total)
            l50 = next(j for j, c in enumerate(cum) if c >= 0.5)
            l90 = next(j for j, c in enumerate(cum) if c >= 0.9)
            want.append((i, h, e, cum, l50, l90))
    assert len(got) == len(want) == ck.config.n_layers * ck.config.n_heads
    for r, (i, h, e, cum, l50, l90) in zip(got, want):
        assert (r.block, r.head) == (i, h)
        np.testing.assert_allclose(r.energy, e, rtol=1e-12)
        np.testing.assert_allclose(r.cumulative, cum, rtol=1e-9, atol=1e-12)
        assert (r.lag50, r.lag90) == (l50, l90)


def test_reach_of_a_hand_made_kernel():
    # energy 1, 0, 1, 2 at lags 0..3: cumulative 0.25, 0.25, 0.5, 1.0
    r = reach_from_kernel(np.array([1.0, 0.0, -1.0, np.sqrt(2.0)]), 0, 0)
    assert (r.lag50, r.lag90) == (2, 3)
    assert reach_from_kernel(np.zeros(5), 0, 0).lag90 == -1


def test_reach_figure_one_line_per_head_with_the_cumulative_fraction():
    from caracal_viz.figures.long import reach_figure

    rs = [reach_from_kernel(np.array([1.0, 0.0, -1.0, np.sqrt(2.0)]), 0, h) for h in range(2)]
    fig = reach_figure(rs)
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[0].y, [0.25, 0.5, 1.0])
    assert list(fig.data[1].x) == [1, 2, 3] and fig.layout.xaxis.type == "log"
    assert "90% by lag 3" in fig.data[0].hovertemplate
