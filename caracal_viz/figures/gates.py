"""modReLU gates: open gates by head and frequency, the energy they pass, dead heads per block
(`caracal_viz.gates`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ..results import DEAD_OPEN_FRACTION
from .style import FUTURE, HEADS, MAGNITUDE, NO_DATA, esc, freq_axis, layout, mark_periods, rounded, threshold_line


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


def _head_axes(fig: go.Figure, g, xaxis: dict, axis: str, periods: Sequence[float]) -> None:
    """A heads x frequency gate map's axes: dead heads dotted in vermilion, the known periods, the
    frequency axis `xaxis` (from freq_axis) and one row per head, head 0 on top."""
    H = g.bias.shape[0]
    for h in np.flatnonzero(g.dead):
        fig.add_hline(y=float(h), line=dict(color=FUTURE, width=2, dash="dot"))
    mark_periods(fig, periods, axis)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(title_text="head", tickmode="array", tickvals=list(range(H)), ticktext=_gate_heads(g),
                     autorange="reversed")


def gate_map_figure(g, title: str | None = None, axis: str = "frequency", periods: Sequence[float] = ()) -> go.Figure:
    """modReLU gates of one block (`gates.LayerGates`), heads x frequency: open (1) or closed
    (0); with a text, the fraction of gates open for it (fftnet, per bin). Dead heads marked.
    axis: one of FREQ_AXES (log frequency and period leave out f = 0); periods: the task's known
    periods, marked as lines."""
    H = g.bias.shape[0]
    z = g.open.astype(float) if g.data_open is None else g.data_open
    x, keep, xaxis = freq_axis(g.freqs, axis)
    fig = go.Figure(go.Heatmap(
        z=rounded(z[:, keep], 3), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=0.0, zmax=1.0,
        colorbar=dict(title=dict(text="open"), tickvals=[0, 0.5, 1], ticktext=["closed", "half", "open"]),
        customdata=np.stack([rounded(g.magnitude, 4), rounded(g.bias, 4),
                             np.broadcast_to(g.freqs, g.bias.shape)], axis=-1)[:, keep],
        hovertemplate=_gate_hover(axis, "open %{z:.0%}<br>|z| = %{customdata[0]:.3g}, b = %{customdata[1]:.3g}", 2)
                      + "<extra></extra>"))
    _head_axes(fig, g, xaxis, axis, periods)
    n_dead = int(g.dead.sum())
    sub = f"open where |z| + b > 0; {n_dead} dead head(s) (open on at most 5% of bins)" if n_dead \
        else "open where |z| + b > 0; no dead heads"
    return layout(_no_data(fig, g), esc(title or f"modReLU gates ({g.kind})"), 150 + 40 * H,
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
        z=rounded(z, 2), x=x, y=list(range(H)), colorscale=MAGNITUDE, zmin=zmax - 80, zmax=zmax,
        colorbar=dict(title=dict(text=ztitle)),
        customdata=np.broadcast_to(np.asarray(g.freqs)[keep], (H, int(keep.sum())))[..., None],
        hovertemplate=_gate_hover(axis, "%{z:.1f} dB", 0) + "<extra></extra>"))
    _head_axes(fig, g, xaxis, axis, periods)
    return layout(_no_data(fig, g), esc(title or f"modReLU gates: {what}"), 150 + 40 * H, sub)


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
    layout(fig, "modReLU gates: open fraction per head", 380,
           f"{n_dead} dead head(s) in vermilion" if n_dead else "no dead heads")
    return threshold_line(fig, DEAD_OPEN_FRACTION, f"dead below {DEAD_OPEN_FRACTION:.0%}", FUTURE)
