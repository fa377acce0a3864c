"""Spectral filters: |H(f)| heatmaps and the block x head grid, one head's |H|, phase and group
delay, time kernels, the data-dependent kernel and the FFTNet filter (`caracal_viz.filters`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import binning
from .style import (
    DB_SPAN, FUTURE, MAGNITUDE, add_pick_layer, esc, finite_or_none, freq_axis, head_colour, head_list,
    layout, mark_periods, rounded, shared_db_range,
)


# The group delay is drawn where |H| is within this many dB of the head's peak (1% of its amplitude).
GROUP_DELAY_FLOOR_DB = 40.0


def filter_heatmap(freqs: np.ndarray, magnitude_db: np.ndarray, title: str = "|H(f)| per head",
                   dead: np.ndarray | None = None, axis: str = "frequency", per_head: bool = False,
                   db_range: tuple[float, float] | None = None, peaks=None,
                   periods: Sequence[float] = ()) -> go.Figure:
    """Heads x frequency heatmap of |H(f)| in dB. freqs (F,) cycles/token; magnitude_db (H, F).
    dead: optional (H,) bool; dead heads are labelled on the head axis. axis: one of FREQ_AXES.
    per_head: each head in dB below its own peak (its shape, whatever its gain). db_range: the
    colour range (lock it to compare blocks or checkpoints); default the DB_SPAN dB below the
    largest value (or the smallest value, when the filter spans less). peaks: a `filters.FilterPeaks` (its spectral peaks are marked with their
    period); periods: the task's known periods, marked as lines."""
    H = magnitude_db.shape[0]
    names = [f"head {h}" + (" (dead)" if dead is not None and dead[h] else "") for h in range(H)]
    z = np.asarray(magnitude_db, dtype=np.float64)
    if per_head:
        z = z - z.max(axis=1, keepdims=True)
    x, keep, xaxis = freq_axis(freqs, axis)
    lo, hi = db_range if db_range is not None else shared_db_range(z)
    unit = "dB re the head's peak" if per_head else "dB"
    fig = go.Figure(go.Heatmap(
        z=rounded(z[:, keep], 2), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=lo, zmax=hi,
        colorbar=dict(title=dict(text=f"|H| ({unit})")), customdata=np.broadcast_to(np.asarray(freqs)[keep], z[:, keep].shape),
        hovertemplate="head %{y}<br>f = %{customdata:.4f} cycles/token (period %{x:.3g})<br>|H| = %{z:.1f} "
                      + unit + "<extra></extra>" if axis == "period" else
                      "head %{y}<br>f = %{x:.4f} cycles/token<br>|H| = %{z:.1f} " + unit + "<extra></extra>"))
    if peaks is not None:
        px, py, pt = [], [], []
        for h in range(H):
            for fr, per in zip(peaks.freqs[h][:3], peaks.periods[h][:3]):
                px.append(per if axis == "period" else fr)
                py.append(h)
                pt.append(f"{per:.3g}")
        fig.add_scatter(x=px, y=py, mode="markers+text", text=pt, textposition="top center", showlegend=False,
                        marker=dict(symbol="triangle-down", size=9, color="white", line=dict(color="black", width=1)),
                        textfont=dict(color="white", size=11, shadow="0px 0px 3px black"), hoverinfo="skip",
                        cliponaxis=False)
    mark_periods(fig, periods, axis)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(title_text="head", tickmode="array", tickvals=list(range(H)), ticktext=names, autorange="reversed")
    clipped = f"colour from {lo:.0f} to {hi:.0f} {unit}" + (", lower values darkest" if float(z.min()) < lo else "")
    marks = "; ▼ spectral peaks, labelled with their period 1/f in tokens" if peaks is not None else ""
    return layout(fig, esc(title), 120 + 40 * H, clipped + marks)


def filter_grid_figure(lf: Sequence, axis: str = "frequency", selected: tuple[int, int] | None = None) -> go.Figure:
    """Thumbnails of every block x head filter (`filters.learned_filters`, None entries skipped):
    |H| in dB below the block's peak, one small panel per head, rows = blocks, all panels on one
    dB range. Each panel's points carry (layer, head) as customdata: a click selects that head.
    `selected` (layer, head) is outlined."""
    layers = [i for i, f in enumerate(lf) if f is not None]
    H = max(f.magnitude_db.shape[0] for f in lf if f is not None)
    # one range for every panel: down to the lowest value below its block's peak, at most DB_SPAN
    floor = max(-DB_SPAN, min(float((lf[i].magnitude_db - lf[i].magnitude_db.max()).min()) for i in layers))
    fig = make_subplots(rows=len(layers), cols=H, shared_xaxes=True, shared_yaxes=True,
                        horizontal_spacing=0.015, vertical_spacing=0.03,
                        row_titles=[f"block {i}" for i in layers], column_titles=[f"head {h}" for h in range(H)])
    for r, i in enumerate(layers, start=1):
        f = lf[i]
        x, keep, xaxis = freq_axis(f.freqs, axis)
        top = float(f.magnitude_db.max())
        for h in range(f.magnitude_db.shape[0]):
            y = np.maximum(f.magnitude_db[h, keep] - top, floor)
            fig.add_scatter(x=x, y=rounded(y, 1), mode="lines", line=dict(color=head_colour(h), width=1.2),
                            showlegend=False, row=r, col=h + 1, hoverinfo="skip")
            step = max(1, x.size // 24)
            add_pick_layer(fig, x[::step], y[::step], np.tile([i, h], (x[::step].size, 1)),
                           [f"block {i} head {h}: click to show it"] * x[::step].size, row=r, col=h + 1)
            if selected == (i, h):
                fig.add_shape(type="rect", xref="x domain", yref="y domain", x0=0, x1=1, y0=0, y1=1,
                              line=dict(color=FUTURE, width=2), row=r, col=h + 1)
        fig.update_xaxes(**{k: v for k, v in xaxis.items() if k != "title_text"}, showticklabels=False, row=r)
    pad = 0.05 * -floor or 1.0
    fig.update_yaxes(range=[floor - pad, pad], showticklabels=False)
    fig.update_annotations(font_size=11)
    return layout(fig, "Every block and head: |H| below the block's peak",
                  90 + 70 * len(layers), f"click a panel to show that head; one range for all: 0 to {floor:.3g} dB; "
                  f"x: {xaxis['title_text']}", bottom=20)


def _outlier_range(values: np.ndarray, fence: float = 10.0, most: float = 0.01) -> tuple[list[float] | None, int]:
    """(axis range, number of values left off it) when a few far outliers would flatten every
    other value: at most a fraction `most` of the finite values (at least one) lying over
    `fence` interquartile ranges beyond the quartiles. The range spans the others, 5% padded.
    (None, 0) otherwise (Plotly's autorange): no outlier, or so many that the data are wide."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, 0
    q1, q3 = np.quantile(v, [0.25, 0.75])
    inside = (v >= q1 - fence * (q3 - q1)) & (v <= q3 + fence * (q3 - q1))
    off = int((~inside).sum())
    if off == 0 or off > max(1, most * v.size):
        return None, 0
    lo, hi = float(v[inside].min()), float(v[inside].max())
    pad = 0.05 * (hi - lo) or 1.0
    return [lo - pad, hi + pad], off


def filter_detail(f, head: int | None = None, axis: str = "frequency", periods: Sequence[float] = ()) -> go.Figure:
    """Magnitude (dB), unwrapped phase (rad) and group delay (tokens) over frequency of one head
    (or every head when head is None), from a `filters.LayerFilters`.

    The group delay is drawn only where |H| is within GROUP_DELAY_FLOOR_DB of the head's peak:
    where a filter passes almost nothing its phase swings around nearby zeros (a delay of 10^4
    tokens at one such bin). When a few of the drawn bins (at most 1%) still lie far out (over
    10 interquartile ranges: a weak response near a zero, often at f = 0), the delay axis
    leaves them off and says how many; the hover and the downloads keep every value. axis: one
    of FREQ_AXES; periods: the task's known periods, marked as lines."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("magnitude", "phase (unwrapped)",
                                        f"group delay (where |H| is within {GROUP_DELAY_FLOOR_DB:g} dB of its peak)"))
    hidden, drawn = {}, []
    x, keep, xaxis = freq_axis(f.freqs, axis)
    where = "period %{x:.3g} tokens" if axis == "period" else "f = %{x:.4f}"
    for h in head_list(f.magnitude_db.shape[0], head):
        c = head_colour(h)
        quiet = f.magnitude_db[h] < np.max(f.magnitude_db[h]) - GROUP_DELAY_FLOOR_DB
        hidden[h] = int(quiet.sum())
        delay = np.where(quiet, np.nan, f.group_delay[h])
        drawn.append(delay)
        for row, y, unit in ((1, rounded(f.magnitude_db[h]), "dB"), (2, rounded(f.phase[h]), "rad"),
                             (3, finite_or_none(rounded(delay)), "tokens")):
            fig.add_scatter(x=x, y=np.asarray(y, dtype=object)[keep].tolist(), mode="lines",
                            line=dict(color=c, width=1.5), name=f"head {h}",
                            legendgroup=f"h{h}", showlegend=row == 1, row=row, col=1,
                            hovertemplate=f"head {h}<br>{where}<br>%{{y:.3g}} {unit}<extra></extra>")
    for row in (1, 2, 3):
        mark_periods(fig, periods, axis, label=row == 1, row=row, col=1)
    fig.update_yaxes(title_text="|H| (dB)", row=1, col=1)
    fig.update_yaxes(title_text="phase (rad)", row=2, col=1)
    fig.update_yaxes(title_text="delay (tokens)", row=3, col=1)
    fig.update_xaxes(**{k: v for k, v in xaxis.items() if k != "title_text"})
    fig.update_xaxes(title_text=xaxis["title_text"], row=3, col=1)
    if any(hidden.values()):
        counts = ", ".join(f"head {h}: {n}" for h, n in hidden.items())
        sub = (f"group delay not drawn at bins more than {GROUP_DELAY_FLOOR_DB:g} dB below the head's peak, where the "
               f"filter passes under 1% of the amplitude ({counts} of {f.freqs.size} bins)")
    else:
        sub = f"|H| stays within {GROUP_DELAY_FLOOR_DB:g} dB of the peak: the group delay is drawn at every bin"
    span, off = _outlier_range(np.concatenate(drawn))
    if span is not None:
        fig.update_yaxes(range=span, row=3, col=1)
        sub += f"; {off} far outlier(s) off its axis (double-click the panel to see them)"
    which = "every head" if head is None else f"head {head}"
    return layout(fig, f"Frequency response of {which} ({f.kind})", 620, sub, gap=10)


def kernel_figure(lags: np.ndarray, kernel: np.ndarray, title: str = "Time kernel", peak_lags: Sequence[int] = (),
                  periods: Sequence[float] = ()) -> go.Figure:
    """A time kernel by lag (tokens back): kernel (K,) or (H, K) with lags (K,) (negative lags
    read the future and are shaded). peak_lags: lags to mark and label (`filters.FilterPeaks`,
    for a single kernel); periods: the task's known periods, marked as lines."""
    k = np.atleast_2d(np.asarray(kernel, dtype=np.float64))
    lags = np.asarray(lags)
    order = np.argsort(lags, kind="stable")
    fig = go.Figure()
    if lags.min() < 0:
        fig.add_vrect(x0=float(lags.min()) - 0.5, x1=-0.5, fillcolor=FUTURE, opacity=0.08, line_width=0,
                      annotation_text="future (negative lags)", annotation_position="top left")
    for h in range(k.shape[0]):
        name = "kernel" if k.shape[0] == 1 else f"head {h}"
        fig.add_scatter(x=lags[order], y=rounded(k[h, order], 6), mode="lines", name=name,
                        line=dict(color=head_colour(h), width=1.5),
                        hovertemplate=f"{name}<br>lag %{{x}} tokens<br>weight %{{y:.4g}}<extra></extra>")
    if len(peak_lags) and k.shape[0] == 1:
        where = np.searchsorted(lags[order], np.asarray(peak_lags))
        fig.add_scatter(x=list(peak_lags), y=rounded(k[0, order][where], 6), mode="markers+text", showlegend=False,
                        text=[f"lag {m}" for m in peak_lags], textposition="top center", cliponaxis=False,
                        marker=dict(color=FUTURE if min(peak_lags) < 0 else "black", size=7), name="peaks",
                        hovertemplate="peak at lag %{x}<br>weight %{y:.4g}<extra></extra>")
    mark_periods(fig, periods, lag_axis=True)
    fig.update_xaxes(title_text="lag m (tokens back; negative = future)")
    fig.update_yaxes(title_text="kernel weight k[m]")
    parts = []
    if len(peak_lags) and k.shape[0] == 1:
        parts.append("peaks of |k| (strongest first): " + ", ".join(f"lag {m}" for m in peak_lags))
    if len(periods):
        parts.append("green dashed: the task's periods (" + ", ".join(f"{p:g}" for p in periods) + " tokens)")
    sub = "; ".join(parts) or None
    return layout(fig, esc(title), 340, sub)


def data_kernel_figure(dk, head: int | None = None) -> go.Figure:
    """mhf, one text (`filters.DataKernels`): per-head mean response (dB over the head's channels)
    of the gate kernel g and of the combined kernel g*k that mixes the value stream. Over more
    than binning.MAX_BINS frequency bins (a text over 1,023 bytes: the responses have L + 1 bins)
    each point is the mean dB of a band of adjacent bins at its mean frequency (the subtitle says so)."""
    width = binning.bin_width(dk.freqs.size)
    freqs, gate_db, combined_db = (binning.mean_bins(a, width).values for a in (dk.freqs, dk.gate_db, dk.combined_db))
    fig = go.Figure()
    for h in head_list(dk.gate_db.shape[0], head):
        c = head_colour(h)
        fig.add_scatter(x=freqs, y=rounded(gate_db[h], 2), mode="lines", name=f"head {h}: gate g",
                        line=dict(color=c, width=1.2, dash="dot"),
                        hovertemplate=f"head {h} gate g<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=freqs, y=rounded(combined_db[h], 2), mode="lines", name=f"head {h}: combined g*k",
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} combined g*k<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
    fig.update_xaxes(title_text="frequency f (cycles/token)")
    fig.update_yaxes(title_text="mean |response| over channels (dB)")
    which = "every head" if head is None else f"head {head}"
    return layout(fig, f"Data-dependent kernels for this text, {which}", 380,
                  "dotted: the gate stream g alone; solid: g convolved with the learned kernel k"
                  + ("" if width == 1 else f"; binned: each point the mean dB of {width} adjacent frequency bins"))


def fftnet_filter_figure(ff, head: int | None = None) -> go.Figure:
    """fftnet, one text (`filters.FFTNetFilters`): base filter against the filter adapted to the
    text (dB), and the fraction of the head's channels whose modReLU gate stays open per bin."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.7, 0.3],
                        subplot_titles=("base vs adapted filter", "modReLU gates open for this text"))
    for h in head_list(ff.base_db.shape[0], head):
        c = head_colour(h)
        fig.add_scatter(x=ff.freqs, y=rounded(ff.base_db[h], 2), mode="lines", name=f"head {h}: base",
                        line=dict(color=c, width=1.2, dash="dot"), row=1, col=1,
                        hovertemplate=f"head {h} base<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=ff.freqs, y=rounded(ff.adapted_db[h], 2), mode="lines", name=f"head {h}: adapted",
                        line=dict(color=c, width=2), row=1, col=1,
                        hovertemplate=f"head {h} adapted<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=ff.freqs, y=rounded(ff.data_open[h], 3), mode="lines", name=f"head {h}: open",
                        line=dict(color=c, width=1.5), showlegend=False, row=2, col=1,
                        hovertemplate=f"head {h}<br>f = %{{x:.4f}}<br>%{{y:.0%}} of channels open<extra></extra>")
    fig.update_yaxes(title_text="|W| (dB)", row=1, col=1)
    fig.update_yaxes(title_text="open fraction", range=[0, 1.05], tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text="frequency f (cycles/token)", row=2, col=1)
    which = "every head" if head is None else f"head {head}"
    return layout(fig, f"FFTNet filter adapted to this text, {which}", 540, gap=30,
                  subtitle="dotted: the learned base filter; solid: base + MLP(mean over all tokens, the future included)")
