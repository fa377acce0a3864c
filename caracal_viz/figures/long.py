"""Plotly figures for long texts (no Streamlit): reach of each head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

if TYPE_CHECKING:  # the figures import no model code
    from ..reach import HeadReach


def reach_figure(reaches: list[HeadReach]) -> go.Figure:
    """Cumulative energy fraction by lag (bytes, log axis from lag 1) for each head, one line per
    block/head; the hover gives the lags holding 50% and 90%. Lag 0 is left off the log axis: its
    share is the curve's value at lag 1 minus that lag's own energy."""
    fig = go.Figure()
    for r in reaches:
        lags = np.arange(1, r.cumulative.size)
        fig.add_trace(go.Scatter(
            x=lags, y=r.cumulative[1:], mode="lines", name=f"block {r.block} head {r.head}",
            hovertemplate=(f"block {r.block} head {r.head}<br>lag %{{x}}: %{{y:.1%}} of the energy"
                           f"<br>50% by lag {r.lag50}, 90% by lag {r.lag90}<extra></extra>")))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="50%")
    fig.add_hline(y=0.9, line_dash="dot", annotation_text="90%")
    fig.update_layout(title="Reach: cumulative kernel energy by lag",
                      xaxis=dict(title="lag (bytes)", type="log"),
                      yaxis=dict(title="fraction of the kernel's energy", range=[0, 1.02]))
    return fig
