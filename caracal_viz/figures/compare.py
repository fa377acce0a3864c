"""Two checkpoints compared: the filter difference of one block (`caracal_viz.compare`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import SIGNED, esc, layout, rounded


def compare_figure(d, name_a: str, name_b: str) -> go.Figure:
    """Two checkpoints' filters, one block (`compare.LayerDiff`): |H| difference in dB, b − a,
    heads x frequency (signed, centred at 0), with gates that changed state marked."""
    H = d.db_diff.shape[0]
    zmax = float(np.max(np.abs(d.db_diff))) or 1.0
    fig = go.Figure(go.Heatmap(
        z=rounded(d.db_diff, 2), x=d.freqs, y=list(range(H)), colorscale=SIGNED, reversescale=True, zmid=0.0,
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
    return layout(fig, "Filter difference, B − A", 180 + 40 * H,
                  f"B {esc(name_b)} − A {esc(name_a)}; {int(np.sum(d.n_changed))} gate(s) changed state "
                  "(red: louder in B, blue: quieter)")
