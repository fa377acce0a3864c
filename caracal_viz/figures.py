"""Plotly figures for every view of the app and the report: arrays (or the analysis dataclasses
that hold them) in, `go.Figure` out. No Streamlit, no model, no torch.

Conventions for every figure:
- Colour scales are colour-blind safe and carry one meaning each: Cividis for magnitudes (dB,
  influence, loss, energy), RdBu centred at zero for signed values (red positive, blue
  negative: differences, gains in dB, kernel weights), the Okabe-Ito palette for heads in line
  plots, vermilion for whatever reads the future.
- Every string that can come from a user (token labels, text, checkpoint names) goes through
  `esc`: Plotly renders a subset of HTML in labels and hover text, so "<b>" or "&amp;" in a text
  must arrive as entities to show as typed, never as markup.
- Figures set a height and never a width (they fill their container); each has a title and axis
  titles with units.
- Token axes are numeric positions with the labels as tick text (a category axis would merge
  repeated bytes); the hover always names the position and the byte, in one wording: "position
  i" for where a byte is, "byte value 0x4F 'O'" for what it is (`byte_value`).
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .gates import DEAD_OPEN_FRACTION
from .spectral import upper_triangle_maxima
from .text import utf8_spans, visible_label

MAGNITUDE = "Cividis"
SIGNED = "RdBu"
HEADS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FUTURE = "#D55E00"  # Okabe-Ito vermilion: reads the future
OK = "#009E73"  # Okabe-Ito bluish green: exact, causal
NO_DATA = "#d4d4d4"  # light grey: no data (NaN cells of a heatmap show it as the plot's background)
TEXT_WIDTH = 48  # tokens per line in the text views
MAX_TICK_LABELS = 64  # label every token up to this length, else every n-th position
LOG_DECADES = 6.0  # influence maps show six decades below their maximum
# Token-to-token heatmaps larger than this per side are shown as block maxima: a 4,096-byte map
# is 16.8 M cells, more than a browser can draw (the full arrays stay downloadable).
MAX_MATRIX_SIDE = 512
# The group delay is drawn where |H| is within this many dB of the head's peak (1% of its amplitude).
GROUP_DELAY_FLOOR_DB = 40.0
TEXT_BOX_PX = 640  # a text view taller than this scrolls inside a box this high (pages: show_figure's max_height)
CBAR_MIN_PX = 160  # a colour bar (its title and padding included) shorter than this shows one or two ticks
SUBTITLE_WIDTH = 90  # characters a line: a figure in a 430 px column (a 900 px window) shows about this many


def esc(s) -> str:
    """Escape a user string for Plotly text: &, < and > become entities (shown as typed)."""
    return html.escape(str(s), quote=False)


def show_label(label: str) -> str:
    """A byte label as shown in a cell or tick: a visible mark for the space, escaped."""
    return esc(visible_label(label))


def _wrap(text: str, width: int) -> list[str]:
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


def cell_label(label: str) -> str:
    """A byte label that fits one cell of a text view: one glyph for a newline, tab or carriage
    return, a middle dot for any other escaped byte (a control byte: the hover names it); a two-
    or four-character escape would spill into the next cell. (The text views draw a non-ASCII
    character once over its bytes: `char_glyph`.)"""
    glyph = {"\\n": "↵", "\\t": "⇥", "\\r": "␍"}.get(label)
    if glyph:
        return glyph
    return "·" if label.startswith("\\x") else show_label(label)


def byte_value(b: int) -> str:
    """A byte value in the one wording every view uses: 0x4F 'O' (printable ASCII), 0x0A
    (newline) for the three whitespace controls, 0xC3 otherwise. Positions are "position i"."""
    b = int(b)
    if 0x20 <= b < 0x7F:
        return f"0x{b:02X} '{esc(chr(b))}'"
    named = {0x0A: "newline", 0x09: "tab", 0x0D: "carriage return"}.get(b)
    return f"0x{b:02X} ({named})" if named else f"0x{b:02X}"


def char_glyph(ch: str | None) -> str:
    """One visible glyph for a character drawn over its bytes in a text view: the marks of
    `cell_label` for newline, tab, carriage return and space; a combining mark on a dotted circle
    (alone it would sit on nothing); a middle dot for other invisible characters (controls,
    format characters such as a zero-width joiner: the hover names them); U+FFFD for a byte
    that spells no character; otherwise the character itself, escaped."""
    if ch is None:
        return "\ufffd"
    if ch in "\n\t\r ":
        return {"\n": "↵", "\t": "⇥", "\r": "␍", " ": "␣"}[ch]
    cat = unicodedata.category(ch)
    if cat.startswith("M"):
        return "◌" + ch
    if cat[0] in "CZ":
        return "·"
    return esc(ch)


def char_hover(ids: Sequence[int], start: int, end: int, ch: str | None) -> str:
    """The hover line of a character spanning bytes start..end-1: the character, its code point
    and name, its positions and byte values; for a multi-byte character also its word in
    context, isolated so that right-to-left text reads in its own direction."""
    values = " ".join(f"0x{int(b):02X}" for b in ids[start:end])
    if ch is None:
        return f"position {start}: byte value {values}, not part of a complete UTF-8 character"
    where = f"position {start}" if end - start == 1 else f"positions {start}–{end - 1}"
    name = unicodedata.name(ch, "unnamed")
    return f"{char_glyph(ch)} U+{ord(ch):04X} {esc(name.lower())}: {where}, bytes {values}"


def _ink(v: Sequence[float], zmin: float | None, zmax: float | None, all_values: np.ndarray,
         signed: bool = False) -> list[str]:
    """Black or white text over heatmap cells of values v (the colour Plotly's heatmap picks for
    its own cell text): white on dark cells, black on light and on empty ones. MAGNITUDE, or
    with `signed` the reversed SIGNED scale centred at 0, as `_text_heatmap` draws them."""
    finite = np.asarray(all_values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lo = zmin if zmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = zmax if zmax is not None else (float(finite.max()) if finite.size else 1.0)
    if signed and zmin is None and zmax is None:
        lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
    out = []
    for x in v:
        if not np.isfinite(x):
            out.append("black")
            continue
        t = float(np.clip((x - lo) / (hi - lo), 0, 1)) if hi > lo else 0.5
        scale = plotly.colors.get_colorscale(SIGNED if signed else MAGNITUDE)
        r, g, b = plotly.colors.unlabel_rgb(plotly.colors.sample_colorscale(scale, [1 - t if signed else t])[0])
        out.append("white" if 0.299 * r + 0.587 * g + 0.114 * b < 140 else "black")
    return out


def byte_context(ids: Sequence[int], at: int, width: int = 6) -> str:
    """The text around position `at` of the bytes `ids`, the character holding that byte between
    ⟦ ⟧: up to `width` bytes either side, decoded (a cut character shows as U+FFFD), newlines as
    ↵, escaped for Plotly and isolated (U+2068..U+2069) so a right-to-left word keeps its direction."""
    raw = bytes(int(b) for b in ids)
    a = at  # the character's first byte: back over UTF-8 continuation bytes (10xxxxxx), at most 3
    while a > 0 and at - a < 3 and raw[a] & 0xC0 == 0x80:
        a -= 1
    b = a + 1
    while b < len(raw) and b - a < 4 and raw[b] & 0xC0 == 0x80:
        b += 1

    def part(lo: int, hi: int) -> str:
        return raw[max(lo, 0):hi].decode("utf-8", errors="replace").replace("\n", "↵")

    return "\u2068" + esc(part(a - width, a) + "⟦" + part(a, b) + "⟧" + part(b, b + width)) + "\u2069"


def _context(text: str, at: int, width: int = 8) -> str:
    """Up to `width` characters either side of text[at] on its line, isolated (U+2068..U+2069)
    so a right-to-left word keeps its direction inside a left-to-right hover."""
    lo, hi = max(0, at - width), min(len(text), at + width + 1)
    piece = text[lo:hi].split("\n")
    before = text[lo:at].count("\n")
    return "\u2068" + esc(piece[before]) + "\u2069"


def _layout(fig: go.Figure, title: str, height: int, subtitle: str | None = None, gap: int = 0,
            bottom: int = 60) -> go.Figure:
    """Title (one line: Plotly misplaces the lines of a longer one) and subtitle, height, margins
    and theme; the legend stays at Plotly's default place, right of the plot, where any number of
    entries fits.

    The subtitle is wrapped at SUBTITLE_WIDTH characters (a figure in a narrow column would clip
    it) and the top margin grows with its lines, so it never runs into the plot, the legend or
    (`gap` more pixels) subplot titles; the figure grows by as much, so the plot keeps its size."""
    t = dict(text=title, x=0.0, xanchor="left", y=1.0, yanchor="top", yref="container", pad=dict(t=20))
    top = 60 + gap
    if subtitle:
        lines = _wrap(subtitle, SUBTITLE_WIDTH)
        t["subtitle"] = dict(text="<br>".join(lines))
        top += 8 + 15 * len(lines)
    extra = max(0, top - (90 if subtitle else 60))
    fig.update_layout(title=t, height=height + extra, autosize=True, template="plotly_white",
                      margin=dict(l=70, r=30, t=top, b=bottom))
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


def _head_colour(h: int) -> str:
    return HEADS[h % len(HEADS)]


def _heads(n: int, head: int | None) -> list[int]:
    if head is None:
        return list(range(n))
    if not 0 <= head < n:
        raise ValueError(f"head must be in 0..{n - 1}, got {head}")
    return [head]


def _token_ticks(labels: Sequence[str], max_labels: int = MAX_TICK_LABELS) -> dict:
    """Axis settings for a token axis: every label up to `max_labels` tokens, else positions with
    Plotly's own tick spacing (it fits as many as the axis's width allows)."""
    L = len(labels)
    if L <= max_labels:
        return dict(tickmode="array", tickvals=list(range(L)), ticktext=[show_label(s) for s in labels])
    return dict(tickmode="auto")


def _finite_or_none(x: np.ndarray) -> list:
    """A float array as a JSON-friendly list: NaN/Inf become None (a gap in the plot)."""
    a = np.asarray(x, dtype=np.float64)
    return [None if not np.isfinite(v) else float(v) for v in a.ravel()]


def _round(z: np.ndarray, digits: int = 4) -> np.ndarray:
    """Fewer digits in the figure JSON (the data stay downloadable in full precision)."""
    return np.round(np.asarray(z, dtype=np.float64), digits)


# ---- spectral filters --------------------------------------------------------------------------
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
        z=_round(z[:, keep], 2), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=lo, zmax=hi,
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
    return _layout(fig, esc(title), 120 + 40 * H, clipped + marks)


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
            fig.add_scatter(x=x, y=_round(y, 1), mode="lines", line=dict(color=_head_colour(h), width=1.2),
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
    return _layout(fig, "Every block and head: |H| below the block's peak",
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
    for h in _heads(f.magnitude_db.shape[0], head):
        c = _head_colour(h)
        quiet = f.magnitude_db[h] < np.max(f.magnitude_db[h]) - GROUP_DELAY_FLOOR_DB
        hidden[h] = int(quiet.sum())
        delay = np.where(quiet, np.nan, f.group_delay[h])
        drawn.append(delay)
        for row, y, unit in ((1, _round(f.magnitude_db[h]), "dB"), (2, _round(f.phase[h]), "rad"),
                             (3, _finite_or_none(_round(delay)), "tokens")):
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
    return _layout(fig, f"Frequency response of {which} ({f.kind})", 620, sub, gap=10)


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
        fig.add_scatter(x=lags[order], y=_round(k[h, order], 6), mode="lines", name=name,
                        line=dict(color=_head_colour(h), width=1.5),
                        hovertemplate=f"{name}<br>lag %{{x}} tokens<br>weight %{{y:.4g}}<extra></extra>")
    if len(peak_lags) and k.shape[0] == 1:
        where = np.searchsorted(lags[order], np.asarray(peak_lags))
        fig.add_scatter(x=list(peak_lags), y=_round(k[0, order][where], 6), mode="markers+text", showlegend=False,
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
    return _layout(fig, esc(title), 340, sub)


def data_kernel_figure(dk, head: int | None = None) -> go.Figure:
    """mhf, one text (`filters.DataKernels`): per-head mean response (dB over the head's channels)
    of the gate kernel g and of the combined kernel g*k that mixes the value stream."""
    fig = go.Figure()
    for h in _heads(dk.gate_db.shape[0], head):
        c = _head_colour(h)
        fig.add_scatter(x=dk.freqs, y=_round(dk.gate_db[h], 2), mode="lines", name=f"head {h}: gate g",
                        line=dict(color=c, width=1.2, dash="dot"),
                        hovertemplate=f"head {h} gate g<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=dk.freqs, y=_round(dk.combined_db[h], 2), mode="lines", name=f"head {h}: combined g*k",
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} combined g*k<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
    fig.update_xaxes(title_text="frequency f (cycles/token)")
    fig.update_yaxes(title_text="mean |response| over channels (dB)")
    which = "every head" if head is None else f"head {head}"
    return _layout(fig, f"Data-dependent kernels for this text, {which}", 380,
                   "dotted: the gate stream g alone; solid: g convolved with the learned kernel k")


def fftnet_filter_figure(ff, head: int | None = None) -> go.Figure:
    """fftnet, one text (`filters.FFTNetFilters`): base filter against the filter adapted to the
    text (dB), and the fraction of the head's channels whose modReLU gate stays open per bin."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.7, 0.3],
                        subplot_titles=("base vs adapted filter", "modReLU gates open for this text"))
    for h in _heads(ff.base_db.shape[0], head):
        c = _head_colour(h)
        fig.add_scatter(x=ff.freqs, y=_round(ff.base_db[h], 2), mode="lines", name=f"head {h}: base",
                        line=dict(color=c, width=1.2, dash="dot"), row=1, col=1,
                        hovertemplate=f"head {h} base<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=ff.freqs, y=_round(ff.adapted_db[h], 2), mode="lines", name=f"head {h}: adapted",
                        line=dict(color=c, width=2), row=1, col=1,
                        hovertemplate=f"head {h} adapted<br>f = %{{x:.4f}}<br>%{{y:.1f}} dB<extra></extra>")
        fig.add_scatter(x=ff.freqs, y=_round(ff.data_open[h], 3), mode="lines", name=f"head {h}: open",
                        line=dict(color=c, width=1.5), showlegend=False, row=2, col=1,
                        hovertemplate=f"head {h}<br>f = %{{x:.4f}}<br>%{{y:.0%}} of channels open<extra></extra>")
    fig.update_yaxes(title_text="|W| (dB)", row=1, col=1)
    fig.update_yaxes(title_text="open fraction", range=[0, 1.05], tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text="frequency f (cycles/token)", row=2, col=1)
    which = "every head" if head is None else f"head {head}"
    return _layout(fig, f"FFTNet filter adapted to this text, {which}", 540, gap=30,
                   subtitle="dotted: the learned base filter; solid: base + MLP(mean over all tokens, the future included)")


# ---- modReLU gates -----------------------------------------------------------------------------
def _gate_heads(g) -> list[str]:
    return [f"head {h}" + (" (dead)" if g.dead[h] else "") for h in range(g.bias.shape[0])]


def _no_data_bins(g) -> np.ndarray:
    """(H, F) bool: the gate bins no bin of the text's spectrum falls on (fftnet, L < C)."""
    return np.isnan(g.data_open) if g.data_open is not None else np.zeros(g.open.shape, bool)


def _no_data(fig: go.Figure, g) -> go.Figure:
    """Bins without data (NaN cells) show the plot's background: NO_DATA grey on both gate maps."""
    if not _no_data_bins(g).any():
        return fig
    fig.update_xaxes(showgrid=False)  # grid lines would stripe the grey
    fig.update_yaxes(showgrid=False)
    return fig.update_layout(plot_bgcolor=NO_DATA)


def _no_data_note(g) -> str:
    n = int(_no_data_bins(g).any(axis=0).sum())
    return f"; grey: no data ({n} of {g.open.shape[1]} bins: this short text has fewer frequencies)" if n else ""


def _gate_hover(axis: str, value: str, freq_at: int) -> str:
    """A gate map's hover; on the period axis the frequency comes from customdata[freq_at]."""
    f = f"f = %{{customdata[{freq_at}]:.4f}} cycles/token (period %{{x:.3g}})" if axis == "period" else "f = %{x:.4f}"
    return f"head %{{y}}<br>{f}<br>{value}"


def gate_map_figure(g, title: str | None = None, axis: str = "frequency", periods: Sequence[float] = ()) -> go.Figure:
    """modReLU gates of one block (`gates.LayerGates`), heads x frequency: open (1) or closed
    (0); with a text, the fraction of gates open for it (fftnet, per bin). Dead heads marked.
    axis: one of FREQ_AXES (log frequency and period leave out f = 0); periods: the task's known
    periods, marked as lines."""
    H = g.bias.shape[0]
    z = g.open.astype(float) if g.data_open is None else g.data_open
    x, keep, xaxis = freq_axis(g.freqs, axis)
    fig = go.Figure(go.Heatmap(
        z=_round(z[:, keep], 3), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=0.0, zmax=1.0,
        colorbar=dict(title=dict(text="open"), tickvals=[0, 0.5, 1], ticktext=["closed", "half", "open"]),
        customdata=np.stack([_round(g.magnitude, 4), _round(g.bias, 4),
                             np.broadcast_to(g.freqs, g.bias.shape)], axis=-1)[:, keep],
        hovertemplate=_gate_hover(axis, "open %{z:.0%}<br>|z| = %{customdata[0]:.3g}, b = %{customdata[1]:.3g}", 2)
                      + "<extra></extra>"))
    for h in np.flatnonzero(g.dead):
        fig.add_hline(y=float(h), line=dict(color=FUTURE, width=2, dash="dot"))
    mark_periods(fig, periods, axis)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(title_text="head", tickmode="array", tickvals=list(range(H)), ticktext=_gate_heads(g),
                     autorange="reversed")
    n_dead = int(g.dead.sum())
    sub = f"open where |z| + b > 0; {n_dead} dead head(s) (open on at most 5% of bins)" if n_dead \
        else "open where |z| + b > 0; no dead heads"
    return _layout(_no_data(fig, g), esc(title or f"modReLU gates ({g.kind})"), 150 + 40 * H,
                   sub + _no_data_note(g))


def passed_energy_figure(g, title: str | None = None, axis: str = "frequency",
                         periods: Sequence[float] = ()) -> go.Figure:
    """Energy each gate lets through for the text (`gates.LayerGates` with a text), heads x
    frequency in dB (Parseval-scaled, so it adds up to the head's passed energy). Without a text,
    the gates' static transmission in dB. Dead heads marked. axis, periods: as gate_map_figure."""
    H = g.bias.shape[0]
    if g.passed_energy is not None:
        z = 10 * np.log10(np.maximum(g.passed_energy, 1e-30))
        ztitle, what = "passed energy (dB)", "energy passed for this text"
        sub = "per head: " + ", ".join(f"{h}: {100 * float(p):.0f}%" for h, p in enumerate(g.passed_fraction)) \
            + " of the energy reaching the gates passes"
        z[_no_data_bins(g)] = np.nan  # no energy reached these bins: no data, not a closed gate
        sub += _no_data_note(g)
    else:
        z = 10 * np.log10(np.maximum(g.transmission, 1e-30))
        ztitle, what, sub = "transmission (dB)", "static gate transmission", None
    x, keep, xaxis = freq_axis(g.freqs, axis)
    z = z[:, keep]
    zmax = float(np.nanmax(z)) if np.isfinite(z).any() else 0.0
    fig = go.Figure(go.Heatmap(
        z=_round(z, 2), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=zmax - 80, zmax=zmax,
        colorbar=dict(title=dict(text=ztitle)),
        customdata=np.broadcast_to(np.asarray(g.freqs)[keep], (H, int(keep.sum())))[..., None],
        hovertemplate=_gate_hover(axis, "%{z:.1f} dB", 0) + "<extra></extra>"))
    for h in np.flatnonzero(g.dead):
        fig.add_hline(y=float(h), line=dict(color=FUTURE, width=2, dash="dot"))
    mark_periods(fig, periods, axis)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(title_text="head", tickmode="array", tickvals=list(range(H)), ticktext=_gate_heads(g),
                     autorange="reversed")
    return _layout(_no_data(fig, g), esc(title or f"modReLU gates: {what}"), 150 + 40 * H, sub)


def gate_summary_figure(report: Sequence) -> go.Figure:
    """Per block and head (a `gates.gate_report` list): the fraction of open gates, and with a
    text the fraction of energy passed; dead heads in vermilion."""
    xs, open_, passed, colours = [], [], [], []
    for i, g in enumerate(report):
        if g is None:
            continue
        for h in range(g.bias.shape[0]):
            xs.append(f"block {i} head {h}")
            open_.append(float(g.open_fraction[h]))
            passed.append(None if g.passed_fraction is None else float(g.passed_fraction[h]))
            colours.append(FUTURE if g.dead[h] else HEADS[0])
    fig = go.Figure()
    fig.add_bar(x=xs, y=open_, name="gates open", marker_color=colours,
                hovertemplate="%{x}<br>%{y:.0%} of gates open<extra></extra>")
    if any(p is not None for p in passed):
        fig.add_scatter(x=xs, y=passed, mode="markers", name="energy passed", marker=dict(color="black", size=9,
                        symbol="diamond"), hovertemplate="%{x}<br>%{y:.0%} of the energy passes<extra></extra>")
    fig.update_xaxes(title_text="block and head")
    fig.update_yaxes(title_text="fraction", tickformat=".0%")
    n_dead = sum(c == FUTURE for c in colours)
    _layout(fig, "modReLU gates: open fraction per head", 380,
            f"{n_dead} dead head(s) in vermilion" if n_dead else "no dead heads")
    return threshold_line(fig, DEAD_OPEN_FRACTION, f"dead below {DEAD_OPEN_FRACTION:.0%}", FUTURE)


# ---- the causal trick: kernels, impulses, aliasing, certificate --------------------------------
def kernel_impulse_figure(ki, head: int | None = None) -> go.Figure:
    """Two-sided kernel (before the causal mask) against the causal kernel (after it), by lag,
    from an `impulse.KernelImpulse`; the masked (future) half is shaded."""
    fig = go.Figure()
    fig.add_vrect(x0=float(ki.lags.min()) - 0.5, x1=-0.5, fillcolor=FUTURE, opacity=0.08, line_width=0,
                  annotation_text="negative lags: the future", annotation_position="top left")
    causal_lags = np.arange(ki.causal.shape[-1])
    for h in _heads(ki.two_sided.shape[0], head):
        c = _head_colour(h)
        fig.add_scatter(x=ki.lags, y=_round(ki.two_sided[h], 6), mode="lines", name=f"head {h}: two-sided",
                        line=dict(color=c, width=1.2, dash="dot"),
                        hovertemplate=f"head {h} two-sided<br>lag %{{x}}<br>%{{y:.4g}}<extra></extra>")
        fig.add_scatter(x=causal_lags, y=_round(ki.causal[h], 6), mode="lines", name=f"head {h}: causal",
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} causal<br>lag %{{x}}<br>%{{y:.4g}}<extra></extra>")
    fig.update_xaxes(title_text="lag m (tokens back; negative = future)")
    fig.update_yaxes(title_text="kernel weight")
    masked = ", ".join(f"head {h}: {100 * float(ki.masked_fraction[h]):.2g}%"
                       for h in _heads(ki.two_sided.shape[0], head))
    return _layout(fig, f"Impulse response before and after the causal mask ({ki.kind})", 400,
                   f"energy the mask removes: {masked}")


def mixer_impulse_figure(mi) -> go.Figure:
    """One mixer's response to an impulse at t0 (`impulse.MixerImpulse`): output change per
    position (all channels) and per head; anything left of t0 is a leak."""
    fig = go.Figure()
    t = np.arange(mi.length)
    if mi.t0 > 0:
        fig.add_vrect(x0=-0.5, x1=mi.t0 - 0.5, fillcolor=FUTURE, opacity=0.08, line_width=0,
                      annotation_text="before the impulse: must stay 0", annotation_position="top left")
    fig.add_scatter(x=t, y=_round(mi.norm, 6), mode="lines+markers", name="mixer output (all channels)",
                    line=dict(color="black", width=2), marker=dict(size=4),
                    hovertemplate="position %{x}<br>|change| %{y:.4g}<extra></extra>")
    if mi.head_response is not None:
        for h in range(mi.head_response.shape[0]):
            fig.add_scatter(x=t, y=_round(mi.head_response[h], 6), mode="lines", name=f"head {h} (FFT output)",
                            line=dict(color=_head_colour(h), width=1.2),
                            hovertemplate=f"head {h}<br>position %{{x}}<br>%{{y:.4g}}<extra></extra>")
    fig.add_vline(x=mi.t0, line=dict(color=OK, width=1, dash="dash"))
    fig.update_xaxes(title_text="position t (tokens)")
    fig.update_yaxes(title_text="L2 norm of the output change")
    rel = mi.leak / mi.peak if mi.peak > 0 else 0.0
    return _layout(fig, f"Block {mi.layer} mixer: response to an impulse at t0 = {mi.t0}", 380,
                   f"largest change before t0: {mi.leak:.3g} ({rel:.2g} of the peak)")


def aliasing_figure(a, head: int = 0) -> go.Figure:
    """The mixing matrix that "pad to n_fft, FFT, multiply, inverse FFT, keep the first L" applies
    with one head's learned kernel (`impulse.Aliasing`), next to its aliased part (the matrix
    minus the exact causal Toeplitz matrix), each signed and centred at zero on its own range:
    aliased terms a hundredth of the weights would be blank on the matrix's range. Exactly no
    aliasing (n_fft large enough): the matrix alone, the subtitle says so."""
    M, A = a.matrix[head], a.alias[head]
    amax = float(np.max(np.abs(A)))
    panels = [(M, float(np.max(np.abs(M))) or 1.0, "weight")] + ([(A, amax, "aliased")] if amax > 0 else [])
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.16,
                        subplot_titles=(f"matrix at N = {a.n_fft}", "aliased terms (matrix − exact), own colour range")
                        [:len(panels)])
    for col, (z, zmax, name) in enumerate(panels, start=1):
        fig.add_heatmap(z=_round(z, 6), colorscale=SIGNED, reversescale=True, zmid=0.0, zmin=-zmax, zmax=zmax,
                        colorbar=dict(title=dict(text=name), x=0.42 if col == 1 and len(panels) == 2 else 1.02,
                                      len=0.9), row=1, col=col,
                        hovertemplate="output t=%{y}<br>input j=%{x}<br>%{z:.4g}<extra></extra>")
    fig.update_xaxes(title_text="input position j")
    fig.update_yaxes(title_text="output position t", autorange="reversed")
    sub = (f"aliased energy {100 * float(a.alias_fraction[head]):.3g}%, above the diagonal "
           f"{100 * float(a.future_fraction[head]):.3g}%; no aliasing from N = {a.safe_n_fft}" if amax > 0 else
           f"no aliased terms: N = {a.n_fft} is long enough (from N = {a.safe_n_fft}), the matrix is the exact one")
    return _layout(fig, f"Aliasing of block {a.layer} head {head} at L = {a.length}, N = {a.n_fft}", 480,
                   gap=30, subtitle=sub)


VERDICT_COLOURS = {"causal": OK, "leaks": FUTURE, "cannot certify": "#888888"}
"""The certificate's colours, the same in every view: green causal, red (vermilion) leaks, grey cannot certify."""


def causality_figure(report) -> go.Figure:
    """The causality certificate (`causality.CausalityReport`): per block (its mixer alone) and for
    the whole model (the logits), the largest change of an earlier output relative to the response
    (log scale), coloured by verdict, with the rounding threshold (floor_factor rounding floors, in
    the same relative units) as a black tick on each bar. An exact zero sits on the axis' floor."""
    rows = [(f"block {p.layer} ({p.kind} {p.causal_mode})", p.leak, p.response, p.floor, p.verdict,
             p.structure.status) for p in report.per_layer]
    rows.append(("whole model (logits)", report.model_leak, report.model_response, report.floor, report.verdict,
                 "perturbation"))
    rel = [leak / resp if resp > 0 and np.isfinite(leak) else (0.0 if leak == 0 else np.nan)
           for _, leak, resp, *_ in rows]
    thresh = [report.floor_factor * floor / resp if resp > 0 else np.nan for _, _, resp, floor, *_ in rows]
    finite = [v for v in rel + thresh if np.isfinite(v) and v > 0]
    bottom = min(finite, default=1e-12) / 100
    names = [r[0] for r in rows]
    shown = [max(v, bottom) if np.isfinite(v) else bottom for v in rel]
    hover = [f"{r[4]}<br>structure: {r[5]}<br>" + ("leak: NaN/Inf" if not np.isfinite(v) else
             f"earlier outputs move by {r[1]:.3g} ({v:.3g} of the response {r[2]:.3g})<br>rounding floor {r[3]:.3g}")
             for r, v in zip(rows, rel)]
    fig = go.Figure(go.Bar(x=names, y=shown, marker_color=[VERDICT_COLOURS[r[4]] for r in rows],
                           customdata=hover, hovertemplate="%{x}<br>%{customdata}<extra></extra>", name="leak"))
    fig.add_scatter(x=names, y=[t if np.isfinite(t) and t > 0 else None for t in thresh], mode="markers",
                    marker=dict(symbol="line-ew-open", size=28, line=dict(width=3, color="black")),
                    name=f"{report.floor_factor:g} rounding floors", hovertemplate="threshold %{y:.3g}<extra></extra>")
    fig.update_yaxes(type="log", title_text="change of earlier outputs / response", exponentformat="e")
    fig.update_xaxes(title_text="where the change is measured")
    verdict = report.verdict.upper() + ("" if report.verdict != "causal" or report.model_leak == 0 else
                                        f" up to {report.precision} rounding")
    if report.verdict == "cannot certify":
        verdict += f": NaN/Inf from {esc(report.nonfinite)}"
    return _layout(fig, f"Causality certificate: {verdict}", 420,
                   f"{report.leak_text}; lengths {', '.join(map(str, report.lengths))}")


# ---- Parseval energy ---------------------------------------------------------------------------
def energy_identity_figure(rep) -> go.Figure:
    """Parseval per block and head (`energy.ParsevalReport`): energy in time against energy in
    frequency for the FFT stage's input and output, on log axes with the identity line."""
    fig = go.Figure()
    lo, hi = np.inf, 0.0
    for which, symbol in (("input", "circle"), ("output", "diamond")):
        xs, ys, text = [], [], []
        for i, e in enumerate(rep.layers):
            if e is None:
                continue
            t, f, err = getattr(e, f"{which}_time"), getattr(e, f"{which}_freq"), getattr(e, f"{which}_rel_error")
            for h in range(t.size):
                xs.append(float(t[h]))
                ys.append(float(f[h]))
                text.append(f"block {i} head {h}<br>relative difference {float(err[h]):.2g}")
        if xs:
            pos = [v for v in xs + ys if v > 0]
            if pos:
                lo, hi = min(lo, min(pos)), max(hi, max(pos))
            fig.add_scatter(x=xs, y=ys, mode="markers", name=f"FFT {which}", text=text,
                            marker=dict(symbol=symbol, size=9, color=HEADS[0] if which == "input" else HEADS[1]),
                            hovertemplate="%{text}<br>time %{x:.6g}<br>frequency %{y:.6g}<extra></extra>")
    if np.isfinite(lo) and hi > 0:
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="time = frequency",
                        line=dict(color="black", width=1, dash="dash"), hoverinfo="skip")
    fig.update_xaxes(type="log", title_text="energy in time, Σ|x|² (sum of squares)")
    fig.update_yaxes(type="log", title_text="energy in frequency, (1/N) Σ w|X|²")
    verdict = "holds" if rep.ok else "FAILS"
    return _layout(fig, f"Parseval's identity per block and head: {verdict}", 440,
                   f"largest relative difference {rep.max_rel_error:.2g} (tolerance {rep.tolerance:.0e})")


def esd_figure(e, head: int | None = None, title: str | None = None) -> go.Figure:
    """Energy spectral density of one block's FFT input and output (`energy.LayerEnergy`),
    Parseval-scaled: the bins add up to the time-domain energy. One head, or (head None) small
    multiples, a panel per head on one shared log axis, so eight overlapping lines stay apart."""
    H = e.esd_input.shape[0]
    heads = _heads(H, head)
    cols = 1 if head is not None else min(2, H)
    rows = -(-len(heads) // cols)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.0,
                        subplot_titles=[f"head {h}" for h in heads] if head is None else None)
    for n, h in enumerate(heads):
        c, r, k = _head_colour(h), n // cols + 1, n % cols + 1
        fig.add_scatter(x=e.freqs, y=_finite_or_none(e.esd_input[h]), mode="lines", name="input" if n == 0 else None,
                        legendgroup="input", showlegend=n == 0, line=dict(color="#999999", width=1.2, dash="dot"),
                        hovertemplate=f"head {h} input<br>f = %{{x:.4f}}<br>%{{y:.4g}}<extra></extra>", row=r, col=k)
        fig.add_scatter(x=e.freqs, y=_finite_or_none(e.esd_output[h]), mode="lines",
                        name="output" if n == 0 else None, legendgroup="output", showlegend=n == 0,
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} output<br>f = %{{x:.4f}}<br>%{{y:.4g}}<extra></extra>", row=r, col=k)
    fig.update_xaxes(title_text="frequency f (cycles/token)", row=rows)
    fig.update_yaxes(type="log", exponentformat="e")
    fig.update_yaxes(title_text="energy per bin", col=1)
    which = "every head" if head is None else f"head {head}"
    return _layout(fig, esc(title or f"Energy spectral density, {which}"), 380 if head is not None else 120 + 230 * rows,
                   "grey dotted: into the FFT mixing (value stream); colour: out of it (before the output projection)",
                   gap=10 if head is None else 0)


def energy_bands_figure(b) -> go.Figure:
    """Where each head's energy goes (`energy.EnergyBands`), one row per block and head: the share
    of its input and of its output energy in each band of period (in %), and its energy gain
    (dB; bars coloured by the verdict: amplifies, attenuates, keeps)."""
    names = [f"block {i} head {h}" for i, h in b.rows]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, column_widths=[0.38, 0.38, 0.24], horizontal_spacing=0.03,
                        subplot_titles=("input energy<br>by band", "output energy<br>by band", "energy<br>gain (dB)"))
    for col, frac in ((1, b.input_fraction), (2, b.output_fraction)):
        fig.add_heatmap(z=_round(frac, 4), x=list(b.names), y=names, colorscale=MAGNITUDE, zmin=0, zmax=1,
                        text=np.vectorize(lambda v: "" if not np.isfinite(v) else f"{v:.0%}")(frac),
                        texttemplate="%{text}", showscale=col == 1, row=1, col=col,
                        colorbar=dict(title=dict(text="share"), tickformat=".0%", len=0.8),
                        hovertemplate="%{y}<br>%{x}<br>%{z:.1%} of the energy<extra></extra>")
    colour = {"amplifies": FUTURE, "attenuates": HEADS[0], "keeps": "#999999", "n/a": "#999999"}
    fig.add_bar(x=_finite_or_none(_round(b.gain_db, 2)), y=names, orientation="h", row=1, col=3, showlegend=False,
                marker_color=[colour[v] for v in b.verdict], customdata=b.verdict,
                hovertemplate="%{y}: %{x:.1f} dB, %{customdata}<extra></extra>")
    fig.add_vline(x=0, line=dict(color="black", width=1), row=1, col=3)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-30, row=1, col=1)
    fig.update_xaxes(tickangle=-30, row=1, col=2)
    counts = {v: b.verdict.count(v) for v in ("amplifies", "attenuates", "keeps")}
    sub = (f"{counts['amplifies']} head(s) amplify (red), {counts['attenuates']} attenuate (blue), {counts['keeps']} keep "
           f"their energy (grey: within ±{b.keep_db:g} dB); bands by period 1/f")
    return _layout(fig, "Where the energy goes: each head's energy by band of period", 200 + 26 * len(names), sub,
                   gap=30, bottom=110)  # gap: two-line panel titles, short enough for a 900 px window


def energy_gain_figure(rep) -> go.Figure:
    """Energy gain of every block and head over frequency (`energy.ParsevalReport`): 10 log10 of
    output ESD / input ESD, signed colours centred at 0 dB (red: amplified, blue: attenuated)."""
    rows, names = [], []
    freqs = None
    for i, e in enumerate(rep.layers):
        if e is None:
            continue
        freqs = e.freqs
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.extend(10 * np.log10(e.gain))
        names.extend(f"block {i} head {h}" for h in range(e.gain.shape[0]))
    fig = go.Figure()
    if rows:
        z = np.array(rows)
        finite = z[np.isfinite(z)]
        zmax = float(np.max(np.abs(finite))) if finite.size else 1.0
        z = np.where(np.isfinite(z), z, np.nan)
        fig.add_heatmap(z=_round(z, 2), x=freqs, y=names, colorscale=SIGNED, reversescale=True,
                        zmid=0.0, zmin=-zmax, zmax=zmax, colorbar=dict(title=dict(text="gain (dB)")),
                        hovertemplate="%{y}<br>f = %{x:.4f}<br>gain %{z:.1f} dB<extra></extra>")
        fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="frequency f (cycles/token)")
    fig.update_yaxes(title_text="block and head")
    return _layout(fig, "Energy gain of each head over frequency (output / input ESD)", 140 + 22 * max(len(names), 4))


# ---- text views: loss, top-k, influence strip ----------------------------------------------------
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


def _text_grid(labels: Sequence[str], width: int = TEXT_WIDTH,
               spans: Sequence[tuple[int, int, str | None]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lay tokens out like text: a new line after a newline byte or `width` tokens, never inside
    a character's bytes (`spans`, from `text.utf8_spans`; default one byte each).
    Returns (row, col) of each token."""
    rows, cols = np.zeros(len(labels), dtype=int), np.zeros(len(labels), dtype=int)
    r = c = 0
    for start, end, _ in spans if spans is not None else [(i, i + 1, None) for i in range(len(labels))]:
        if c and c + (end - start) > width:
            r, c = r + 1, 0
        for i in range(start, end):
            rows[i], cols[i] = r, c
            c += 1
        if labels[end - 1] == "\\n" or c >= width:
            r, c = r + 1, 0
    return rows, cols


def _text_heatmap(labels: Sequence[str], values: np.ndarray, hover: Sequence[str], colourbar: str,
                  zmin: float | None = None, zmax: float | None = None, marked: Sequence[int] = (),
                  signed: bool = False, ids: Sequence[int] | None = None) -> go.Figure:
    """Tokens as cells of a text-shaped grid coloured by values (L,) (NaN: uncoloured); `signed`:
    a diverging scale centred at 0 (red positive, blue negative). With the
    byte `ids`, a character of several UTF-8 bytes is drawn once, centred over its bytes' cells
    (which keep their own colours), and each of those cells' hovers starts with the character,
    its positions and byte values (`char_hover`) and its word in context."""
    spans = utf8_spans(ids) if ids is not None else [(i, i + 1, None) for i in range(len(labels))]
    rows, cols = _text_grid(labels, spans=spans)
    R, W = int(rows.max()) + 1, int(cols.max()) + 1
    z = np.full((R, W), np.nan)
    text = np.full((R, W), "", dtype=object)
    z[rows, cols] = values
    text[rows, cols] = [cell_label(s) for s in labels]
    tips = list(hover)
    wide = [(a, b, ch) for a, b, ch in spans if ids is not None and (b - a > 1 or ch is None)]
    if wide:
        decoded = "".join(ch or "\ufffd" for _, _, ch in spans)
        at = {a: k for k, (a, _, _) in enumerate(spans)}
        for a, b, ch in wide:
            text[rows[a], cols[a]:cols[a] + (b - a)] = ""
            line = char_hover(ids, a, b, ch) + (f"<br>in context: {_context(decoded, at[a])}" if ch else "")
            for i in range(a, b):
                tips[i] = f"{line}<br>{tips[i]}"
    rows_px = max(90, 30 * R)
    # the colour bar hangs from the top of the grid, at least CBAR_MIN_PX long (a one-row text
    # would squash it: the bottom margin grows instead), and at most what a TEXT_BOX_PX box shows
    # of a long text (a bar as tall as the whole grid would show one tick in the box)
    bar = int(np.clip(rows_px, CBAR_MIN_PX, TEXT_BOX_PX - 140))
    fig = go.Figure(go.Heatmap(
        z=_round(z, 4), text=text, texttemplate="%{text}", textfont=dict(size=13, family="monospace"),
        hoverinfo="skip", colorscale=SIGNED if signed else MAGNITUDE, reversescale=signed,
        zmid=0.0 if signed else None, zmin=zmin, zmax=zmax, xgap=1, ygap=1,
        colorbar=dict(title=dict(text=colourbar), lenmode="pixels", len=bar, y=1.0, yanchor="top", thickness=14)))
    if wide:  # drawn once over the bytes they span; each byte's pick point keeps its hover
        fig.add_scatter(x=[cols[a] + (b - a - 1) / 2 for a, b, _ in wide], y=[int(rows[a]) for a, _, _ in wide],
                        mode="text", text=[char_glyph(ch) for _, _, ch in wide], hoverinfo="skip", showlegend=False,
                        textfont=dict(size=13, family="monospace", color=_ink(
                            [np.nanmean(values[a:b]) if np.isfinite(values[a:b]).any() else np.nan
                             for a, b, _ in wide], zmin, zmax, values, signed)), name="characters")
    add_pick_layer(fig, cols, rows, np.arange(len(labels)), tips)
    for i in marked:
        fig.add_shape(type="rect", x0=cols[i] - 0.5, x1=cols[i] + 0.5, y0=rows[i] - 0.5, y1=rows[i] + 0.5,
                      line=dict(color=FUTURE, width=3))
    fig.update_xaxes(visible=False, range=[-0.5, W - 0.5])
    fig.update_yaxes(visible=False, autorange="reversed")
    bottom = 20 + max(0, bar - rows_px)
    fig.update_layout(height=90 + bottom + rows_px, margin=dict(b=bottom))
    return fig


def token_loss_figure(view) -> go.Figure:
    """The text, each byte coloured by the model's loss on it in bits (`predict.NextTokenView`):
    byte t gets -log2 p(x_t | x_<t), so the first byte is uncoloured; the hover lists what the
    model expected there instead."""
    L = len(view.labels)
    values = np.full(L, np.nan)
    values[1:] = view.loss_bits[:-1]
    hover = []
    for t in range(L):
        head = f"position {t}: byte value {byte_value(view.ids[t])}"
        if t == 0:
            hover.append(head + "<br>first byte: nothing before it to predict it from")
            continue
        guesses = ", ".join(f"{show_label(lab)} {p:.0%}" for lab, p in zip(view.topk_labels[t - 1], view.topk_probs[t - 1]))
        hover.append(f"{head}<br>loss {view.loss_bits[t - 1]:.2f} bits (p = {view.target_prob[t - 1]:.3g})"
                     f"<br>expected: {guesses}")
    finite = values[np.isfinite(values)]
    fig = _text_heatmap(view.labels, values, hover, "loss (bits)", zmin=0.0,
                        zmax=float(max(8.0, finite.max())) if finite.size else 8.0, ids=view.ids)
    mean = "n/a" if not np.isfinite(view.mean_bits) else f"{view.mean_bits:.3f} bits/byte"
    note = "" if view.causal else "; NOT causal: these predictions read the future"
    return _layout(fig, "Loss per byte", fig.layout.height, f"mean {mean} over {max(L - 1, 0)} predictions{note}",
                   bottom=fig.layout.margin.b)


def topk_figure(view, pos: int) -> go.Figure:
    """The k most likely next bytes after reading bytes 0..pos (`predict.NextTokenView`), as
    horizontal bars; the byte that actually follows is drawn in green (when it is in the top k)."""
    L = len(view.labels)
    if not 0 <= pos < L:
        raise ValueError(f"pos must be in 0..{L - 1}, got {pos}")
    ids, probs = view.topk_ids[pos], view.topk_probs[pos]
    actual = int(view.ids[pos + 1]) if pos + 1 < L else None
    names = [byte_value(i) for i in ids]
    colours = [OK if actual is not None and int(i) == actual else HEADS[0] for i in ids]
    fig = go.Figure(go.Bar(x=probs, y=list(range(len(ids))), orientation="h", marker_color=colours,
                           customdata=names, hovertemplate="%{customdata}<br>p = %{x:.3g}<extra></extra>",
                           text=[f"{p:.1%}" for p in probs], textposition="outside"))
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(ids))), ticktext=names, autorange="reversed",
                     title_text="next byte")
    fig.update_xaxes(title_text="probability", range=[0, 1.1], tickformat=".0%")
    if actual is None:
        sub = "the last position: the text has no next byte"
    else:
        sub = (f"actual next byte {byte_value(view.ids[pos + 1])}: p = {view.target_prob[pos]:.3g}, "
               f"loss {view.loss_bits[pos]:.2f} bits")
    return _layout(fig, f"Top {len(ids)} next bytes after position {pos} ({byte_value(view.ids[pos])})",
                   140 + 34 * len(ids), sub)


# ---- token influence ---------------------------------------------------------------------------
def _log_influence(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """log10 of a non-negative map, clipped LOG_DECADES below its maximum; NaN kept."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v) & (v > 0)]
    top = float(np.log10(finite.max())) if finite.size else 0.0
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
    padded = np.full(z.shape[:-2] + (n * f, n * f), -np.inf, dtype=z.dtype)
    padded[..., :L, :L] = z
    np.copyto(padded[..., :L, :L], -np.inf, where=np.isnan(z))
    pooled = padded.reshape(z.shape[:-2] + (n, f, n, f)).max(axis=(-3, -1))
    return np.where(np.isneginf(pooled), np.nan, pooled), f


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
    what = "float rounding: no token hears the future" if rel < 1e-6 else "LEAK: earlier predictions depend on later bytes"
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
    fig = go.Figure(go.Heatmap(z=_round(z, 3), colorscale=MAGNITUDE, zmin=zmin, zmax=zmax,
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
    fig.update_xaxes(title_text="input position j", range=[-0.5, L - 0.5], **_token_ticks(m.labels), **spikes)
    fig.update_yaxes(title_text="prediction after position i (of position i+1)", range=[L - 0.5, -0.5],
                     **_token_ticks(m.labels), **spikes)
    where = "the input embeddings" if m.layer is None else f"the residual stream entering block {m.layer}"
    sub = f"gradient of each prediction w.r.t. {where}<br>{influence_verdict(m.upper_max, m.scale, '<br>')}"
    if f > 1:
        sub += f"<br>each cell is the largest of {f} × {f} entries (the hover gives their positions)"
    default = "Token influence map" + ("" if m.layer is None else f" from block {m.layer} on")
    return _layout(fig, esc(title or default), min(900, 260 + 12 * L), sub)


def influence_strip_figure(m, row: int) -> go.Figure:
    """One row of the influence map over the text: how much the byte at each position j moves the
    prediction made after position `row` (of position row+1), colour log10 of the gradient norm; the predicting position
    is outlined. Bytes after it should be (near) zero in a causal model."""
    values = np.asarray(m.values)
    L = values.shape[0]
    if not 0 <= row < L:
        raise ValueError(f"row must be in 0..{L - 1}, got {row}")
    z, zmin, zmax = _log_influence(values[:-1] if L > 1 else values)
    hover = [f"position {j}: byte value {byte_value(m.ids[j])}<br>‖∂ log p / ∂e‖ = "
             + ("n/a" if not np.isfinite(values[row, j]) else f"{values[row, j]:.3g}") for j in range(L)]
    line = z[row] if row < z.shape[0] else np.full(L, np.nan)
    fig = _text_heatmap(m.labels, line, hover, "log10 influence", zmin=zmin, zmax=zmax, marked=[row], ids=m.ids)
    if row + 1 < L:
        sub = (f"the prediction of position {row + 1} ({byte_value(m.ids[row + 1])}); the outlined byte is the last "
               "one a causal model may read")
    else:
        sub = "the last byte has no next byte to predict"
    return _layout(fig, f"What the prediction after position {row} ({byte_value(m.ids[row])}) depends on",
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
    ticks = _token_ticks(labels, MAX_TICK_LABELS // 2)
    bottom = {h % cols: h for h in range(H)}  # the lowest panel of each column shows the positions
    # every panel's axes match those of the bottom-left panel (one zoom for all heads), which has titles
    ref = fig.get_subplot(bottom[0] // cols + 1, 1)
    match_x, match_y = ref.yaxis.anchor, ref.xaxis.anchor  # an axis is anchored on the other: "x3", "y3"
    for h in range(H):
        r, c = h // cols + 1, h % cols + 1
        fig.add_heatmap(z=_round(z[h], 3), colorscale=MAGNITUDE, zmin=zmin, zmax=zmax, showscale=h == 0,
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
    return _layout(fig, f"Block {layer} mixing matrices per head", 160 + 360 * nrows, sub, gap=24)


# ---- training record ---------------------------------------------------------------------------
def training_curve_figure(loss_curve: Sequence, val_curve: Sequence = ()) -> go.Figure:
    """Training loss and validation bits per byte against the step, from a checkpoint's training
    record: sequences of (step, value) pairs (both in bits per byte)."""
    fig = go.Figure()
    for curve, name, colour, mode in ((loss_curve, "training loss", HEADS[0], "lines"),
                                      (val_curve, "validation", HEADS[1], "lines+markers")):
        pts = np.asarray(curve, dtype=np.float64).reshape(-1, 2) if len(curve) else np.zeros((0, 2))
        fig.add_scatter(x=pts[:, 0], y=pts[:, 1], mode=mode, name=name, line=dict(color=colour, width=2),
                        hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.4f}} bits/byte<extra></extra>")
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="loss (bits/byte)")
    return _layout(fig, "Training record", 340)


# ---- compare -----------------------------------------------------------------------------------
def compare_figure(d, name_a: str, name_b: str) -> go.Figure:
    """Two checkpoints' filters, one block (`compare.LayerDiff`): |H| difference in dB, b − a,
    heads x frequency (signed, centred at 0), with gates that changed state marked."""
    H = d.db_diff.shape[0]
    zmax = float(np.max(np.abs(d.db_diff))) or 1.0
    fig = go.Figure(go.Heatmap(
        z=_round(d.db_diff, 2), x=d.freqs, y=list(range(H)), colorscale=SIGNED, reversescale=True, zmid=0.0,
        zmin=-zmax, zmax=zmax, colorbar=dict(title=dict(text="Δ|H| (dB)")),
        hovertemplate="head %{y}<br>f = %{x:.4f}<br>b − a: %{z:.1f} dB<extra></extra>"))
    if d.opened is not None:
        for mask, name, symbol in ((d.opened, "gate opened in b", "triangle-up"),
                                   (d.closed, "gate closed in b", "triangle-down")):
            h, k = np.nonzero(mask)
            if h.size:
                fig.add_scatter(x=d.freqs[k], y=h, mode="markers", name=name,
                                marker=dict(symbol=symbol, size=6, color="black"),
                                hovertemplate=f"{name}<br>head %{{y}}<br>f = %{{x:.4f}}<extra></extra>")
    ticks = [f"head {h} (kernel {100 * float(d.kernel_rel_change[h]):.0f}% changed)" for h in range(H)]
    fig.update_yaxes(title_text="head", tickmode="array", tickvals=list(range(H)), ticktext=ticks, autorange="reversed")
    fig.update_xaxes(title_text="frequency f (cycles/token)")
    # the names go in the subtitle, which wraps: a title of two long file names is clipped at 900 px
    return _layout(fig, "Filter difference, B − A", 180 + 40 * H,
                   f"B {esc(name_b)} − A {esc(name_a)}; {int(np.sum(d.n_changed))} gate(s) changed state "
                   "(red: louder in B, blue: quieter)")


# ---- attribution methods (caracal_viz.attribution) ----------------------------------------------
def attribution_strip_figure(rep, method: str) -> go.Figure:
    """One method's scores for one prediction (`attribution.AttributionReport`) over the text, in
    the byte view of `influence_strip_figure`: signed methods on a diverging scale centred at 0
    (red: the byte raises log p of the target), the gradient norm and the linear path by their
    magnitude; the predicting position outlined. The subtitle gives the unit, the largest score
    after the prediction (measured, nothing masked) and, for integrated gradients, Captum's
    convergence delta."""
    from .attribution import METHOD_NAMES, UNSIGNED

    a = rep.methods[method]
    signed = method not in UNSIGNED
    values = a.signed if signed else a.absolute
    top = float(np.max(np.abs(values))) or 1.0
    hover = [f"position {j}: {show_label(rep.labels[j])}<br>{'score' if signed else 'magnitude'} {values[j]:.3g} "
             f"({a.unit})<br>share of the row {a.normalised[j]:.1%}" for j in range(len(rep.labels))]
    fig = _text_heatmap(rep.labels, values, hover, "score" if signed else "magnitude",
                        zmin=-top if signed else 0.0, zmax=top, marked=[rep.position], signed=signed)
    rel = a.future_rel
    future = (f"after the prediction: max {a.future_max:.2g} ({rel:.2g} of the largest earlier score)"
              + (", rounding" if rel < 1e-6 else ", READS THE FUTURE"))
    sub = f"{a.unit}; {future}"
    if a.delta is not None:
        sub += (f"; completeness: sum {np.sum(a.signed):.4g} vs f(x) − f(baseline) "
                f"{rep.logp - rep.logp_baseline:.4g}, Captum's delta {a.delta:.2g} ({a.steps} steps)")
    return _layout(fig, f"{METHOD_NAMES[method].capitalize()}: prediction after position {rep.position}",
                   fig.layout.height, sub, bottom=fig.layout.margin.b)


def faithfulness_figure(rep) -> go.Figure:
    """Deletion (solid) and insertion (dashed) curves of every method and of the random-order
    baseline (grey, the mean of its orders), one legend entry per method (below the plot: it
    leaves the plot its width in a narrow column) for one prediction (`attribution.AttributionReport`):
    log p of the target byte against the number of bytes replaced by (deletion) or restored from
    (insertion) the baseline byte. The k axis is drawn at even spacing (the curve's points grow
    by about sqrt(2) each), labelled with k."""
    from .attribution import METHOD_NAMES

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
    return _layout(fig, "Deletion and insertion curves", 520, sub, bottom=110)


# ---- interventions -----------------------------------------------------------------------------
def loss_change_figure(res) -> go.Figure:
    """The text, each byte coloured by the loss change (bits, after - before) an intervention
    caused on its prediction (`interventions.InterventionResult`): byte t gets the change of
    -log2 p(x_t | x_<t); RdBu centred at zero (red: harder to predict, blue: easier)."""
    L = len(res.labels)
    change = res.loss_change
    values = np.full(L, np.nan)
    values[1:] = change[:-1]
    hover = []
    for t in range(L):
        head = f"position {t}: {show_label(res.labels[t])}"
        if t == 0:
            hover.append(head + "<br>first byte: not predicted")
            continue
        hover.append(f"{head}<br>loss {res.loss_before[t - 1]:.2f} -> {res.loss_after[t - 1]:.2f} bits "
                     f"({change[t - 1]:+.2f})")
    finite = np.abs(values[np.isfinite(values)])
    top = float(max(0.5, finite.max())) if finite.size else 1.0
    fig = _text_heatmap(res.labels, values, hover, "loss change (bits)", zmin=-top, zmax=top, signed=True,
                        marked=[res.position])
    return _layout(fig, "Loss change per byte", fig.layout.height,
                   f"{esc(res.description)}: {res.bits_before:.3f} -> {res.bits_after:.3f} bits/byte "
                   f"({res.delta_bits:+.3f}); boxed: position {res.position}", bottom=fig.layout.margin.b)


def topk_change_figure(before: Sequence, after: Sequence, pos: int, label: str) -> go.Figure:
    """The top-k next bytes after position `pos` before and after an intervention, as grouped
    horizontal bars over the union of both lists. before/after: (label, probability) pairs."""
    p0, p1 = dict(before), dict(after)
    names = list(dict.fromkeys([lab for lab, _ in before] + [lab for lab, _ in after]))
    fig = go.Figure()
    for which, probs, colour in (("before", p0, HEADS[0]), ("after", p1, FUTURE)):
        x = [probs.get(n, np.nan) for n in names]
        fig.add_bar(x=x, y=[show_label(n) for n in names], orientation="h", name=which, marker_color=colour,
                    hovertemplate="%{y}: p = %{x:.3g}<extra>" + which + "</extra>")
    fig.update_yaxes(autorange="reversed", title_text="next byte", type="category")
    fig.update_xaxes(title_text="probability", range=[0, 1.05], tickformat=".0%")
    fig.update_layout(barmode="group")
    return _layout(fig, f"Top next bytes after position {pos} ({show_label(label)})", 160 + 30 * len(names),
                   "before and after the intervention; a missing bar: not in that top list")


def sweep_figure(sw) -> go.Figure:
    """Bits/byte added by each ablation of a sweep (`interventions.SweepResult`): rows are
    (block, head), the first column zeroes the head, the others stop one band of its learned
    spectrum (log-spaced, frequency and period in the column names). RdBu centred at zero.
    Invisible points over the cells carry (layer, head, band index or -1) for clicks."""
    n, H, nb = sw.band_delta.shape
    edges = sw.band_edges
    cols = ["head zeroed"] + [f"{edges[b]:.3g}-{edges[b + 1]:.3g}<br>(T {1 / edges[b + 1]:.3g}-"
                              + ("∞" if edges[b] == 0 else f"{1 / edges[b]:.3g}") + ")" for b in range(nb)]
    z = np.concatenate([sw.head_delta[..., None], sw.band_delta], axis=-1).reshape(n * H, nb + 1)
    rows = [f"block {k} head {h}" for k in range(n) for h in range(H)]
    finite = np.abs(z[np.isfinite(z)])
    top = float(max(1e-3, finite.max())) if finite.size else 1.0
    fig = go.Figure(go.Heatmap(z=_round(z, 5), x=list(range(nb + 1)), y=list(range(n * H)), colorscale=SIGNED,
                               reversescale=True, zmid=0, zmin=-top, zmax=top, hoverinfo="skip", xgap=1, ygap=1,
                               colorbar=dict(title=dict(text="bits/byte added"), thickness=14)))
    xs, ys, data, tips = [], [], [], []
    for r in range(n * H):
        for c in range(nb + 1):
            xs.append(c)
            ys.append(r)
            data.append([r // H, r % H, c - 1])
            value = "n/a" if not np.isfinite(z[r, c]) else f"{z[r, c]:+.4f} bits/byte"
            tips.append(f"{rows[r]}, {cols[c].replace('<br>', ' ')}: {value}<br>click to apply")
    add_pick_layer(fig, xs, ys, data, tips)
    fig.update_xaxes(tickmode="array", tickvals=list(range(nb + 1)), ticktext=cols,
                     title_text="ablation (band in cycles/token, T = period in tokens)")
    fig.update_yaxes(tickmode="array", tickvals=list(range(n * H)), ticktext=rows, autorange="reversed")
    return _layout(fig, "Which heads and frequencies this text needs", 140 + 22 * n * H,
                   f"bits/byte added to {sw.bits_clean:.3f} by zeroing each head or stopping one band of its "
                   "learned spectrum", bottom=90)


def patching_figure(p) -> go.Figure:
    """Activation patching (`interventions.PatchingResult`): for each block (rows) and patched
    position (columns), the fraction of the clean prediction at `p.position` restored (1: all)."""
    n, L = p.restored.shape
    z = p.restored if np.isfinite(p.restored).any() else np.zeros_like(p.loss_bits)
    fig = go.Figure(go.Heatmap(
        z=_round(z, 4), x=list(range(L)), y=list(range(n)), colorscale=SIGNED, reversescale=True, zmid=0,
        zmin=-1, zmax=1,
        customdata=np.round(p.loss_bits, 4), colorbar=dict(title=dict(text="restored"), thickness=14),
        hovertemplate="block %{y}, position %{x}: restored %{z:.3f} (loss %{customdata:.3f} bits)<extra></extra>"))
    fig.update_xaxes(title_text="patched position", **_token_ticks(p.corrupted_labels))
    fig.update_yaxes(title_text=f"block ({p.hook})", tickmode="array", tickvals=list(range(n)), autorange="reversed")
    return _layout(fig, f"Activation patching: clean {p.hook} into the corrupted run", 160 + 40 * n,
                   f"prediction after position {p.position}: clean {p.clean_bits:.2f} bits, corrupted "
                   f"{p.corrupted_bits:.2f} bits")
