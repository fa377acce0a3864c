"""Plotly figures for long texts (no Streamlit): reach of each head, influence by distance, and
bits/byte by position past the training context (length extrapolation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .style import esc, head_colour, layout

if TYPE_CHECKING:  # the figures import no model code
    from ..extrapolate import Curve
    from ..reach import HeadReach, LagInfluence

# Points per curve: a 65,536-byte text has 65,536 lags per head; on a log axis a few hundred
# log-spaced lags draw the same curve (the 50%/90% lags are always among them).
MAX_CURVE_POINTS = 400


def log_lags(n: int, keep=(), most: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Sorted unique lags 1..n-1 for a log axis: every lag when n - 1 <= most, else about `most`
    log-spaced ones plus the lags in `keep` (those in range)."""
    if n - 1 <= most:
        return np.arange(1, n)
    lags = np.unique(np.round(np.geomspace(1, n - 1, most)).astype(np.int64))
    extra = [k for k in keep if 1 <= k < n]
    return np.union1d(lags, np.asarray(extra, dtype=np.int64))


def reach_figure(reaches: list[HeadReach], title: str = "Reach: cumulative kernel energy by lag",
                 subtitle: str | None = None) -> go.Figure:
    """Cumulative energy fraction by lag (bytes, log axis from lag 1) for each head, one line per
    block/head (colour: head), at most about MAX_CURVE_POINTS log-spaced lags per line; the hover
    gives the lags holding 50% and 90%. Lag 0 is left off the log axis: its share is the curve's
    value at lag 1 minus that lag's own energy."""
    fig = go.Figure()
    for r in reaches:
        lags = log_lags(r.cumulative.size, (r.lag50, r.lag90))
        fig.add_trace(go.Scatter(
            x=lags, y=r.cumulative[lags], mode="lines", name=f"block {r.block} head {r.head}",
            line=dict(color=head_colour(r.head)), legendgroup=f"b{r.block}",
            hovertemplate=(f"block {r.block} head {r.head}<br>lag %{{x}}: %{{y:.1%}} of the energy"
                           f"<br>50% by lag {r.lag50}, 90% by lag {r.lag90}<extra></extra>")))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="50%")
    fig.add_hline(y=0.9, line_dash="dot", annotation_text="90%")
    layout(fig, title, 420, subtitle)
    fig.update_layout(xaxis=dict(title="lag (bytes)", type="log"),
                      yaxis=dict(title="fraction of the kernel's energy", range=[0, 1.02]))
    return fig


def reach_lags_figure(learned: list[HeadReach], combined: list[HeadReach]) -> go.Figure:
    """The lags (bytes, log axis) holding 50% and 90% of each head's energy, learned kernel k and
    combined kernel g*k side by side: one row per block/head."""
    names = [f"block {r.block} head {r.head}" for r in learned]
    fig = go.Figure()
    for rs, kind, symbol in ((learned, "learned k", "circle"), (combined, "combined g*k", "diamond")):
        for q, dash in ((50, "lag50"), (90, "lag90")):
            lags = [max(getattr(r, dash), 0) + 1 for r in rs]  # +1: lag 0 on a log axis
            fig.add_trace(go.Scatter(
                x=lags, y=names, mode="markers", name=f"{kind}, {q}%",
                marker=dict(symbol=symbol, size=9 if q == 90 else 6, opacity=1.0 if q == 90 else 0.6),
                hovertemplate=f"%{{y}}<br>{kind}: {q}% of the energy by lag %{{customdata}}<extra></extra>",
                customdata=[getattr(r, dash) for r in rs]))
    layout(fig, "Lags holding 50% and 90% of each head's kernel energy", 120 + 22 * len(names))
    fig.update_layout(xaxis=dict(title="lag + 1 (bytes, log)", type="log"), yaxis=dict(autorange="reversed"))
    return fig


def influence_by_lag_figure(li: LagInfluence, window_label: str) -> go.Figure:
    """Mean whole-model influence by distance (bytes, log axis from 1) between a prediction and
    the input byte, from the influence map of `window_label`; distance 0 (the byte itself) is
    given in the subtitle; at most about MAX_CURVE_POINTS log-spaced distances."""
    n = li.mean.size
    lags = log_lags(n, (li.lag50, li.lag90))
    fig = go.Figure(go.Scatter(
        x=lags, y=li.mean[lags], mode="lines", name="mean influence", customdata=li.rows[lags],
        hovertemplate="distance %{x}: mean %{y:.3g} over %{customdata} predictions<extra></extra>"))
    for k, (lag, q) in enumerate(((li.lag50, 50), (li.lag90, 90))):
        if lag >= 1:
            fig.add_vline(x=lag, line_dash="dot", line_color="#555555")
            # an annotation's x on a log axis is log10 of the value (a shape's is the value itself)
            fig.add_annotation(x=np.log10(lag), xref="x", y=1.0 - 0.07 * k, yref="paper", showarrow=False,
                               xanchor="left", text=f"{q}% within {lag}")
    layout(fig, "Whole model: mean influence by distance", 360,
           f"from the influence map of {window_label}; distance 0 (the byte itself): "
           f"{li.mean[0]:.3g}" if n else None)
    fig.update_layout(xaxis=dict(title="distance back (bytes, log)", type="log"),
                      yaxis=dict(title="mean gradient size", type="log"))
    return fig


def bin_centres(edges) -> np.ndarray:
    """(n,) float64 centre of each position bin [edges[i], edges[i+1]): (lo + hi - 1) / 2, the
    mean of the positions it holds (where a bin's point sits on the position axis)."""
    e = np.asarray(edges, dtype=np.float64)
    return (e[:-1] + e[1:] - 1) / 2


def extrapolation_figure(curves: list[Curve], title: str = "Bits/byte by position in the window",
                         subtitle: str | None = None) -> go.Figure:
    """Bits/byte (y) by position in the window (x, bytes, log axis) for each curve, one line with
    markers per checkpoint at its bins' centres (`bin_centres`; bins past its window left out);
    the hover names the bin's positions and windows. A dotted vertical line at each training
    context C (position C is the first prediction from more than C bytes of context), labelled
    with C; its label's hover names the checkpoints trained at it."""
    fig = go.Figure()
    for i, c in enumerate(curves):
        keep = np.isfinite(c.bits)
        lo, hi = c.edges[:-1][keep], c.edges[1:][keep] - 1
        fig.add_trace(go.Scatter(
            x=bin_centres(c.edges)[keep], y=c.bits[keep], mode="lines+markers", name=esc(c.name),
            line=dict(color=head_colour(i)), customdata=np.stack([lo, hi], axis=-1),
            hovertemplate=(f"{esc(c.name)}<br>positions %{{customdata[0]}}-%{{customdata[1]}}: "
                           f"%{{y:.3f}} bits/byte<br>mean of {c.n_windows} windows of {c.length:,}<extra></extra>")))
    contexts: dict[int, list[str]] = {}
    for c in curves:
        contexts.setdefault(c.context, []).append(c.name)
    for k, context in enumerate(sorted(contexts)):
        fig.add_vline(x=context, line_dash="dot", line_color="#555555")
        # an annotation's x on a log axis is log10 of the value (a shape's is the value itself)
        fig.add_annotation(x=np.log10(context), xref="x", y=1.0 - 0.07 * k, yref="paper", showarrow=False,
                           xanchor="left", yanchor="top", font=dict(size=11, color="#555555"),
                           text=f" trained on {context:,}", hovertext=esc(", ".join(contexts[context])))
    ends = [c.edges[-1] for c in curves] + list(contexts)
    layout(fig, title, 440, subtitle, legend_below=True, bottom=120)
    fig.update_layout(showlegend=True,
                      xaxis=dict(title="position in the window (bytes of context, log)", type="log",
                                 range=[0.5, np.log10(max(ends)) + 0.1] if ends else None),
                      yaxis=dict(title="bits/byte"))
    return fig
