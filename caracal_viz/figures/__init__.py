"""Plotly figures for every view of the app and the report: arrays (or the analysis dataclasses
that hold them) in, `go.Figure` out. No Streamlit, no model, no torch.

This package is the figures' public entry: `figures.influence_figure(...)` names any builder of
the topic modules below, which a reader opens by topic:
- `style`: the palette, escaping, the title/margin layout, threshold lines, token ticks, the
  frequency axes (linear, log, period);
- `text`: the text views, the top-k next bytes, the training record (the Overview), the byte wording;
- `filters`, `gates`, `energy`, `influence` (with mixing matrices and attribution), `causality`
  (impulses, aliasing, the certificate), `compare`, `interventions`: one module per page's topic;
- `explainer`: the causal-trick toy of page 4; `long`: views of long texts (reach by lag);
- `linked`: the influence map and the text in one HTML document, linked by hover (not Plotly).

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

from .style import (
    MAGNITUDE, SIGNED, HEADS, FUTURE, OK, NO_DATA, MAX_TICK_LABELS, SUBTITLE_WIDTH, esc, show_label, wrap,
    layout, threshold_line, head_colour, head_list, token_ticks, finite_or_none, rounded, FREQ_AXES, DB_SPAN,
    shared_db_range, freq_axis, mark_periods, add_pick_layer,
)
from .text import (
    TEXT_WIDTH, BIN_COLUMNS, TEXT_BOX_PX, CBAR_MIN_PX, cell_label, byte_value, char_glyph, char_hover, byte_context,
    text_grid, text_heatmap, token_loss_figure, binned_loss_figure, topk_figure, training_curve_figure,
)
from .filters import (
    GROUP_DELAY_FLOOR_DB, filter_heatmap, filter_grid_figure, filter_detail, kernel_figure,
    data_kernel_figure, fftnet_filter_figure,
)
from .gates import gate_map_figure, passed_energy_figure, gate_summary_figure
from .causality import (
    kernel_impulse_figure, mixer_impulse_figure, aliasing_figure, VERDICT_COLOURS, causality_figure,
)
from .energy import energy_identity_figure, esd_figure, energy_bands_figure, energy_gain_figure
from .influence import (
    LOG_DECADES, MAX_MATRIX_SIDE, pool_factor, pool_max, influence_verdict, influence_figure,
    influence_strip_figure, mixing_matrix_figure, attribution_strip_figure, faithfulness_figure,
)
from .linked import LINKED_MAX_SIDE, influence_levels, linked_influence_html
from .compare import compare_figure
from .interventions import loss_change_figure, topk_change_figure, sweep_figure, patching_figure
from . import explainer, long

__all__ = [
    "MAGNITUDE", "SIGNED", "HEADS", "FUTURE", "OK", "NO_DATA", "MAX_TICK_LABELS", "SUBTITLE_WIDTH", "esc",
    "show_label", "wrap", "layout", "threshold_line", "head_colour", "head_list", "token_ticks",
    "finite_or_none", "rounded", "FREQ_AXES", "DB_SPAN", "shared_db_range", "freq_axis", "mark_periods",
    "add_pick_layer", "TEXT_WIDTH", "BIN_COLUMNS", "TEXT_BOX_PX", "CBAR_MIN_PX", "cell_label", "byte_value", "char_glyph",
    "char_hover", "byte_context", "text_grid", "text_heatmap", "token_loss_figure", "binned_loss_figure", "topk_figure",
    "training_curve_figure", "GROUP_DELAY_FLOOR_DB", "filter_heatmap", "filter_grid_figure", "filter_detail",
    "kernel_figure", "data_kernel_figure", "fftnet_filter_figure", "gate_map_figure", "passed_energy_figure",
    "gate_summary_figure", "kernel_impulse_figure", "mixer_impulse_figure", "aliasing_figure",
    "VERDICT_COLOURS", "causality_figure", "energy_identity_figure", "esd_figure", "energy_bands_figure",
    "energy_gain_figure", "LOG_DECADES", "MAX_MATRIX_SIDE", "pool_factor", "pool_max", "influence_verdict",
    "influence_figure", "influence_strip_figure", "mixing_matrix_figure", "attribution_strip_figure",
    "faithfulness_figure", "LINKED_MAX_SIDE", "influence_levels", "linked_influence_html",
    "compare_figure", "loss_change_figure", "topk_change_figure", "sweep_figure",
    "patching_figure", "explainer", "long"
]
