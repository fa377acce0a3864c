"""Every figure builder on real analyses of real checkpoints: titles and axis titles, no fixed
width, the right colour scales, the arrays it was given (checked against the analysis itself),
and user text escaped so Plotly can never read it as markup."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from scipy import signal

from caracal_viz import figures
from caracal_viz.causality import causality_report
from caracal_viz.compare import compare_checkpoints
from caracal_viz.energy import parseval_report
from caracal_viz.filters import data_kernels, fftnet_filters, learned_filters
from caracal_viz.gates import gate_report
from caracal_viz.impulse import aliasing, kernel_impulses, mixer_impulse
from caracal_viz.influence import InfluenceMap, mixing_matrices, token_influence
from caracal_viz.predict import next_token_view
from caracal_viz.trace import forward_pass
from tests.conftest import figure_strings, load_sample

HOSTILE = "<script>alert(1)</script> & <b>x</b>\n<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def built():
    """(name, figure) for every builder, on caracal-periodic (mhf) and fftnet-shakespeare."""
    ck, fn = load_sample("caracal-periodic"), load_sample("fftnet-shakespeare")
    text = "abcabcabc " + HOSTILE
    lf, flf = learned_filters(ck), learned_filters(fn)
    gates = gate_report(ck, forward_pass(ck, text))
    view = next_token_view(ck, forward_pass(ck, text), k=4)
    m = token_influence(ck, HOSTILE[:30])
    rep = parseval_report(ck, forward_pass(ck, text))
    figs = {
        "filter_heatmap": figures.filter_heatmap(lf[0].freqs, lf[0].magnitude_db, title="|H| <i>"),
        "filter_detail": figures.filter_detail(lf[0], 1),
        "filter_detail_all": figures.filter_detail(flf[0]),
        "kernel": figures.kernel_figure(flf[0].lags, flf[0].kernel[0]),
        "data_kernel": figures.data_kernel_figure(data_kernels(ck, forward_pass(ck, text))[0], 2),
        "fftnet_filter": figures.fftnet_filter_figure(fftnet_filters(fn, forward_pass(fn, text))[1]),
        "gate_map": figures.gate_map_figure(gates[0]),
        "passed_energy": figures.passed_energy_figure(gates[1]),
        "passed_energy_static": figures.passed_energy_figure(gate_report(ck)[1]),
        "gate_summary": figures.gate_summary_figure(gates),
        "kernel_impulse": figures.kernel_impulse_figure(kernel_impulses(ck, 32)[0]),
        "mixer_impulse": figures.mixer_impulse_figure(mixer_impulse(ck, 1, 10, 24)),
        "aliasing": figures.aliasing_figure(aliasing(ck, 0, 16, 16), head=3),
        "causality": figures.causality_figure(causality_report(fn, lengths=[8, 16], trials=1)),
        "energy_identity": figures.energy_identity_figure(rep),
        "esd": figures.esd_figure(rep.layers[0]),
        "energy_gain": figures.energy_gain_figure(rep),
        "token_loss": figures.token_loss_figure(view),
        "topk": figures.topk_figure(view, 12),
        "influence": figures.influence_figure(m),
        "influence_strip": figures.influence_strip_figure(m, 5),
        "mixing": figures.mixing_matrix_figure(mixing_matrices(ck, forward_pass(ck, HOSTILE[:20]))[0], list(HOSTILE[:20]), 0),
        "training": figures.training_curve_figure(ck.meta["loss_curve"], ck.meta["val_curve"]),
        "compare": figures.compare_figure(
            compare_checkpoints(load_sample("caracal-shakespeare"), load_sample("caracal-circular-leaky")).layers[0],
            "<b>a</b>", "b & c"),
    }
    return {"ck": ck, "view": view, "m": m, "lf": lf, "rep": rep, "text": text, "figs": figs}


def test_every_figure_has_titles_and_fills_the_width(built):
    for name, fig in built["figs"].items():
        assert isinstance(fig, go.Figure), name
        lay = fig.layout
        assert lay.title.text, name
        assert lay.width is None and lay.height and lay.height <= 1600, name
        for axis in [a for k, a in lay.to_plotly_json().items() if k.startswith(("xaxis", "yaxis"))]:
            if axis.get("visible", True) and not axis.get("matches"):
                assert axis.get("title", {}).get("text"), (name, axis)


def test_user_text_is_escaped_everywhere(built):
    for name, fig in built["figs"].items():
        for s in figure_strings(fig.to_dict()):
            for bad in ("<script", "<img", "<b>", "<i>", "&>", "& "):
                assert bad not in s, (name, s)
    ticks = built["figs"]["influence"].layout.xaxis.ticktext
    assert "&lt;" in ticks and "&amp;" in ticks and "␣" in ticks  # shown as typed, the space made visible
    assert figures.esc("<b>&amp;</b>") == "&lt;b&gt;&amp;amp;&lt;/b&gt;"


def test_colour_scales(built):
    cividis = go.Heatmap(colorscale="Cividis").colorscale
    rdbu = go.Heatmap(colorscale="RdBu").colorscale
    for name in ("filter_heatmap", "gate_map", "passed_energy", "influence", "token_loss", "mixing"):
        assert all(t.colorscale == cividis for t in built["figs"][name].data if t.type == "heatmap"), name
    for name in ("energy_gain", "compare", "aliasing"):
        for t in built["figs"][name].data:
            if t.type == "heatmap":
                assert t.colorscale == rdbu and t.zmid == 0 and t.zmin == -t.zmax, name


def test_figures_show_the_analysis_arrays(built):
    lf, view, m, rep = built["lf"], built["view"], built["m"], built["rep"]
    heat = built["figs"]["filter_heatmap"].data[0]
    np.testing.assert_allclose(heat.z, lf[0].magnitude_db, atol=0.005)
    np.testing.assert_allclose(heat.x, lf[0].freqs)
    detail = built["figs"]["filter_detail"].data
    np.testing.assert_allclose(detail[0].y, lf[0].magnitude_db[1], atol=1e-4)
    delay = np.array([np.nan if y is None else y for y in detail[2].y])
    drawn = ~np.isnan(delay)
    np.testing.assert_allclose(delay[drawn], lf[0].group_delay[1][drawn], atol=1e-4, rtol=1e-4)
    # token loss: the cell of byte t holds the loss of its prediction, loss_bits[t - 1]
    cells = built["figs"]["token_loss"].data[0]
    z, text = np.array(cells.z, dtype=float), np.array(cells.text, dtype=object)
    rows, cols = figures.text.text_grid(view.labels)
    for t in (1, 7, len(view.labels) - 1):
        assert z[rows[t], cols[t]] == pytest.approx(view.loss_bits[t - 1], abs=1e-4)
        assert text[rows[t], cols[t]] == figures.show_label(view.labels[t])
    # one glyph a cell (an escape such as \n would spill into the next cell), the newline's a return mark
    newline = view.labels.index("\\n")
    assert text[rows[newline], cols[newline]] == "↵"
    assert all(len(html.unescape(c)) <= 1 for c in text.ravel()), text
    assert np.isnan(z[0, 0])
    bars = built["figs"]["topk"].data[0]
    np.testing.assert_allclose(bars.x, view.topk_probs[12])
    # influence: log10 of the map, clipped six decades below its maximum; the last row empty
    inf = np.array(built["figs"]["influence"].data[0].z, dtype=float)
    v = m.values
    top = np.log10(np.nanmax(v))
    want = np.log10(np.maximum(v, 10 ** (top - 6)))
    np.testing.assert_allclose(inf[:-1], want[:-1], atol=1e-3)
    assert np.isnan(inf[-1]).all()
    assert f"{m.upper_max:.2g}" in built["figs"]["influence"].layout.title.subtitle.text
    gain = built["figs"]["energy_gain"].data[0]
    np.testing.assert_allclose(np.array(gain.z, dtype=float)[:4], 10 * np.log10(rep.layers[0].gain), atol=0.005)


def test_verdicts_in_titles(built):
    assert "LEAKS" in built["figs"]["causality"].layout.title.text
    sub = built["figs"]["influence"].layout.title.subtitle.text
    assert "float rounding" in sub  # caracal-periodic is causal
    leaky = dataclasses.replace(built["m"], upper_max=0.5, scale=1.0)
    assert "LEAK" in figures.influence_figure(leaky).layout.title.subtitle.text


def test_bad_indices_are_clear_errors(built):
    with pytest.raises(ValueError, match="head must be"):
        figures.filter_detail(built["lf"][0], 99)
    with pytest.raises(ValueError, match="pos must be"):
        figures.topk_figure(built["view"], len(built["view"].ids))
    with pytest.raises(ValueError, match="row must be"):
        figures.influence_strip_figure(built["m"], -1)


def test_pool_max_is_the_block_maximum():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 11, 11))
    z[0, :3, :3] = np.nan  # a whole block of NaN stays NaN
    z[1, 5, 7] = np.nan  # a NaN among numbers is ignored
    pooled, f = figures.pool_max(z, max_side=4)
    assert f == 3 and pooled.shape == (2, 4, 4)
    for h in range(2):
        for a in range(4):
            for b in range(4):
                block = z[h, 3 * a:3 * a + 3, 3 * b:3 * b + 3]
                want = np.nan if np.isnan(block).all() else np.nanmax(block)
                np.testing.assert_equal(pooled[h, a, b], want)
    even = rng.standard_normal((12, 12))  # f divides L: no padding
    even[4, 4:6] = np.nan
    pooled, f = figures.pool_max(even, max_side=4)
    assert f == 3
    np.testing.assert_array_equal(pooled, [[np.nanmax(even[3 * a:3 * a + 3, 3 * b:3 * b + 3]) for b in range(4)]
                                           for a in range(4)])
    same, f1 = figures.pool_max(z, max_side=11)
    assert f1 == 1 and same is z


def test_long_maps_are_drawn_as_block_maxima_that_keep_a_leak():
    """A 1,100-byte map is drawn as at most MAX_MATRIX_SIDE cells a side; one future entry stays
    visible at full strength in its block."""
    L = 1100
    rng = np.random.default_rng(0)
    values = np.tril(rng.uniform(1e-3, 1.0, (L, L)))
    values[100, 900] = 1.0  # a leak: the prediction after byte 100 reads byte 900
    values[-1] = np.nan
    m = InfluenceMap(
        values=values, ids=np.zeros(L, dtype=np.int64), labels=["a"] * L, layer=None, upper_max=1.0, scale=1.0,
        causal=True)
    fig = figures.influence_figure(m)
    z = np.array(fig.data[0].z, dtype=float)
    f = -(-L // figures.MAX_MATRIX_SIDE)
    assert z.shape == (-(-L // f),) * 2 and max(z.shape) <= figures.MAX_MATRIX_SIDE
    assert z[100 // f, 900 // f] == 0.0  # log10 of the leak's 1.0, the map's maximum
    np.testing.assert_allclose(fig.data[0].x[:2], [(f - 1) / 2, f + (f - 1) / 2])
    assert f"{f} × {f}" in fig.layout.title.subtitle.text
    mats = np.stack([np.tril(values[:-1, :-1]), np.triu(values[:-1, :-1])]).astype(np.float32)
    fig = figures.mixing_matrix_figure(mats, ["a"] * (L - 1), 0)
    assert all(max(np.shape(t.z)) <= figures.MAX_MATRIX_SIDE // 2 for t in fig.data)
    assert "above the diagonal, per head: 0, 1" in fig.layout.title.subtitle.text


def _block_halfwidth(template: str, axis: str) -> float:
    """The ± half-width that a pooled heatmap's hover gives after %{axis:...}."""
    match = re.search(r"%\{" + axis + r":\.\df\} ± ([\d.]+)", template)
    assert match, template
    return float(match.group(1))


@pytest.mark.parametrize("L", [40, 1100, 1024])
def test_heatmap_hovers_name_positions_and_pooled_blocks_exactly(L):
    """Hovers format the position (%{x} alone would show a tick's byte label instead), and a
    pooled cell's centre ± half-width spans exactly the f positions of its block, for an odd and
    an even f."""
    rng = np.random.default_rng(1)
    values = np.tril(rng.uniform(1e-3, 1.0, (L, L)))
    m = InfluenceMap(values=values, ids=np.zeros(L, dtype=np.int64), labels=["a"] * L, layer=None, upper_max=0.0,
                     scale=1.0, causal=True)
    mixing = figures.mixing_matrix_figure(np.stack([values, values]), ["a"] * L, 0)
    for fig, side in ((figures.influence_figure(m), figures.MAX_MATRIX_SIDE), (mixing, figures.MAX_MATRIX_SIDE // 2)):
        f = -(-L // side)
        for t in fig.data:
            if t.type != "heatmap":
                continue
            tpl = t.hovertemplate
            assert "%{x}" not in tpl and "%{y}" not in tpl, tpl
            if f == 1:
                assert t.x is None and np.shape(t.z) == (L, L)
                continue
            for axis, centres in (("x", np.asarray(t.x)), ("y", np.asarray(t.y))):
                h = _block_halfwidth(tpl, axis)
                starts = np.arange(0, L, f)
                np.testing.assert_array_equal(centres - h, starts)
                np.testing.assert_array_equal(centres + h, starts + f - 1)


def test_group_delay_is_drawn_only_where_the_filter_passes():
    """Against scipy: the group delay panel shows scipy.signal.group_delay of the head's causal
    kernel wherever |H| (scipy.signal.freqz) is within GROUP_DELAY_FLOOR_DB of its peak, and
    nothing elsewhere (block 0 head 0 of caracal-shakespeare: 10^4 tokens at f = 0, -61 dB)."""
    lf = learned_filters(load_sample("caracal-shakespeare"))[0]
    w = 2 * np.pi * lf.freqs
    for head in (0, 1):
        kernel = lf.kernel[head]
        _, response = signal.freqz(kernel, worN=w)
        _, delay = signal.group_delay((kernel, [1.0]), w=w)
        db = 20 * np.log10(np.abs(response))
        keep = db >= db.max() - figures.GROUP_DELAY_FLOOR_DB
        assert not keep[0] and keep.sum() >= lf.freqs.size - 2  # the near-zero at f = 0 and little else
        fig = figures.filter_detail(lf, head)
        shown = fig.data[2].y
        assert [y is None for y in shown] == list(~keep)
        np.testing.assert_allclose([y for y in shown if y is not None], delay[keep], rtol=1e-6, atol=1e-3)
        sub = fig.layout.title.subtitle.text.replace("<br>", " ")
        assert f"head {head}: {int((~keep).sum())} of {lf.freqs.size} bins" in sub
        # a far outlier left among the drawn bins is kept off the axis and counted; the rest are all on it
        rng = fig.layout.yaxis3.range
        drawn = delay[keep]
        q1, q3 = np.quantile(drawn, [0.25, 0.75])
        far = (drawn < q1 - 10 * (q3 - q1)) | (drawn > q3 + 10 * (q3 - q1))
        if rng is None:
            assert not far.any() or far.sum() > 0.01 * drawn.size
        else:
            on_axis = (drawn >= rng[0]) & (drawn <= rng[1])
            np.testing.assert_array_equal(on_axis, ~far)
            assert f"{int(far.sum())} far outlier(s) off its axis" in sub


_BOXES_JS = """async ([fig, width]) => {
  const gd = document.getElementById('g');
  gd.style.width = width + 'px';
  Plotly.purge(gd);
  await Plotly.newPlot(gd, fig.data, fig.layout);
  const box = e => { const b = e.getBoundingClientRect(); return [b.top, b.bottom]; };
  const all = s => [...gd.querySelectorAll(s)].map(box);
  return {title: all('.gtitle'), subtitle: all('.gtitle-subtitle'), plots: all('.nsewdrag'),
          legend: all('.legend'), annotations: all('.annotation')};
}"""


@pytest.mark.browser
def test_titles_and_subtitles_never_run_into_the_plot_in_a_browser(built, tmp_path):
    """Every figure drawn by Plotly in Chromium at a page's width (790 px) and a narrow column's
    (430 px): the subtitle, however many lines it wraps to (the energy spectral density's wraps
    to two, next to a legend of eight entries), ends above every plot area, legend and subplot
    title (Plotly does not make room for it by itself)."""
    import plotly
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    page_file = tmp_path / "figures.html"
    page_file.write_text(f"<html><body style='margin:0'><script src='{js.as_uri()}'></script><div id='g'></div>"
                         "</body></html>")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            page.goto(page_file.as_uri())
            for name, fig in built["figs"].items():
                for width in (790, 430):
                    boxes = page.evaluate(_BOXES_JS, [json.loads(fig.to_json()), width])
                    (t_top, t_bottom), = boxes["title"]
                    below = [top for top, _ in boxes["plots"] + boxes["legend"] + boxes["annotations"]]
                    assert t_top >= 0 and below, (name, width, boxes)
                    if boxes["subtitle"]:
                        (s_top, s_bottom), = boxes["subtitle"]
                        assert t_bottom <= s_top + 1 and s_bottom <= min(below), (name, width, boxes)
                    else:
                        assert t_bottom <= min(below), (name, width, boxes)
        finally:
            browser.close()
