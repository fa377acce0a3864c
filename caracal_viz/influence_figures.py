"""Plotly figures for the token-influence page: arrays in, `go.Figure` out, no Streamlit.

Influence values span many orders of magnitude (and a causal model's future entries are pure
rounding, ~1e-16 of the scale), so maps are coloured by log10 of the value with a floor
`DYNAMIC_RANGE` below the map's largest past entry: rounding shows as the floor colour and a
real leak lights up. Hover labels always give the raw value.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DYNAMIC_RANGE = 1e-4
MAX_TICKS = 48
FUTURE = "#d62728"


def display_label(label: str) -> str:
    """A byte label readable on an axis: a space becomes '␣'."""
    return "␣" if label == " " else label


def _ticks(labels: list[str], max_ticks: int = MAX_TICKS) -> tuple[list[int], list[str]]:
    """Tick positions and texts, thinned to at most MAX_TICKS; thinned ticks carry their position
    ("12:a"), since every few bytes alone would not be readable as text."""
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    pos = list(range(0, len(labels), step))
    return pos, [display_label(labels[p]) if step == 1 else f"{p}:{display_label(labels[p])}" for p in pos]


def _log_scale(values: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """log10 of values floored at scale * DYNAMIC_RANGE; returns (z, zmin, zmax)."""
    top = scale if scale > 0 else float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    top = top if top > 0 else 1.0
    floor = top * DYNAMIC_RANGE
    with np.errstate(invalid="ignore"):
        z = np.log10(np.maximum(np.nan_to_num(values, nan=floor), floor))
    return z, float(np.log10(floor)), float(np.log10(top))


def _layout(fig: go.Figure, title: str, height: int, subtitle: str | None = None) -> go.Figure:
    t = dict(text=title, x=0.0, xanchor="left")
    if subtitle:
        t["subtitle"] = dict(text=subtitle)
    fig.update_layout(title=t, height=height, template="plotly_white",
                      margin=dict(l=60, r=20, t=80 if subtitle else 60, b=50))
    return fig


def _colorbar(zmin: float, zmax: float) -> dict:
    ticks = np.arange(np.ceil(zmin), np.floor(zmax) + 1)
    return dict(title=dict(text="influence"), tickvals=ticks.tolist(), ticktext=[f"1e{int(k)}" for k in ticks])


def influence_map_figure(values: np.ndarray, labels: list[str], scale: float, title: str,
                         subtitle: str | None = None) -> go.Figure:
    """The (L, L) influence map: row i is the prediction made at position i (of byte i + 1),
    column j the input byte j. values: (L, L), NaN where undefined (the last row); labels: L byte
    labels; scale: the map's largest past entry (the colour scale's top)."""
    values = np.asarray(values, dtype=np.float64)
    L = values.shape[0]
    z, zmin, zmax = _log_scale(values, scale)
    pos, text = _ticks(labels)
    xpos, xtext = _ticks(labels, MAX_TICKS // 3)
    shown = [display_label(s) for s in labels]
    nxt = shown[1:] + ["(end)"]
    hover = np.array([[f"prediction at {i} ('{shown[i]}' → '{nxt[i]}')<br>input {j} ('{shown[j]}')"
                       for j in range(L)] for i in range(L)])
    fig = go.Figure()
    fig.add_heatmap(z=z, zmin=zmin, zmax=zmax, colorscale="Viridis", customdata=values, text=hover,
                    colorbar=_colorbar(zmin, zmax), name="influence",
                    hovertemplate="%{text}<br>influence %{customdata:.3g}<extra></extra>")
    fig.add_scatter(x=[-0.5, L - 0.5], y=[-0.5, L - 0.5], mode="lines", hoverinfo="skip", showlegend=False,
                    line=dict(color="white", width=1, dash="dot"))
    fig.update_xaxes(title_text="input byte j", tickvals=xpos, ticktext=xtext, range=[-0.5, L - 0.5],
                     constrain="domain", showgrid=False)
    fig.update_yaxes(title_text="prediction at position i", tickvals=pos, ticktext=text, range=[L - 0.5, -0.5],
                     scaleanchor="x", constrain="domain", showgrid=False)
    return _layout(fig, title, 640, subtitle)


def influence_row_figure(row: np.ndarray, labels: list[str], position: int, scale: float) -> go.Figure:
    """One prediction's influence over the text: a heat strip with the bytes written in it and a
    bar per input byte. row: (L,) values for the prediction at `position` (of byte position + 1);
    inputs after `position` (the future) are shaded red."""
    row = np.asarray(row, dtype=np.float64)
    L = row.size
    shown = [display_label(s) for s in labels]
    z, zmin, zmax = _log_scale(row[None, :], scale)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.25, 0.75], vertical_spacing=0.04)
    fig.add_heatmap(z=z, zmin=zmin, zmax=zmax, colorscale="Viridis", showscale=False, customdata=row[None, :],
                    text=[shown], texttemplate="%{text}" if L <= 120 else None, textfont=dict(size=12),
                    row=1, col=1, name="influence strip",
                    hovertemplate="input %{x} ('%{text}')<br>influence %{customdata:.3g}<extra></extra>")
    colours = np.where(np.arange(L) > position, FUTURE, "#1f77b4")
    fig.add_bar(x=np.arange(L), y=row, marker_color=colours.tolist(), customdata=shown, row=2, col=1,
                name="influence", hovertemplate="input %{x} ('%{customdata}')<br>influence %{y:.3g}<extra></extra>")
    if position + 1 < L:
        for r in (1, 2):
            fig.add_vrect(x0=position + 0.5, x1=L - 0.5, fillcolor=FUTURE, opacity=0.08, line_width=0, row=r, col=1)
    pos, text = _ticks(labels)
    fig.update_xaxes(tickvals=pos, ticktext=text, range=[-0.5, L - 0.5], showgrid=False)
    fig.update_xaxes(title_text="input byte j", row=2, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(title_text="influence", row=2, col=1)
    fig.update_layout(showlegend=False)
    target = shown[position + 1] if position + 1 < L else "(end)"
    return _layout(fig, f"What the prediction at position {position} ('{shown[position]}' → '{target}') depends on",
                   380, "red: later bytes (a causal model gives them exactly nothing)")


def mixing_figure(mats: np.ndarray, labels: list[str], layer: int) -> go.Figure:
    """One layer's (H, L, L) per-head mixing matrices: entry [h, t, j] is how strongly position j
    feeds output t in head h. Coloured by log10 of |entry| relative to the head's largest entry
    (one shared scale, `DYNAMIC_RANGE` deep); hover gives the raw weight."""
    mats = np.asarray(mats, dtype=np.float64)
    H, L, _ = mats.shape
    cols = min(H, 4)
    rows = int(np.ceil(H / cols))
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.04, vertical_spacing=0.1,
                        subplot_titles=[f"head {h}" for h in range(H)])
    pos, text = _ticks(labels, 6)
    for h in range(H):
        r, c = h // cols + 1, h % cols + 1
        top = float(np.max(np.abs(mats[h]))) if mats[h].size else 0.0
        z, zmin, zmax = _log_scale(np.abs(mats[h]) / (top if top > 0 else 1.0), 1.0)
        fig.add_heatmap(z=z, zmin=zmin, zmax=zmax, colorscale="Viridis", customdata=mats[h], showscale=h == 0,
                        colorbar=_colorbar(zmin, zmax) | dict(title=dict(text="relative to<br>the head's max")),
                        row=r, col=c, name=f"head {h}",
                        hovertemplate="output %{y}<br>input %{x}<br>weight %{customdata:.3g}<extra>head " + str(h) + "</extra>")
        fig.add_scatter(x=[-0.5, L - 0.5], y=[-0.5, L - 0.5], mode="lines", hoverinfo="skip", showlegend=False,
                        line=dict(color="white", width=1, dash="dot"), row=r, col=c)
        axis = "" if h == 0 else str(h + 1)
        fig.update_yaxes(scaleanchor=f"x{axis}", showticklabels=c == 1, row=r, col=c)
    fig.update_xaxes(tickvals=pos, ticktext=text, tickangle=0, range=[-0.5, L - 0.5], constrain="domain",
                     showgrid=False)
    fig.update_yaxes(tickvals=pos, ticktext=text, range=[L - 0.5, -0.5], constrain="domain", showgrid=False)
    fig = _layout(fig, f"Layer {layer}: token-to-token mixing per head", 120 + 330 * rows,
                  "row t = output position, column j = input position; above the dotted diagonal = the future")
    fig.update_layout(margin=dict(t=120))
    return fig
