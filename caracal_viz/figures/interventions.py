"""Interventions: per-byte loss change, top-k before and after, the head x band sweep and
activation patching (`caracal_viz.interventions`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .. import binning
from .style import FUTURE, HEADS, SIGNED, add_pick_layer, esc, layout, rounded, show_label, token_ticks
from .text import binned_text_heatmap, by_predicted_byte, text_heatmap


def loss_change_figure(res) -> go.Figure:
    """The text, each byte coloured by the loss change (bits, after - before) an intervention
    caused on its prediction (`interventions.InterventionResult`): byte t gets the change of
    -log2 p(x_t | x_<t); RdBu centred at zero (red: harder to predict, blue: easier). A text over
    binning.TEXT_CELLS bytes is drawn in bins of consecutive bytes, each the mean change of its
    bytes (`binned_text_heatmap`), and the subtitle says so."""
    change = res.loss_change
    if len(res.labels) > binning.TEXT_CELLS:
        # the colour range from the bins' means (zmid 0), not from the largest single byte's change:
        # one byte's +4 bits would leave every bin's mean pale
        fig, b = binned_text_heatmap(np.concatenate([[np.nan], change[:-1]]), None, "loss change", signed=True,
                                     marked=[res.position], labels=res.labels)
        return layout(fig, "Loss change per byte, binned", fig.layout.height,
                      f"{esc(res.description)}: {res.bits_before:.3f} -> {res.bits_after:.3f} bits/byte "
                      f"({res.delta_bits:+.3f}); each cell: the mean change of {b.width} consecutive bytes; "
                      f"boxed: the bin of position {res.position}", bottom=fig.layout.margin.b)
    values, hover = by_predicted_byte(
        change, lambda t: f"position {t}: {show_label(res.labels[t])}", "first byte: not predicted",
        lambda i: f"loss {res.loss_before[i]:.2f} -> {res.loss_after[i]:.2f} bits ({change[i]:+.2f})")
    finite = np.abs(values[np.isfinite(values)])
    top = float(max(0.5, finite.max())) if finite.size else 1.0
    fig = text_heatmap(res.labels, values, hover, "loss change (bits)", zmin=-top, zmax=top, signed=True,
                       marked=[res.position])
    return layout(fig, "Loss change per byte", fig.layout.height,
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
    return layout(fig, f"Top next bytes after position {pos} ({show_label(label)})", 160 + 30 * len(names),
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
    fig = go.Figure(go.Heatmap(z=rounded(z, 5), x=list(range(nb + 1)), y=list(range(n * H)), colorscale=SIGNED,
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
    return layout(fig, "Which heads and frequencies this text needs", 140 + 22 * n * H,
                  f"bits/byte added to {sw.bits_clean:.3f} by zeroing each head or stopping one band of its "
                  "learned spectrum", bottom=90)


def patching_figure(p) -> go.Figure:
    """Activation patching (`interventions.PatchingResult`): for each block (rows) and patched
    position (columns), the fraction of the clean prediction at `p.position` restored (1: all)."""
    n, L = p.restored.shape
    z = p.restored if np.isfinite(p.restored).any() else np.zeros_like(p.loss_bits)
    fig = go.Figure(go.Heatmap(
        z=rounded(z, 4), x=list(range(L)), y=list(range(n)), colorscale=SIGNED, reversescale=True, zmid=0,
        zmin=-1, zmax=1,
        customdata=np.round(p.loss_bits, 4), colorbar=dict(title=dict(text="restored"), thickness=14),
        hovertemplate="block %{y}, position %{x}: restored %{z:.3f} (loss %{customdata:.3f} bits)<extra></extra>"))
    fig.update_xaxes(title_text="patched position", **token_ticks(p.corrupted_labels))
    fig.update_yaxes(title_text=f"block ({p.hook})", tickmode="array", tickvals=list(range(n)), autorange="reversed")
    return layout(fig, f"Activation patching: clean {p.hook} into the corrupted run", 160 + 40 * n,
                  f"prediction after position {p.position}: clean {p.clean_bits:.2f} bits, corrupted "
                  f"{p.corrupted_bits:.2f} bits")
