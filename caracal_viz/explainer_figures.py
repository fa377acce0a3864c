"""Plotly figures for the causal-trick explainer: arrays in, `go.Figure` out, no Streamlit.

Colours carry one meaning throughout: green is the exact causal result, blue what the chosen FFT
size computes, red whatever reads the future (wrapped terms, the leak), grey what is discarded.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .explainer import PaddingDemo

EXACT = "#2ca02c"
FFT = "#1f77b4"
LEAK = "#d62728"
MUTED = "#9e9e9e"
HEAD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left"), height=height, template="plotly_white",
                      margin=dict(l=60, r=20, t=70, b=50),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0))
    return fig


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
    return _layout(fig, f"Input: L = {len(x)} tokens, filter K = {len(h)} taps", 300)


def outputs_figure(demo: PaddingDemo) -> go.Figure:
    """Exact causal output (pad and truncate) against what an FFT of size N gives, with the leak
    (their difference) as red bars and the outputs that read the future shaded."""
    t = np.arange(demo.L)
    fig = go.Figure()
    rows = np.flatnonzero(demo.future_rows)
    if rows.size:
        fig.add_vrect(x0=-0.5, x1=rows[-1] + 0.5, fillcolor=LEAK, opacity=0.08, line_width=0,
                      annotation_text="these outputs read the future", annotation_position="top left")
    fig.add_bar(x=t, y=demo.leak, name="leak (wrapped terms)", marker_color=LEAK, opacity=0.55,
                hovertemplate="t=%{x}<br>leak=%{y:.3g}<extra></extra>")
    fig.add_scatter(x=t, y=demo.exact, name="exact causal (pad to 2L, keep first L)", mode="lines+markers",
                    line=dict(color=EXACT, width=3), marker=dict(size=5),
                    hovertemplate="t=%{x}<br>exact=%{y:.4g}<extra></extra>")
    fig.add_scatter(x=t, y=demo.fft_output, name=f"FFT of size N = {demo.n_fft}", mode="lines+markers",
                    line=dict(color=FFT, width=2, dash="dash"), marker=dict(size=7, symbol="circle-open"),
                    hovertemplate="t=%{x}<br>FFT output=%{y:.4g}<extra></extra>")
    fig.update_xaxes(title_text="output position t")
    fig.update_yaxes(title_text="y[t]")
    fig.update_layout(barmode="overlay")
    verdict = (f"leaked energy {100 * demo.leak_fraction:.3g}% in {rows.size} output(s)" if rows.size
               else "no leak: identical to the causal result")
    return _layout(fig, f"Output with N = {demo.n_fft}: {verdict}", 380)


def wraparound_figure(demo: PaddingDemo) -> go.Figure:
    """The full linear convolution (the polynomial product, L + K - 1 terms) laid along an FFT
    buffer of size N: terms at positions n >= N have no room and wrap onto n - N (red arcs)."""
    n = np.arange(len(demo.linear_full))
    colours = np.where(n < demo.L, EXACT, np.where(n < demo.n_fft, MUTED, LEAK))
    fig = go.Figure()
    fig.add_vrect(x0=-0.5, x1=demo.L - 0.5, fillcolor=EXACT, opacity=0.06, line_width=0,
                  annotation_text="kept outputs 0..L-1", annotation_position="bottom left")
    if demo.n_fft > demo.L:
        fig.add_vrect(x0=demo.L - 0.5, x1=demo.n_fft - 0.5, fillcolor=MUTED, opacity=0.12, line_width=0,
                      annotation_text="padding: thrown away", annotation_position="bottom left")
    fig.add_vline(x=demo.n_fft - 0.5, line=dict(color=FFT, width=2, dash="dot"),
                  annotation_text=f"end of the FFT buffer (N = {demo.n_fft})", annotation_position="top right")
    fig.add_bar(x=n, y=demo.linear_full, marker_color=colours.tolist(), name="linear convolution term",
                hovertemplate="position %{x}<br>value %{y:.3g}<extra></extra>")
    top = float(np.max(np.abs(demo.linear_full))) if demo.linear_full.size else 1.0
    top = top if top > 0 else 1.0
    for src, dst in demo.wraps:
        width = src - dst
        s = np.linspace(0.0, 1.0, 40)
        fig.add_scatter(x=src + (dst - src) * s, y=top * (1.1 + 0.5 * np.sin(np.pi * s) * width / demo.n_fft),
                        mode="lines", line=dict(color=LEAK, width=1.5), opacity=0.7, showlegend=False,
                        hovertemplate=f"term at {src} wraps onto output {dst}<extra></extra>")
        fig.add_scatter(x=[dst], y=[top * 1.1], mode="markers", showlegend=False, hoverinfo="skip",
                        marker=dict(symbol="triangle-down", size=9, color=LEAK))
    fig.update_xaxes(title_text="position n in x(z)·h(z) (power of z)")
    fig.update_yaxes(title_text="coefficient")
    fig.update_layout(showlegend=False)
    msg = (f"{len(demo.wraps)} term(s) past the buffer wrap onto outputs 0..{demo.wraps[-1][1]}" if demo.wraps
           else "every term fits in the buffer: nothing wraps")
    return _layout(fig, f"Where the terms land (L + K - 1 = {len(demo.linear_full)} terms, N = {demo.n_fft}): {msg}", 400)


def _matrix_panel(fig: go.Figure, m: np.ndarray, future: np.ndarray, col: int, zmax: float, show_scale: bool) -> None:
    L = m.shape[0]
    fig.add_heatmap(z=m, colorscale="RdBu", zmid=0.0, zmin=-zmax, zmax=zmax, showscale=show_scale,
                    colorbar=dict(title="weight", len=0.8), row=1, col=col,
                    hovertemplate="output t=%{y}<br>input j=%{x}<br>weight %{z:.3g}<extra></extra>")
    tt, jj = np.nonzero(future)
    if tt.size:
        fig.add_scatter(x=jj, y=tt, mode="markers", showlegend=False, row=1, col=col,
                        marker=dict(symbol="square-open", size=max(3, 260 // L), color=LEAK, line=dict(width=1.5)),
                        hovertemplate="output %{y} reads future input %{x}<extra></extra>")
    fig.add_scatter(x=[-0.5, L - 0.5], y=[-0.5, L - 0.5], mode="lines", showlegend=False, hoverinfo="skip",
                    line=dict(color="black", width=1, dash="dot"), row=1, col=col)


def matrices_figure(demo: PaddingDemo) -> go.Figure:
    """The three convolution matrices M[t, j] (weight of input j in output t): circulant (N = L,
    no padding), the chosen N, and lower-triangular Toeplitz (exact, causal). Entries above the
    dotted diagonal read the future; the non-zero ones are outlined in red."""
    L = demo.L
    future_circ = np.triu(demo.circulant, 1) != 0
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.06,
                        subplot_titles=(f"circulant (N = L = {L})", f"your N = {demo.n_fft}",
                                        f"causal Toeplitz (N ≥ {demo.n_min})"))
    zmax = float(np.max(np.abs(demo.circulant))) or 1.0
    _matrix_panel(fig, demo.circulant, future_circ, 1, zmax, False)
    _matrix_panel(fig, demo.matrix, demo.future, 2, zmax, False)
    _matrix_panel(fig, demo.toeplitz, np.zeros_like(demo.future), 3, zmax, True)
    fig.update_yaxes(autorange="reversed", title_text="output t", row=1, col=1)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="input j")
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_yaxes(scaleanchor="x3", row=1, col=3)
    return _layout(fig, f"Convolution matrices: {int(demo.future.sum())} wrapped entries at N = {demo.n_fft}", 430)


def leak_vs_padding_figure(sizes: np.ndarray, fractions: np.ndarray, n_fft: int, n_min: int) -> go.Figure:
    """Leaked energy fraction (%) against the FFT size N, the chosen N marked and the first N with
    no leak (L + K - 1) drawn as a line."""
    sizes, pct = np.asarray(sizes), 100 * np.asarray(fractions, dtype=np.float64)
    fig = go.Figure()
    fig.add_vline(x=n_min, line=dict(color=EXACT, width=2, dash="dash"),
                  annotation_text=f"L + K - 1 = {n_min}: leak gone", annotation_position="top right")
    fig.add_scatter(x=sizes, y=pct, mode="lines+markers", line=dict(color=LEAK, shape="hv"), marker=dict(size=4),
                    name="leaked energy", hovertemplate="N=%{x}<br>leak %{y:.3g}%<extra></extra>")
    idx = np.flatnonzero(sizes == n_fft)
    if idx.size:
        fig.add_scatter(x=[n_fft], y=[pct[idx[0]]], mode="markers", name="your N",
                        marker=dict(size=14, color=FFT, symbol="diamond"),
                        hovertemplate="your N=%{x}<br>leak %{y:.3g}%<extra></extra>")
    fig.update_xaxes(title_text="FFT size N")
    fig.update_yaxes(title_text="leaked energy (% of the exact output's energy)", rangemode="tozero")
    return _layout(fig, "How much padding is enough?", 330)


def kernel_impulse_figure(lags: np.ndarray, two_sided: np.ndarray, causal: np.ndarray, title: str) -> go.Figure:
    """One block's learned kernel per head: before the causal mask (two-sided, by `lags` (2L-1,),
    dotted) and after it (lags 0..L-1, solid). two_sided: (H, 2L-1); causal: (H, L). Negative lags
    (the future) are shaded red: what the mask removes."""
    H = two_sided.shape[0]
    fig = make_subplots(rows=H, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[f"head {h}" for h in range(H)])
    for h in range(H):
        c = HEAD_COLOURS[h % len(HEAD_COLOURS)]
        fig.add_scatter(x=lags, y=two_sided[h], mode="lines", line=dict(color=MUTED, width=1.5, dash="dot"),
                        name="before the mask (two-sided)", legendgroup="two", showlegend=h == 0, row=h + 1, col=1,
                        hovertemplate="lag %{x}<br>%{y:.3g}<extra>before mask</extra>")
        fig.add_scatter(x=np.arange(causal.shape[1]), y=causal[h], mode="lines", line=dict(color=c, width=2),
                        name=f"head {h} after the mask", row=h + 1, col=1,
                        hovertemplate="lag %{x}<br>%{y:.3g}<extra>after mask</extra>")
        fig.add_vrect(x0=float(lags.min()) - 0.5, x1=-0.5, fillcolor=LEAK, opacity=0.07, line_width=0, row=h + 1, col=1)
    fig.update_xaxes(title_text="lag (tokens back; negative = future)", row=H, col=1)
    return _layout(fig, title, 170 * H + 110)


def leak_by_offset_figure(leaks: list[tuple[str, np.ndarray]], tolerance: float | None = None) -> go.Figure:
    """Per block, the largest change of an earlier mixer output when an input d tokens later is
    perturbed, against d (log scale). leaks: (name, (Lmax,) leak by offset, index 0 unused)."""
    fig = go.Figure()
    for i, (name, by_offset) in enumerate(leaks):
        d = np.arange(1, len(by_offset))
        fig.add_scatter(x=d, y=np.maximum(by_offset[1:], 1e-30), mode="lines", name=name,
                        line=dict(color=HEAD_COLOURS[i % len(HEAD_COLOURS)]),
                        hovertemplate="offset %{x}<br>change %{y:.3g}<extra>" + name + "</extra>")
    if tolerance is not None:
        fig.add_hline(y=tolerance, line=dict(color=MUTED, dash="dash"), annotation_text="rounding tolerance")
    fig.update_xaxes(title_text="how far in the future the perturbed token lies (tokens)")
    fig.update_yaxes(type="log", title_text="max change of an earlier output")
    return _layout(fig, "Where the leak reaches: change of earlier outputs by offset", 360)
