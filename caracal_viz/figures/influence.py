"""Token influence: the L x L gradient map and one row of it, per-head mixing matrices, and the
attribution methods with their faithfulness curves (`caracal_viz.influence`, `.mixing`,
`.attribution`). Maps over MAX_MATRIX_SIDE a side are drawn as block maxima."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..results import is_rounding
from ..spectral import upper_triangle_maxima
from .style import (
    FUTURE, HEADS, MAGNITUDE, MAX_TICK_LABELS, add_pick_layer, esc, layout, rounded, show_label, token_ticks,
)
from .text import byte_context, byte_value, text_heatmap


LOG_DECADES = 6.0  # influence maps show six decades below their maximum
# Token-to-token heatmaps larger than this per side are shown as block maxima: a 4,096-byte map
# is 16.8 M cells, more than a browser can draw (the full arrays stay downloadable).
MAX_MATRIX_SIDE = 512


def _log_top(values: np.ndarray) -> float:
    """log10 of the largest finite positive value (0 when there is none)."""
    v = np.asarray(values)
    top = np.max(v, where=(v > 0) & (v < np.inf), initial=-np.inf)  # NaN compares False: left out
    return float(np.log10(top)) if np.isfinite(top) else 0.0


def _log_influence(values: np.ndarray, top: float | None = None) -> tuple[np.ndarray, float, float]:
    """log10 of a non-negative map, clipped LOG_DECADES below its maximum (or below `top`, a
    log10 maximum measured on a larger map); NaN kept."""
    v = np.asarray(values, dtype=np.float64)
    top = _log_top(v) if top is None else top
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.maximum(v, 10 ** (top - LOG_DECADES)))
    return np.where(np.isfinite(v), z, np.nan), top - LOG_DECADES, top


def pool_factor(L: int, max_side: int = MAX_MATRIX_SIDE) -> int:
    """The block side f that `pool_max` uses for an L x L map: the smallest that leaves at most
    max_side blocks a side (1: drawn as is)."""
    return max(1, -(-L // max_side))


def pool_max(z: np.ndarray, max_side: int = MAX_MATRIX_SIDE) -> tuple[np.ndarray, int]:
    """Block maxima of the last two (square, L x L) axes of z: blocks of f x f cells with the
    smallest f that leaves at most max_side blocks per side (f = 1: z unchanged). NaN cells are
    ignored; a block of NaN only stays NaN. Returns (pooled (..., ceil(L/f), ceil(L/f)), f).
    A maximum keeps what a causal reading looks for: a block wholly above the diagonal shows the
    largest future entry in it."""
    z = np.asarray(z)
    z = z if np.issubdtype(z.dtype, np.floating) else z.astype(np.float64)
    L = z.shape[-1]
    f = pool_factor(L, max_side)
    if f == 1:
        return z, 1
    n = -(-L // f)
    if n * f != L:  # NaN fills the last blocks: fmax ignores it
        padded = np.full(z.shape[:-2] + (n * f, n * f), np.nan, dtype=z.dtype)
        padded[..., :L, :L] = z
        z = padded
    # rows first, over whole contiguous rows, then the f columns of the 1/f as large result
    rows = np.fmax.reduce(z.reshape(z.shape[:-2] + (n, f, n * f)), axis=-2)
    return np.fmax.reduce(rows.reshape(z.shape[:-2] + (n, n, f)), axis=-1), f


def _block_centres(L: int, f: int) -> np.ndarray:
    """Heatmap x or y for blocks of f of L positions: the block centres, so the cells span them."""
    return np.arange(-(-L // f)) * f + (f - 1) / 2


def _block_span(axis: str, f: int) -> str:
    """Hover text for the positions of a block of f: its centre ± half its width (a hover
    template can format a value but not compute the block's ends); the last block of a text
    that f does not divide is cut short by the text's end."""
    return f"%{{{axis}:.{1 - f % 2}f}} ± {(f - 1) / 2:g}"


def influence_verdict(upper_max: float, scale: float, sep: str = ", ") -> str:
    """One line on the upper triangle: rounding or a leak, with the measured numbers (`sep`
    between the numbers and the verdict)."""
    rel = upper_max / scale if scale > 0 else 0.0
    what = "float rounding: no token hears the future" if is_rounding(rel) else "LEAK: earlier predictions depend on later bytes"
    return f"above the diagonal: max {upper_max:.2g} ({rel:.2g} of the map's max){sep}{what}"


def influence_figure(m, title: str | None = None, *, hover_context: bool = True) -> go.Figure:
    """The L x L token influence map (`influence.InfluenceMap`): row i, the prediction of byte
    i+1; column j, the input byte j; colour log10 of the gradient norm (six decades). Token
    labels on both axes up to 64 bytes (positions beyond; the hover names both bytes up to 128);
    the measured upper-triangle maximum in the subtitle (nothing masked). Over MAX_MATRIX_SIDE
    bytes a cell is the maximum of an f x f block (`pool_max`), drawn over the positions it
    covers; its hover gives the block's centre ± half its width. `hover_context=False` leaves
    out the per-cell byte contexts (L^2 strings: most of an offline report's size)."""
    values = np.asarray(m.values)
    L = values.shape[0]
    pooled, f = pool_max(values)
    z, zmin, zmax = _log_influence(pooled)  # log10 is increasing: the log of a block's max is its max log
    # %{x:.0f}, not %{x}: on an axis with tick text, %{x} shows the tick's label instead of the position
    cells = dict(hovertemplate="prediction after position %{y:.0f} ← position %{x:.0f}<br>log10 influence %{z:.2f}"
                               "<extra></extra>")
    if f > 1:
        centres = _block_centres(L, f)
        cells = dict(x=centres, y=centres,
                     hovertemplate=f"predictions after positions {_block_span('y', f)} ← positions {_block_span('x', f)}"
                                   f"<br>largest log10 influence of the {f} × {f} block: %{{z:.2f}}<extra></extra>")
    elif L <= 128 and hover_context:
        # each byte with its context: the map's hover shows where in the text both bytes sit
        labels = [f"{byte_value(b)} in “{byte_context(m.ids, i)}”" for i, b in enumerate(m.ids)]
        row = np.array(labels, dtype=object)[:, None].repeat(L, 1)
        col = np.array(labels, dtype=object)[None, :].repeat(L, 0)
        raw = np.vectorize(lambda v: "no next byte" if not np.isfinite(v) else f"{v:.3g}", otypes=[object])(values)
        cells = dict(customdata=np.stack([row, col, raw], axis=-1),
                     hovertemplate="prediction after position %{y:.0f}: %{customdata[0]}<br>← position %{x:.0f}: "
                                   "%{customdata[1]}<br>‖∂ log p / ∂e‖ = %{customdata[2]}<extra></extra>")
    fig = go.Figure(go.Heatmap(z=rounded(z, 3), colorscale=MAGNITUDE, zmin=zmin, zmax=zmax,
                               colorbar=dict(title=dict(text="log10 ‖∂ log p/∂e‖", side="right")), **cells))
    fig.add_scatter(x=[-0.5, L - 0.5], y=[-0.5, L - 0.5], mode="lines", showlegend=False, hoverinfo="skip",
                    line=dict(color=FUTURE, width=1.5, dash="dot"))
    # a click on the diagonal selects that row's prediction (heatmap cells report no clicks)
    rows = _block_centres(L, f) if f > 1 else np.arange(L)
    add_pick_layer(fig, rows, rows, np.rint(rows).astype(int),
                   [f"prediction after position {int(round(r))}: click to select it" for r in rows])
    # spikes: hovering a cell marks its row and column down to the byte labels on the axes
    spikes = dict(showspikes=True, spikemode="across", spikesnap="cursor", spikethickness=1, spikedash="solid",
                  spikecolor="#888888")
    fig.update_xaxes(title_text="input position j", range=[-0.5, L - 0.5], **token_ticks(m.labels), **spikes)
    fig.update_yaxes(title_text="prediction after position i (of position i+1)", range=[L - 0.5, -0.5],
                     **token_ticks(m.labels), **spikes)
    where = "the input embeddings" if m.layer is None else f"the residual stream entering block {m.layer}"
    sub = f"gradient of each prediction w.r.t. {where}<br>{influence_verdict(m.upper_max, m.scale, '<br>')}"
    if f > 1:
        sub += f"<br>each cell is the largest of {f} × {f} entries (the hover gives their positions)"
    default = "Token influence map" + ("" if m.layer is None else f" from block {m.layer} on")
    return layout(fig, esc(title or default), min(900, 260 + 12 * L), sub)


def influence_strip_figure(m, row: int) -> go.Figure:
    """One row of the influence map over the text: how much the byte at each position j moves the
    prediction made after position `row` (of position row+1), colour log10 of the gradient norm; the predicting position
    is outlined. Bytes after it should be (near) zero in a causal model."""
    values = np.asarray(m.values)
    L = values.shape[0]
    if not 0 <= row < L:
        raise ValueError(f"row must be in 0..{L - 1}, got {row}")
    # the scale of the whole map (its last row has no prediction), the logs of this row only
    line, zmin, zmax = _log_influence(values[row], _log_top(values[:-1] if L > 1 else values))
    if row == L - 1 and L > 1:
        line = np.full(L, np.nan)  # no next byte: nothing was scored
    hover = [f"position {j}: byte value {byte_value(m.ids[j])}<br>‖∂ log p / ∂e‖ = "
             + ("n/a" if not np.isfinite(values[row, j]) else f"{values[row, j]:.3g}") for j in range(L)]
    fig = text_heatmap(m.labels, line, hover, "log10 influence", zmin=zmin, zmax=zmax, marked=[row], ids=m.ids)
    if row + 1 < L:
        sub = (f"the prediction of position {row + 1} ({byte_value(m.ids[row + 1])}); the outlined byte is the last "
               "one a causal model may read")
    else:
        sub = "the last byte has no next byte to predict"
    return layout(fig, f"What the prediction after position {row} ({byte_value(m.ids[row])}) depends on",
                  fig.layout.height, sub, bottom=fig.layout.margin.b)


def mixing_matrix_figure(mats: np.ndarray, labels: Sequence[str], layer: int, kind: str = "mhf",
                         hover_bytes: int = 128) -> go.Figure:
    """Per-head token-to-token mixing matrices of one block (`influence.mixing_matrix`, (H, L, L)):
    [h, t, j] = RMS over the head's channels of d y_t / d v_j. Colour log10, six decades, shared
    by the heads; the upper-triangle maximum of each head in the subtitle. The heads share their
    axes (zooming one zooms all); byte labels up to 32 bytes (a panel is half the width), the
    hover names both bytes up to `hover_bytes` (two strings per cell and head: the offline report
    leaves them out). Over MAX_MATRIX_SIDE / 2 bytes a cell is the maximum of an
    f x f block (`pool_max`); its hover gives the block's centre ± half its width."""
    mats = np.asarray(mats)
    H, L = mats.shape[0], mats.shape[-1]
    cols = min(H, 2)
    nrows = int(np.ceil(H / cols))
    titles = [f"head {h}" for h in range(H)]
    specs = [[{} if r * cols + c < H else None for c in range(cols)] for r in range(nrows)]
    fig = make_subplots(rows=nrows, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.1)
    pooled, f = pool_max(mats, MAX_MATRIX_SIDE // cols)  # the heads share the figure's width
    z, zmin, zmax = _log_influence(pooled)  # log10 is increasing: the log of a block's max is its max log
    cells = dict(hovertemplate="output t = %{y:.0f} ← input j = %{x:.0f}<br>log10 %{z:.2f}")
    if f > 1:
        centres = _block_centres(L, f)
        cells = dict(x=centres, y=centres, hovertemplate=f"outputs t = {_block_span('y', f)} ← inputs j = "
                                                         f"{_block_span('x', f)}<br>largest log10 of the {f} × {f} "
                                                         f"block: %{{z:.2f}}")
    elif L <= hover_bytes:
        shown = np.array([show_label(s) for s in labels], dtype=object)
        cells = dict(customdata=np.stack([shown[:, None].repeat(L, 1), shown[None, :].repeat(L, 0)], axis=-1),
                     hovertemplate="output t = %{y:.0f} (%{customdata[0]}) ← input j = %{x:.0f} (%{customdata[1]})"
                                   "<br>log10 %{z:.2f}")
    ticks = token_ticks(labels, MAX_TICK_LABELS // 2)
    bottom = {h % cols: h for h in range(H)}  # the lowest panel of each column shows the positions
    # every panel's axes match those of the bottom-left panel (one zoom for all heads), which has titles
    ref = fig.get_subplot(bottom[0] // cols + 1, 1)
    match_x, match_y = ref.yaxis.anchor, ref.xaxis.anchor  # an axis is anchored on the other: "x3", "y3"
    for h in range(H):
        r, c = h // cols + 1, h % cols + 1
        fig.add_heatmap(z=rounded(z[h], 3), colorscale=MAGNITUDE, zmin=zmin, zmax=zmax, showscale=h == 0,
                        colorbar=dict(title=dict(text="log10 weight", side="right")), row=r, col=c,
                        **{**cells, "hovertemplate": f"head {h}<br>{cells['hovertemplate']}<extra></extra>"})
        lowest = bottom[c - 1] == h
        fig.update_xaxes(range=[-0.5, L - 0.5], matches=None if h == bottom[0] else match_x, showticklabels=lowest,
                         title_text="input position j" if lowest else None, row=r, col=c, **ticks)
        fig.update_yaxes(range=[L - 0.5, -0.5], matches=None if h == bottom[0] else match_y, showticklabels=c == 1,
                         title_text="output position t" if c == 1 else None, row=r, col=c, **ticks)
    what = "Jacobian of the FFT stage (adapted filter fixed)" if kind == "fftnet" else "Toeplitz matrix of g*k"
    sub = (f"{what}: [t, j] is how strongly the value at position j feeds output t (RMS over the head's channels)"
           "<br>largest entry above the diagonal, per head: " + ", ".join(f"{u:.2g}" for u in upper_triangle_maxima(mats)))
    if f > 1:
        sub += f"<br>each cell is the largest of {f} × {f} entries (the hover gives their positions)"
    return layout(fig, f"Block {layer} mixing matrices per head", 160 + 360 * nrows, sub, gap=24)


def attribution_strip_figure(rep, method: str) -> go.Figure:
    """One method's scores for one prediction (`attribution.AttributionReport`) over the text, in
    the byte view of `influence_strip_figure`: signed methods on a diverging scale centred at 0
    (red: the byte raises log p of the target), the gradient norm and the linear path by their
    magnitude; the predicting position outlined. The subtitle gives the unit, the largest score
    after the prediction (measured, nothing masked) and, for integrated gradients, Captum's
    convergence delta."""
    from ..attribution import METHOD_NAMES, UNSIGNED

    a = rep.methods[method]
    signed = method not in UNSIGNED
    values = a.signed if signed else a.absolute
    top = float(np.max(np.abs(values))) or 1.0
    hover = [f"position {j}: {show_label(rep.labels[j])}<br>{'score' if signed else 'magnitude'} {values[j]:.3g} "
             f"({a.unit})<br>share of the row {a.normalised[j]:.1%}" for j in range(len(rep.labels))]
    fig = text_heatmap(rep.labels, values, hover, "score" if signed else "magnitude",
                       zmin=-top if signed else 0.0, zmax=top, marked=[rep.position], signed=signed)
    rel = a.future_rel
    future = (f"after the prediction: max {a.future_max:.2g} ({rel:.2g} of the largest earlier score)"
              + (", rounding" if is_rounding(rel) else ", READS THE FUTURE"))
    sub = f"{a.unit}; {future}"
    if a.delta is not None:
        sub += (f"; completeness: sum {np.sum(a.signed):.4g} vs f(x) − f(baseline) "
                f"{rep.logp - rep.logp_baseline:.4g}, Captum's delta {a.delta:.2g} ({a.steps} steps)")
    return layout(fig, f"{METHOD_NAMES[method].capitalize()}: prediction after position {rep.position}",
                  fig.layout.height, sub, bottom=fig.layout.margin.b)


def faithfulness_figure(rep) -> go.Figure:
    """Deletion (solid) and insertion (dashed) curves of every method and of the random-order
    baseline (grey, the mean of its orders), one legend entry per method (below the plot: it
    leaves the plot its width in a narrow column) for one prediction (`attribution.AttributionReport`):
    log p of the target byte against the number of bytes replaced by (deletion) or restored from
    (insertion) the baseline byte. The k axis is drawn at even spacing (the curve's points grow
    by about sqrt(2) each), labelled with k."""
    from ..attribution import METHOD_NAMES

    ks = np.asarray(rep.ks)
    x = np.arange(ks.size)
    fig = go.Figure()
    for m, name in enumerate(rep.deletion):
        colour = "#888888" if name == "random" else HEADS[m % len(HEADS)]
        label = METHOD_NAMES[name]
        for curve, dash, what, aopc in ((rep.deletion, "solid", "deletion", rep.aopc_deletion),
                                        (rep.insertion, "dash", "insertion", rep.aopc_insertion)):
            fig.add_scatter(x=x, y=curve[name], customdata=ks, mode="lines+markers", name=label,
                            legendgroup=name, showlegend=what == "deletion",
                            line=dict(color=colour, dash=dash, width=2), marker=dict(size=4),
                            hovertemplate=f"{esc(label)}, {what}<br>%{{customdata}} bytes {'removed' if what == 'deletion' else 'restored'}"
                                          f"<br>log p = %{{y:.3f}}<br>AOPC {aopc[name]:.3f} nats<extra></extra>")
    step = max(1, ks.size // 12)
    fig.update_xaxes(title_text="bytes replaced or restored, most important first",
                     tickmode="array", tickvals=x[::step].tolist(), ticktext=[str(k) for k in ks[::step]])
    fig.update_yaxes(title_text="log p(target byte) (nats)")
    sub = (f"target {show_label(rep.labels[rep.position + 1])} after position {rep.position}; baseline byte value "
           f"{byte_value(rep.baseline_byte)}: "
           f"log p {rep.logp:.3f} on the text, {rep.logp_baseline:.3f} on the baseline text. "
           "Solid: deletion, dashed: insertion. A faithful method's deletion curve falls fastest and its "
           "insertion curve rises fastest")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0))
    return layout(fig, "Deletion and insertion curves", 520, sub, bottom=110)
