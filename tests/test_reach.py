"""Reach against brute-force float64 loops over the kernels read from the model's hook points."""

import numpy as np
import pytest
import torch

from caracal_viz.reach import reach, reach_from_kernel
from caracal_viz.trace import forward_pass
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


def _brute_reach(kernels):
    """(lag50, lag90, energy, cumulative) of channel kernels (C, L) by float64 loops."""
    C, L = len(kernels), len(kernels[0])
    e = [sum(float(kernels[c][m]) ** 2 for c in range(C)) for m in range(L)]
    total, run, cum = sum(e), 0.0, []
    for x in e:
        run += x
        cum.append(run / total)
    return next(j for j, c in enumerate(cum) if c >= 0.5), next(j for j, c in enumerate(cum) if c >= 0.9), e, cum


def test_text_reach_of_the_combined_and_learned_kernels_against_numpy_convolutions():
    """The combined kernel g * k rebuilt from the hook points (gate stream g, learned kernel k)
    by np.convolve, its per-head energy by float64 loops; the learned kernel's likewise."""
    from caracal_viz.reach import text_reach

    ck = load_sample("caracal-shakespeare")
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east.\n"
    tokens = torch.tensor([list(text.encode())])
    _, cache = run_with_cache(ck.model, tokens)
    got = text_reach(ck, forward_pass(ck, text))
    H, L = ck.config.n_heads, tokens.shape[1]
    assert len(got) == ck.config.n_layers
    for i, block in enumerate(got):
        g = cache[f"blocks.{i}.mixer.hook_g"][0].double().numpy()  # (L, H, dh)
        k = cache[f"blocks.{i}.mixer.hook_kernel"].double().numpy()  # (H, L)
        for h in range(H):
            combined = [np.convolve(g[:, h, c], k[h])[:L] for c in range(g.shape[2])]
            for r, kern in ((block.combined[h], combined), (block.learned[h], [k[h]])):
                l50, l90, e, cum = _brute_reach(kern)
                assert (r.block, r.head, r.lag50, r.lag90) == (i, h, l50, l90)
                np.testing.assert_allclose(r.energy, e, rtol=1e-4, atol=1e-12 * max(e))
                np.testing.assert_allclose(r.cumulative, cum, rtol=1e-4, atol=1e-6)


def test_text_reach_skips_blocks_without_an_mhf_kernel():
    from caracal_viz.reach import text_reach

    ck = load_sample("caracal-hybrid-shakespeare")
    got = text_reach(ck, forward_pass(ck, "To be, or not to be: that is the question."))
    kinds = [ck.config.layer_kind(i) for i in range(ck.config.n_layers)]
    assert [r is None for r in got] == [kind != "mhf" for kind in kinds] and "mhf" in kinds and "swa" in kinds


def test_influence_by_lag_against_loops_over_a_random_map():
    from caracal_viz.reach import influence_by_lag

    rng = np.random.default_rng(0)
    L = 9
    m = np.tril(rng.random((L, L)))
    m[-1] = np.nan
    got = influence_by_lag(m)
    for lag in range(L):
        cells = [m[i, i - lag] for i in range(L - 1) if i - lag >= 0]
        assert got.rows[lag] == len(cells)
        if cells:
            assert got.mean[lag] == pytest.approx(sum(cells) / len(cells), rel=1e-12)
        else:
            assert np.isnan(got.mean[lag])
    means = [got.mean[j] if got.rows[j] else 0.0 for j in range(L)]
    cum = np.cumsum(means) / sum(means)
    np.testing.assert_allclose(got.cumulative, cum, rtol=1e-12)
    assert got.lag50 == next(j for j in range(L) if cum[j] >= 0.5)
    assert got.lag90 == next(j for j in range(L) if cum[j] >= 0.9)


def test_influence_by_lag_figure_labels_its_lines_where_they_are_on_the_log_axis():
    """Plotly places an annotation on a log axis at log10 of its x (a shape at x itself): labels at
    the raw lag pushed the autorange to 10^48 and left the curve squeezed against the left edge."""
    from caracal_viz.figures.long import influence_by_lag_figure
    from caracal_viz.reach import influence_by_lag

    rng = np.random.default_rng(1)
    L = 200
    m = np.tril(rng.random((L, L)) * np.exp(-np.subtract.outer(np.arange(L), np.arange(L)) / 20))
    m[-1] = np.nan
    li = influence_by_lag(m)
    fig = influence_by_lag_figure(li, "a test map")
    labels = {a.text: a.x for a in fig.layout.annotations if "within" in (a.text or "")}
    assert labels == {f"50% within {li.lag50}": pytest.approx(np.log10(li.lag50)),
                      f"90% within {li.lag90}": pytest.approx(np.log10(li.lag90))}
    assert sorted(s.x0 for s in fig.layout.shapes) == [li.lag50, li.lag90]
