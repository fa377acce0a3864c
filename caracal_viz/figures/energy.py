"""Parseval energy: time vs frequency energy per block, the energy spectral density, energy by
band of period and the gain per band (`caracal_viz.energy`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .. import binning
from .style import FUTURE, HEADS, MAGNITUDE, SIGNED, esc, finite_or_none, head_colour, head_list, layout, rounded
from plotly.subplots import make_subplots


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
    return layout(fig, f"Parseval's identity per block and head: {verdict}", 440,
                  f"largest relative difference {rep.max_rel_error:.2g} (tolerance {rep.tolerance:.0e})")


def esd_figure(e, head: int | None = None, title: str | None = None) -> go.Figure:
    """Energy spectral density of one block's FFT input and output (`energy.LayerEnergy`),
    Parseval-scaled: the bins add up to the time-domain energy. One head, or (head None) small
    multiples, a panel per head on one shared log axis, so eight overlapping lines stay apart.
    Over more than binning.MAX_BINS bins (a text longer than about 2,048 bytes) each point is the
    mean energy per bin of a band of adjacent bins, at the band's mean frequency (the subtitle
    says so): a long text's spectrum, drawn bin by bin, is megabytes of JSON."""
    H = e.esd_input.shape[0]
    width = binning.bin_width(e.freqs.size)
    esd_in, esd_out, freqs = (binning.mean_bins(a, width).values for a in (e.esd_input, e.esd_output, e.freqs))
    heads = head_list(H, head)
    cols = 1 if head is not None else min(2, H)
    rows = -(-len(heads) // cols)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.0,
                        subplot_titles=[f"head {h}" for h in heads] if head is None else None)
    for n, h in enumerate(heads):
        c, r, k = head_colour(h), n // cols + 1, n % cols + 1
        fig.add_scatter(x=freqs, y=finite_or_none(esd_in[h]), mode="lines", name="input" if n == 0 else None,
                        legendgroup="input", showlegend=n == 0, line=dict(color="#999999", width=1.2, dash="dot"),
                        hovertemplate=f"head {h} input<br>f = %{{x:.4f}}<br>%{{y:.4g}}<extra></extra>", row=r, col=k)
        fig.add_scatter(x=freqs, y=finite_or_none(esd_out[h]), mode="lines",
                        name="output" if n == 0 else None, legendgroup="output", showlegend=n == 0,
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} output<br>f = %{{x:.4f}}<br>%{{y:.4g}}<extra></extra>", row=r, col=k)
    fig.update_xaxes(title_text="frequency f (cycles/token)", row=rows)
    fig.update_yaxes(type="log", exponentformat="e")
    fig.update_yaxes(title_text="energy per bin", col=1)
    which = "every head" if head is None else f"head {head}"
    return layout(fig, esc(title or f"Energy spectral density, {which}"), 380 if head is not None else 120 + 230 * rows,
                  "grey dotted: into the FFT mixing (value stream); colour: out of it (before the output projection)"
                  + ("" if width == 1 else f"; binned: each point the mean of {width} adjacent frequency bins"),
                  gap=10 if head is None else 0)


def energy_bands_figure(b) -> go.Figure:
    """Where each head's energy goes (`energy.EnergyBands`), one row per block and head: the share
    of its input and of its output energy in each band of period (in %), and its energy gain
    (dB; bars coloured by the verdict: amplifies, attenuates, keeps)."""
    names = [f"block {i} head {h}" for i, h in b.rows]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, column_widths=[0.38, 0.38, 0.24], horizontal_spacing=0.03,
                        subplot_titles=("input energy<br>by band", "output energy<br>by band", "energy<br>gain (dB)"))
    for col, frac in ((1, b.input_fraction), (2, b.output_fraction)):
        fig.add_heatmap(z=rounded(frac, 4), x=list(b.names), y=names, colorscale=MAGNITUDE, zmin=0, zmax=1,
                        text=np.vectorize(lambda v: "" if not np.isfinite(v) else f"{v:.0%}")(frac),
                        texttemplate="%{text}", showscale=col == 1, row=1, col=col,
                        colorbar=dict(title=dict(text="share"), tickformat=".0%", len=0.8),
                        hovertemplate="%{y}<br>%{x}<br>%{z:.1%} of the energy<extra></extra>")
    colour = {"amplifies": FUTURE, "attenuates": HEADS[0], "keeps": "#999999", "n/a": "#999999"}
    fig.add_bar(x=finite_or_none(rounded(b.gain_db, 2)), y=names, orientation="h", row=1, col=3, showlegend=False,
                marker_color=[colour[v] for v in b.verdict], customdata=b.verdict,
                hovertemplate="%{y}: %{x:.1f} dB, %{customdata}<extra></extra>")
    fig.add_vline(x=0, line=dict(color="black", width=1), row=1, col=3)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-30, row=1, col=1)
    fig.update_xaxes(tickangle=-30, row=1, col=2)
    counts = {v: b.verdict.count(v) for v in ("amplifies", "attenuates", "keeps")}
    sub = (f"{counts['amplifies']} head(s) amplify (red), {counts['attenuates']} attenuate (blue), {counts['keeps']} keep "
           f"their energy (grey: within ±{b.keep_db:g} dB); bands by period 1/f")
    return layout(fig, "Where the energy goes: each head's energy by band of period", 200 + 26 * len(names), sub,
                  gap=30, bottom=110)  # gap: two-line panel titles, short enough for a 900 px window


def energy_gain_figure(rep) -> go.Figure:
    """Energy gain of every block and head over frequency (`energy.ParsevalReport`): 10 log10 of
    output ESD / input ESD, signed colours centred at 0 dB (red: amplified, blue: attenuated).
    Over more than binning.MAX_BINS frequency bins (a text longer than about 2,048 bytes), each
    column is a band of adjacent bins (`LayerEnergy.gain_bins`: the band's output energy over its
    input energy) at the band's mean frequency; the subtitle says so."""
    rows, names, width = [], [], 1
    freqs = None
    for i, e in enumerate(rep.layers):
        if e is None:
            continue
        bins = e.gain_bins()
        width = bins.width
        freqs = binning.mean_bins(e.freqs, width).values  # each band at its mean frequency
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.extend(10 * np.log10(bins.values))
        names.extend(f"block {i} head {h}" for h in range(bins.values.shape[0]))
    fig = go.Figure()
    if rows:
        z = np.array(rows)
        finite = z[np.isfinite(z)]
        zmax = float(np.max(np.abs(finite))) if finite.size else 1.0
        z = np.where(np.isfinite(z), z, np.nan)
        where = "f = %{x:.4f}" if width == 1 else f"band of {width} bins around f = %{{x:.4f}}"
        fig.add_heatmap(z=rounded(z, 2), x=freqs, y=names, colorscale=SIGNED, reversescale=True,
                        zmid=0.0, zmin=-zmax, zmax=zmax, colorbar=dict(title=dict(text="gain (dB)")),
                        hovertemplate=f"%{{y}}<br>{where}<br>gain %{{z:.1f}} dB<extra></extra>")
        fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="frequency f (cycles/token)")
    fig.update_yaxes(title_text="block and head")
    sub = None if width == 1 else (f"binned: each column is a band of {width} adjacent frequency bins, its output "
                                   "energy over its input energy")
    return layout(fig, "Energy gain of each head over frequency (output / input ESD)", 140 + 22 * max(len(names), 4),
                  sub)
