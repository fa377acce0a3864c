"""Plotly figures for the causal-trick explainer: arrays in, `go.Figure` out, no Streamlit.

Colours carry one meaning throughout, the app's (style.OK, style.FUTURE): green is the exact
causal result, blue what the chosen FFT size computes, vermilion whatever reads the future
(wrapped terms, the leak), grey what is discarded. Weights are purple (negative) to blue
(positive), so no weight reads as a leak.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..explainer import PaddingDemo
from .style import FUTURE, HEADS, OK, layout, threshold_line

EXACT = OK
FFT = HEADS[0]  # Okabe-Ito blue, the project's colour-blind-safe set (style.HEADS)
LEAK = FUTURE
WEIGHTS = [[0.0, "#762a83"], [0.5, "#f7f7f7"], [1.0, "#2166ac"]]  # diverging, no red: negative purple, positive blue
MUTED = "#9e9e9e"
# These figures sit in half-width columns (210 px at a 900 px window): subtitles wrap at 38
# characters, where Plotly would clip one long line, and the legend goes under the plot.
HALF = dict(width=38, legend_below=True)


def toy_inputs_figure(x: np.ndarray, h: np.ndarray) -> go.Figure:
    """The toy signal x (L,) by position and the filter h (K,) by lag, side by side."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        subplot_titles=("signal x[t]", "filter h[m]"))
    fig.add_bar(x=np.arange(len(x)), y=x, marker_color="#555555", name="signal", row=1, col=1,
                hovertemplate="t=%{x}<br>x=%{y:.3g}<extra></extra>")
    fig.add_bar(x=np.arange(len(h)), y=h, marker_color=FFT, name="filter", row=1, col=2,
                hovertemplate="lag m=%{x}<br>h=%{y:.3g}<extra></extra>")
    fig.update_xaxes(title_text="position t", row=1, col=1)
    fig.update_xaxes(title_text="lag m (tokens back)", row=1, col=2)
    fig.update_layout(showlegend=False)
    return layout(fig, f"Input: L = {len(x)} tokens, filter K = {len(h)} taps", 300, **HALF)


def outputs_figure(demo: PaddingDemo) -> go.Figure:
    """Exact causal output (pad and truncate) against what an FFT of size N gives, with the leak
    (their difference) as red bars and the outputs that read the future shaded."""
    t = np.arange(demo.L)
    fig = go.Figure()
    rows = np.flatnonzero(demo.future_rows)
    if rows.size:
        fig.add_vrect(x0=-0.5, x1=rows[-1] + 0.5, fillcolor=LEAK, opacity=0.08, line_width=0)
    fig.add_bar(x=t, y=demo.leak, name="leak (wrapped terms)", marker_color=LEAK, opacity=0.55,
                hovertemplate="t=%{x}<br>leak=%{y:.3g}<extra></extra>")
    fig.add_scatter(x=t, y=demo.exact, name="exact causal (pad, keep L)", mode="lines+markers",
                    line=dict(color=EXACT, width=3), marker=dict(size=5),
                    hovertemplate="t=%{x}<br>exact=%{y:.4g}<extra></extra>")
    fig.add_scatter(x=t, y=demo.fft_output, name=f"FFT of size N = {demo.n_fft}", mode="lines+markers",
                    line=dict(color=FFT, width=2, dash="dash"), marker=dict(size=7, symbol="circle-open"),
                    hovertemplate="t=%{x}<br>FFT output=%{y:.4g}<extra></extra>")
    fig.update_xaxes(title_text="output position t")
    fig.update_yaxes(title_text="y[t]")
    fig.update_layout(barmode="overlay")
    verdict = (f"{rows.size} output(s) read the future, leaked energy {100 * demo.leak_fraction:.3g}%" if rows.size
               else "no leak: identical to the exact causal result")
    return layout(fig, f"Outputs with N = {demo.n_fft}", 430, verdict, **HALF)


def wraparound_figure(demo: PaddingDemo) -> go.Figure:
    """The full linear convolution (the polynomial product, L + K - 1 terms) laid along an FFT
    buffer of size N: terms at positions n >= N have no room and wrap onto n - N (red arcs, the
    stronger the term the darker its arc)."""
    n = np.arange(len(demo.linear_full))
    zones = [("kept outputs 0..L-1", EXACT, n < demo.L),
             ("padding: computed, thrown away", MUTED, (n >= demo.L) & (n < demo.n_fft)),
             ("past the buffer: wraps to the start", LEAK, n >= demo.n_fft)]
    fig = go.Figure()
    fig.add_vrect(x0=-0.5, x1=demo.L - 0.5, fillcolor=EXACT, opacity=0.06, line_width=0)
    fig.add_vline(x=demo.n_fft - 0.5, line=dict(color=FFT, width=2, dash="dot"),
                  annotation_text=f"end of the buffer, N = {demo.n_fft}", annotation_position="top right")
    for name, colour, sel in zones:
        fig.add_bar(x=n[sel], y=demo.linear_full[sel], marker_color=colour, name=name,
                    hovertemplate="position %{x}<br>coefficient %{y:.3g}<extra></extra>")
    top = float(np.max(np.abs(demo.linear_full))) or 1.0
    wrapped = np.array([abs(demo.linear_full[src]) for src, _ in demo.wraps])
    strength = wrapped / wrapped.max() if wrapped.size and wrapped.max() > 0 else np.ones(len(demo.wraps))
    s = np.linspace(0.0, 1.0, 40)
    for (src, dst), a in zip(demo.wraps, strength):
        fig.add_scatter(x=src + (dst - src) * s, y=top * (1.08 + 0.45 * np.sin(np.pi * s)), mode="lines",
                        line=dict(color=LEAK, width=1.5), opacity=float(0.12 + 0.88 * a), showlegend=False,
                        hovertemplate=f"term {src} wraps onto output {dst}<extra></extra>")
        fig.add_scatter(x=[dst], y=[top * 1.08], mode="markers", showlegend=False, hoverinfo="skip",
                        opacity=float(0.12 + 0.88 * a), marker=dict(symbol="triangle-down", size=8, color=LEAK))
    fig.update_xaxes(title_text="position n in the product x(z)·h(z) (power of z)")
    fig.update_yaxes(title_text="coefficient")
    fig.update_layout(barmode="overlay")
    msg = (f"{len(demo.wraps)} term(s) past the buffer wrap onto outputs 0..{demo.wraps[-1][1]}" if demo.wraps
           else "every term fits in the buffer: nothing wraps")
    return layout(fig, f"Where the L + K − 1 = {len(demo.linear_full)} terms land in a buffer of N = {demo.n_fft}",
                  450, msg, **HALF)


def _matrix_panel(fig: go.Figure, m: np.ndarray, future: np.ndarray, col: int, zmax: float, show_scale: bool) -> None:
    L = m.shape[0]
    fig.add_heatmap(z=m, name="weights", colorscale=WEIGHTS, zmid=0.0, zmin=-zmax, zmax=zmax, showscale=show_scale,
                    colorbar=dict(title=dict(text="weight"), len=0.8), row=1, col=col,
                    hovertemplate="output t=%{y}<br>input j=%{x}<br>weight %{z:.3g}<extra></extra>")
    if future.any():
        fig.add_heatmap(z=np.where(future, 1.0, np.nan), name="reads the future", colorscale=[[0, LEAK], [1, LEAK]], opacity=0.45,
                        showscale=False, row=1, col=col,
                        hovertemplate="output t=%{y} reads future input j=%{x}<extra></extra>")
    fig.add_scatter(x=[-0.5, L - 0.5], y=[-0.5, L - 0.5], mode="lines", showlegend=False, hoverinfo="skip",
                    line=dict(color="black", width=1, dash="dot"), row=1, col=col)


def matrices_figure(demo: PaddingDemo) -> go.Figure:
    """The three convolution matrices M[t, j] (weight of input j in output t): circulant (N = L,
    no padding), the chosen N, and lower-triangular Toeplitz (exact, causal). Entries above the
    dotted diagonal read the future; the non-zero ones are tinted red."""
    L = demo.L
    future_circ = np.triu(demo.circulant, 1) != 0
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.05,
                        subplot_titles=(f"circulant<br>N = L = {L}", f"your N<br>N = {demo.n_fft}",
                                        f"causal Toeplitz<br>N ≥ {demo.n_min}"))  # two short lines fit a 110 px panel
    zmax = float(np.max(np.abs(demo.circulant))) or 1.0
    _matrix_panel(fig, demo.circulant, future_circ, 1, zmax, False)
    _matrix_panel(fig, demo.matrix, demo.future, 2, zmax, False)
    _matrix_panel(fig, demo.toeplitz, np.zeros_like(demo.future), 3, zmax, True)
    fig.update_xaxes(title_text="input j", range=[-0.5, L - 0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(range=[L - 0.5, -0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(title_text="output t", row=1, col=1)
    for col in (1, 2, 3):
        fig.update_yaxes(scaleanchor=f"x{col if col > 1 else ''}", showticklabels=col == 1, row=1, col=col)
    fig = layout(fig, "Convolution matrices, y = M x", 460,
                 f"{int(demo.future.sum())} wrapped entries (vermilion) above the diagonal at N = {demo.n_fft}", **HALF)
    fig.update_layout(margin=dict(t=fig.layout.margin.t + 60))  # room for the two-line panel titles
    return fig


def leak_vs_padding_figure(sizes: np.ndarray, fractions: np.ndarray, n_fft: int, n_min: int) -> go.Figure:
    """Leaked energy fraction (%) against the FFT size N (log scale), the chosen N marked and the
    first N with no leak (L + K - 1) drawn as a line. Sizes with no leak at all are drawn as green
    crosses on the floor of the plot (a log axis has no zero)."""
    sizes, pct = np.asarray(sizes), 100 * np.asarray(fractions, dtype=np.float64)
    pos = pct > 0
    floor = float(pct[pos].min()) / 10 if pos.any() else 1e-6
    fig = go.Figure()
    fig.add_vline(x=n_min - 0.5, line=dict(color=EXACT, width=2, dash="dash"),
                  annotation_text=f"N = L + K − 1 = {n_min}", annotation_position="top right")
    fig.add_scatter(x=sizes[pos], y=pct[pos], mode="lines+markers", line=dict(color=LEAK), marker=dict(size=5),
                    name="leaked energy", hovertemplate="N=%{x}<br>leak %{y:.3g}%<extra></extra>")
    fig.add_scatter(x=sizes[~pos], y=np.full(int((~pos).sum()), floor), mode="markers", name="exactly zero",
                    marker=dict(symbol="x", size=8, color=EXACT),
                    hovertemplate="N=%{x}<br>leak exactly 0<extra></extra>")
    idx = np.flatnonzero(sizes == n_fft)
    if idx.size:
        fig.add_scatter(x=[n_fft], y=[pct[idx[0]] if pct[idx[0]] > 0 else floor], mode="markers", name="your N",
                        marker=dict(size=14, color=FFT, symbol="diamond-open", line=dict(width=3)),
                        hovertemplate="your N=%{x}<extra></extra>")
    fig.update_xaxes(title_text="FFT size N")
    fig.update_yaxes(type="log", title_text="leaked energy (%)")
    return layout(fig, "How much padding is enough?", 380, "leaked energy for every N from L to 2L", **HALF)


def leak_by_offset_figure(leaks: list[tuple[str, np.ndarray]], tolerance: float | None = None) -> go.Figure:
    """Per block, the largest change of an earlier mixer output, relative to the block's own
    response, when the input d tokens later is perturbed, against d (log scale).
    leaks: (name, (Lmax,) relative leak by offset d; index 0 is unused); tolerance: the relative
    change that rounding alone can cause (drawn as a line, labelled at it), or None."""
    fig = go.Figure()
    for i, (name, by_offset) in enumerate(leaks):
        d = np.arange(1, len(by_offset))
        fig.add_scatter(x=d, y=np.maximum(by_offset[1:], 1e-30), mode="lines", name=name,
                        line=dict(color=HEADS[i % len(HEADS)]),
                        hovertemplate="offset %{x}<br>relative change %{y:.3g}<extra>" + name + "</extra>")
    fig.update_xaxes(title_text="how far ahead the changed token lies (tokens)")
    fig.update_yaxes(type="log", title_text="relative change of an earlier output")
    layout(fig, "Where the leak reaches: change of earlier outputs by offset", 360, **HALF)
    if tolerance is not None:
        threshold_line(fig, tolerance, "rounding tolerance", MUTED, log=True, dash="dash")
    return fig
