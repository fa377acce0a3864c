"""Text views (bytes coloured by a value, one character over the bytes it spans), the top-k next
bytes, the training record: the Overview's figures, and the byte wording every view uses."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from .. import binning
from ..text import utf8_spans
from .style import FUTURE, HEADS, MAGNITUDE, OK, SIGNED, add_pick_layer, esc, layout, rounded, show_label


TEXT_WIDTH = 48  # tokens per line in the text views
BIN_COLUMNS = 64  # bins per line in the binned text views (a long text's 1,024 bins: 16 lines)
TEXT_BOX_PX = 640  # a text view taller than this scrolls inside a box this high (pages: show_figure's max_height)
CBAR_MIN_PX = 160  # a colour bar (its title and padding included) shorter than this shows one or two ticks


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


def text_grid(labels: Sequence[str], width: int = TEXT_WIDTH,
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


def text_heatmap(labels: Sequence[str], values: np.ndarray, hover: Sequence[str], colourbar: str,
                 zmin: float | None = None, zmax: float | None = None, marked: Sequence[int] = (),
                 signed: bool = False, ids: Sequence[int] | None = None) -> go.Figure:
    """Tokens as cells of a text-shaped grid coloured by values (L,) (NaN: uncoloured); `signed`:
    a diverging scale centred at 0 (red positive, blue negative). With the
    byte `ids`, a character of several UTF-8 bytes is drawn once, centred over its bytes' cells
    (which keep their own colours), and each of those cells' hovers starts with the character,
    its positions and byte values (`char_hover`) and its word in context."""
    spans = utf8_spans(ids) if ids is not None else [(i, i + 1, None) for i in range(len(labels))]
    rows, cols = text_grid(labels, spans=spans)
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
        z=rounded(z, 4), text=text, texttemplate="%{text}", textfont=dict(size=13, family="monospace"),
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


def by_predicted_byte(per_prediction: np.ndarray, head, first: str, detail) -> tuple[np.ndarray, list[str]]:
    """A per-prediction quantity laid out by the byte it predicts, for `text_heatmap`: byte t
    shows the value of the prediction made after byte t-1; byte 0, which nothing predicts, NaN.
    per_prediction: (L,) by the predicting position (its last entry, after the last byte, unused).
    Hover of byte t: head(t), then `first` for byte 0 and detail(t - 1) for the others (the
    prediction's index)."""
    L = len(per_prediction)
    values = np.full(L, np.nan)
    values[1:] = per_prediction[:-1]
    hover = [f"{head(0)}<br>{first}"] + [f"{head(t)}<br>{detail(t - 1)}" for t in range(1, L)]
    return values, hover


def token_loss_figure(view) -> go.Figure:
    """The text, each byte coloured by the model's loss on it in bits (`predict.NextTokenView`):
    byte t gets -log2 p(x_t | x_<t), so the first byte is uncoloured; the hover lists what the
    model expected there instead. A long text (`view.binned`) is drawn in bins instead
    (`binned_loss_figure`)."""
    if view.binned:
        return binned_loss_figure(view)
    L = len(view.labels)

    def detail(i: int) -> str:
        guesses = ", ".join(f"{show_label(lab)} {p:.0%}" for lab, p in zip(view.topk_labels[i], view.topk_probs[i]))
        return f"loss {view.loss_bits[i]:.2f} bits (p = {view.target_prob[i]:.3g})<br>expected: {guesses}"

    values, hover = by_predicted_byte(view.loss_bits, lambda t: f"position {t}: byte value {byte_value(view.ids[t])}",
                                      "first byte: nothing before it to predict it from", detail)
    finite = values[np.isfinite(values)]
    fig = text_heatmap(view.labels, values, hover, "loss (bits)", zmin=0.0,
                       zmax=float(max(8.0, finite.max())) if finite.size else 8.0, ids=view.ids)
    mean = "n/a" if not np.isfinite(view.mean_bits) else f"{view.mean_bits:.3f} bits/byte"
    note = "" if view.causal else "; NOT causal: these predictions read the future"
    return layout(fig, "Loss per byte", fig.layout.height, f"mean {mean} over {max(L - 1, 0)} predictions{note}",
                  bottom=fig.layout.margin.b)


def binned_text_heatmap(per_byte: np.ndarray, ids: Sequence[int] | None, what: str, unit: str = "bits",
                        signed: bool = False, zmin: float | None = None, zmax: float | None = None,
                        marked: Sequence[int] = (), labels: Sequence[str] | None = None) -> tuple[go.Figure, binning.Bins]:
    """A long text's per-byte values (L,) (NaN: none, e.g. byte 0's loss) in bins of consecutive
    bytes (`binning.mean_bins` of `binning.bin_width(L)`), BIN_COLUMNS bins a line read like text
    (the y axis names each line's first position): each cell the mean of its bytes' finite values
    (`signed`: RdBu centred at 0). The hover gives the bin's positions, its mean and its largest
    value (`what`, in `unit`) and its first bytes as text (decoded from `ids`, or without them
    the bytes' printable `labels` joined); a click selects the bin's first
    position; the bins holding `marked` positions are boxed. Returns the figure (no title) and the bins."""
    per_byte = np.asarray(per_byte, dtype=np.float64)
    b = binning.mean_bins(per_byte, binning.bin_width(per_byte.size))
    m = b.values.size
    with np.errstate(invalid="ignore"):
        largest = np.fmax.reduceat(per_byte, b.starts) if m else per_byte[:0]
    rows, cols = np.divmod(np.arange(m), BIN_COLUMNS)
    R = int(rows.max()) + 1 if m else 1
    z = np.full((R, BIN_COLUMNS if m > BIN_COLUMNS else max(m, 1)), np.nan)
    z[rows, cols] = b.values
    raw = bytes(int(i) for i in ids) if ids is not None else None

    def start_of(a: int) -> str:
        piece = raw[a:a + 24].decode("utf-8", errors="replace") if raw is not None else "".join(labels[a:a + 24])
        return "\u2068" + esc(piece.replace("\n", "↵")) + "\u2069"

    tips = [f"positions {a}–{e - 1}: mean {what} "
            + ("n/a" if not np.isfinite(v) else f"{v:+.2f}" if signed else f"{v:.2f}") + f" {unit}"
            + ("" if not np.isfinite(mx) else f", largest {mx:.2f}") + f"<br>starts: {start_of(a)}"
            for a, e, v, mx in zip(b.starts.tolist(), b.ends.tolist(), b.values, largest)]
    rows_px = max(90, 30 * R)
    bar = int(np.clip(rows_px, CBAR_MIN_PX, TEXT_BOX_PX - 140))
    fig = go.Figure(go.Heatmap(
        z=rounded(z, 4), hoverinfo="skip", colorscale=SIGNED if signed else MAGNITUDE, reversescale=signed,
        zmid=0.0 if signed else None, zmin=zmin, zmax=zmax, xgap=0, ygap=1,  # 64 cells in a 220 px column
        colorbar=dict(title=dict(text=f"mean {what} ({unit})"), lenmode="pixels", len=bar, y=1.0, yanchor="top",
                      thickness=14)))
    add_pick_layer(fig, cols, rows, b.starts, tips)
    for k in sorted({int(i) // b.width for i in marked if 0 <= int(i) < per_byte.size}):
        fig.add_shape(type="rect", x0=cols[k] - 0.5, x1=cols[k] + 0.5, y0=rows[k] - 0.5, y1=rows[k] + 0.5,
                      line=dict(color=FUTURE, width=3))
    fig.update_xaxes(visible=False, range=[-0.5, z.shape[1] - 0.5])
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(range(R)),
                     ticktext=[f"{r * BIN_COLUMNS * b.width:,}" for r in range(R)], title_text="first position")
    bottom = 20 + max(0, bar - rows_px)
    fig.update_layout(height=90 + bottom + rows_px, margin=dict(b=bottom))
    return fig, b


def binned_loss_figure(view) -> go.Figure:
    """The loss per byte of a long text (`predict.NextTokenView`, byte t's loss is loss_bits[t-1])
    in bins of consecutive bytes (`binned_text_heatmap`; the same bins as `view.loss_bins()`)."""
    L = len(view.ids)
    fig, b = binned_text_heatmap(np.concatenate([[np.nan], view.loss_bits[:-1]]), view.ids, "loss", zmin=0.0,
                                 zmax=float(max(8.0, np.nanmax(view.loss_bits))) if L > 1 and
                                 np.isfinite(view.loss_bits).any() else 8.0)
    mean = "n/a" if not np.isfinite(view.mean_bits) else f"{view.mean_bits:.3f} bits/byte"
    note = "" if view.causal else "; NOT causal: these predictions read the future"
    return layout(fig, "Loss per byte, binned", fig.layout.height,
                  f"mean {mean} over {max(L - 1, 0):,} predictions{note}; each cell: the mean loss of {b.width} "
                  f"consecutive bytes ({b.values.size:,} bins of the {L:,})", bottom=fig.layout.margin.b)


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
    return layout(fig, f"Top {len(ids)} next bytes after position {pos} ({byte_value(view.ids[pos])})",
                  140 + 34 * len(ids), sub)


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
    return layout(fig, "Training record", 340)
