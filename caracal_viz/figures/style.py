"""What every figure shares: the colour-blind-safe palette, escaping of user text, the title
and margin layout, threshold lines, token ticks and the frequency axes (linear, log, period)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ..text import visible_label


MAGNITUDE = "Cividis"
SIGNED = "RdBu"
HEADS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FUTURE = "#D55E00"  # Okabe-Ito vermilion: reads the future
OK = "#009E73"  # Okabe-Ito bluish green: exact, causal
NO_DATA = "#d4d4d4"  # light grey: no data (NaN cells of a heatmap show it as the plot's background)
MAX_TICK_LABELS = 64  # label every token up to this length, else every n-th position
SUBTITLE_WIDTH = 90  # characters a line: a figure in a 430 px column (a 900 px window) shows about this many


def esc(s) -> str:
    """Escape a user string for Plotly text: &, < and > become entities (shown as typed)."""
    return html.escape(str(s), quote=False)


def show_label(label: str) -> str:
    """A byte label as shown in a cell or tick: a visible mark for the space, escaped."""
    return esc(visible_label(label))


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most about `width` characters (Plotly never wraps a title, it clips it at the
    figure's edge). Breaks at spaces and at existing <br> only, never inside an entity or a tag."""
    lines = []
    for part in text.split("<br>"):
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return lines


def layout(fig: go.Figure, title: str, height: int, subtitle: str | None = None, gap: int = 0,
           bottom: int = 60, width: int = SUBTITLE_WIDTH, legend_below: bool = False) -> go.Figure:
    """Title (one line: Plotly misplaces the lines of a longer one) and subtitle, height, margins
    and theme; the legend stays at Plotly's default place, right of the plot, where any number of
    entries fits, or (`legend_below`, for figures in half-width columns) horizontal a fixed
    ~65 px under the plot area, below the x-axis title.

    The subtitle is wrapped at `width` characters (SUBTITLE_WIDTH fits a 430 px column; a figure
    in a narrower one would clip it) and the top margin grows with its lines, so it never runs
    into the plot, the legend or (`gap` more pixels) subplot titles; the figure grows by as much,
    so the plot keeps its size."""
    t = dict(text=title, x=0.0, xanchor="left", y=1.0, yanchor="top", yref="container", pad=dict(t=20))
    top = 60 + gap
    if subtitle:
        lines = wrap(subtitle, width)
        t["subtitle"] = dict(text="<br>".join(lines))
        top += 8 + 15 * len(lines)
    height += max(0, top - (90 if subtitle else 60))
    fig.update_layout(title=t, height=height, autosize=True, template="plotly_white",
                      margin=dict(l=70, r=30, t=top, b=bottom))
    if legend_below:
        fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-65 / max(height - top - bottom, 100),
                                      xanchor="left", x=0.0))
    return fig


def threshold_line(fig: go.Figure, y: float, text: str, colour: str, log: bool = False,
                   dash: str = "dot") -> go.Figure:
    """A horizontal threshold at `y` (data units) across the plot, labelled in the right margin at
    the line's height, so the label sits at its line and never over the data. Plotly reads a
    shape's y on a log axis as the value but an annotation's y as log10 of it (`log`: the y axis is
    logarithmic). The right margin grows to fit the label."""
    fig.add_hline(y=y, line=dict(color=colour, width=1.5, dash=dash))
    fig.add_annotation(text=text, xref="paper", x=1.0, xanchor="left", xshift=4, yref="y",
                       y=float(np.log10(y)) if log else y, yanchor="middle", showarrow=False,
                       font=dict(color=colour, size=11), name="threshold")
    right = fig.layout.margin.r if fig.layout.margin.r is not None else 30
    fig.update_layout(margin=dict(r=max(right, 12 + 6 * len(text))))
    return fig


def head_colour(h: int) -> str:
    """Head h's line colour: the Okabe-Ito set (HEADS), cycled past its eight colours."""
    return HEADS[h % len(HEADS)]


def head_list(n: int, head: int | None) -> list[int]:
    """The heads to draw of n: all of them (head None) or the one asked for (ValueError if out of range)."""
    if head is None:
        return list(range(n))
    if not 0 <= head < n:
        raise ValueError(f"head must be in 0..{n - 1}, got {head}")
    return [head]


def token_ticks(labels: Sequence[str], max_labels: int = MAX_TICK_LABELS) -> dict:
    """Axis settings for a token axis: every label up to `max_labels` tokens, else positions with
    Plotly's own tick spacing (it fits as many as the axis's width allows)."""
    L = len(labels)
    if L <= max_labels:
        return dict(tickmode="array", tickvals=list(range(L)), ticktext=[show_label(s) for s in labels])
    return dict(tickmode="auto")


def finite_or_none(x: np.ndarray) -> list:
    """A float array as a JSON-friendly list: NaN/Inf become None (a gap in the plot)."""
    a = np.asarray(x, dtype=np.float64)
    return [None if not np.isfinite(v) else float(v) for v in a.ravel()]


def rounded(z: np.ndarray, digits: int = 4) -> np.ndarray:
    """Fewer digits in the figure JSON (the data stay downloadable in full precision)."""
    return np.round(np.asarray(z, dtype=np.float64), digits)
FREQ_AXES = ("frequency", "log frequency", "period")  # how a frequency axis is drawn
DB_SPAN = 60.0  # a |H| colour scale spans this many dB below its top: the -120 dB floor would flatten it


def shared_db_range(*magnitude_db: np.ndarray) -> tuple[float, float]:
    """One |H| colour range (dB) for several filters drawn side by side: from their smallest value,
    or DB_SPAN dB below the largest if they span more."""
    top = max(float(np.max(m)) for m in magnitude_db)
    low = min(float(np.min(m)) for m in magnitude_db)
    return max(top - DB_SPAN, low), top


def freq_axis(freqs: np.ndarray, axis: str = "frequency") -> tuple[np.ndarray, np.ndarray, dict]:
    """How to draw frequencies (F,) cycles/token on an axis: "frequency" (linear), "log
    frequency" or "period" (1/f tokens, log scale; long periods, the slow content, on the left
    like low frequencies). Returns (x values, mask of the bins kept: f = 0 has no log and no
    period, axis settings for update_xaxes)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    if axis == "frequency":
        return freqs, np.ones(freqs.shape, bool), dict(title_text="frequency f (cycles/token)")
    keep = freqs > 0
    if axis == "log frequency":
        return freqs[keep], keep, dict(type="log", title_text="frequency f (cycles/token, log scale)")
    if axis == "period":
        return 1.0 / freqs[keep], keep, dict(type="log", autorange="reversed",
                                             title_text="period 1/f (tokens, log scale)")
    raise ValueError(f"axis must be one of {FREQ_AXES}, got {axis!r}")


def _period_x(period: float, axis: str) -> float:
    return float(period) if axis == "period" else 1.0 / float(period)


def mark_periods(fig: go.Figure, periods: Sequence[float], axis: str = "frequency", lag_axis: bool = False,
                 label: bool = True, **where) -> go.Figure:
    """Vertical dashed lines labelled "period p" at the task's known periods: at f = 1/p on a
    frequency axis (or p on a period axis), at lag p on a kernel's lag axis (`lag_axis`)."""
    log = not lag_axis and axis != "frequency"  # an annotation's x on a log axis is log10 of the value
    for n, p in enumerate(periods):
        x = float(p) if lag_axis else _period_x(p, axis)
        fig.add_vline(x=x, line=dict(color=OK, width=1.5, dash="dash"), **where)
        if label:
            # short labels on the lag axis, where small periods sit a few pixels apart; alternate sides
            fig.add_annotation(text=f"{p:g}" if lag_axis else f"period {p:g}", x=float(np.log10(x)) if log else x,
                               y=1.0, yref="y domain", yanchor="bottom", showarrow=False,
                               xanchor=("right" if n % 2 == 0 else "left") if lag_axis else "center",
                               font=dict(color=OK, size=11), **where)
    return fig


def add_pick_layer(fig: go.Figure, x, y, values, hover: Sequence[str] | None = None, **trace) -> go.Figure:
    """Make positions of a figure clickable: an invisible scatter point at each (x, y) carrying
    `values` (a position, or a row of several) as customdata and `hover` as its hover text.
    Heatmaps report no points to a click (st.plotly_chart's on_select), scatter points do; the
    heatmap under it should skip its own hover so the point's is the one shown. The points are
    small so that the nearest one, not the first of several overlapping, takes a click."""
    fig.add_scatter(x=np.asarray(x), y=np.asarray(y), customdata=np.asarray(values), mode="markers",
                    marker=dict(size=4, color="rgba(0,0,0,0)"), showlegend=False,
                    name="pick", hovertemplate="%{text}<extra></extra>" if hover is not None else None,
                    text=hover, hoverinfo=None if hover is not None else "skip", **trace)
    return fig
