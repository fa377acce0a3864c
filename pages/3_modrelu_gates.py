"""modReLU gates: which frequency bins each head lets through, how much of the text's energy
passes, and which heads have shut (almost) every gate."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import export, figures, filters, gates

ck, text = ui.page_setup(
    "modReLU gates",
    "modReLU keeps a complex coefficient z only where **|z| + b > 0** (b is a learned bias per head "
    "and frequency bin), and shrinks it by b there: a gate per bin, open or closed. Closed bins "
    "are frequencies the head never passes. Below, the gates of each head and the share of this "
    "text's energy that gets through them.",
)

report = ui.text_analysis(gates.gate_report, ck, text, spinner="Reading the gates...")
layers = [i for i, g in enumerate(report) if g is not None]
if not layers:
    st.info("This checkpoint has no modReLU gates (modrelu is off, or every block is attention).")
    st.stop()

dead = [(i, h) for i in layers for h in np.flatnonzero(report[i].dead)]
if dead:
    st.warning(f"Dead heads (gates open on at most {gates.DEAD_OPEN_FRACTION:.0%} of their bins): "
               + ", ".join(f"block {i} head {h}" for i, h in dead)
               + ". They pass almost nothing: the block's other heads do its mixing.")
else:
    st.success(f"No dead heads: every head keeps more than {gates.DEAD_OPEN_FRACTION:.0%} of its gates open, "
               f"in all {len(layers)} gated blocks.")

ui.show_figure(figures.gate_summary_figure(report), key="gt_summary", file_name=f"{ui.stem(ck)}_gates_summary")
st.caption("Per block and head: the fraction of open gates, and the text's energy out of the gates as a "
           "fraction of the energy in. It can exceed 100%: where the bias b is positive, modReLU amplifies.")

layer = ui.linked("layer", "gt_layer", layers, lambda k: st.selectbox(
    "Layer", layers, format_func=lambda i: f"block {i} ({ck.config.layer_kind(i)})", key=k))
g = report[layer]
st.subheader(f"Block {layer}: gates by head and frequency")
axis = st.radio("Frequency axis", figures.FREQ_AXES, horizontal=True, key="gt_axis",
                help="Log frequency spreads out the slow end (near f = 0); period shows 1/f, how many tokens a "
                     "pattern takes to repeat")
periods = filters.task_periods(ck)
if periods:
    st.caption(f"Green dashed lines: the periods this checkpoint's training task repeats with "
               f"({', '.join(map(str, periods))} tokens; see sample_checkpoints/README.md).")
ui.show_figure(figures.gate_map_figure(g, axis=axis, periods=periods), key="gt_map",
               file_name=f"{ui.stem(ck)}_gates_block{layer}")
if g.kind == "fftnet":
    n_bins = len(text.encode("utf-8")) // 2 + 1
    st.caption("FFTNet gates act on the filtered data spectrum, so they depend on the text: the map shows "
               "the fraction of each head's channels whose gate is open at that bin for this text."
               + (f" This text has {n_bins} frequency bins against the gates' {len(g.freqs)}: each text bin lands "
                  "on its nearest gate bin, and the gate bins in between receive no data (the stripes)."
                  if n_bins < len(g.freqs) else ""))
ui.show_figure(figures.passed_energy_figure(g, axis=axis, periods=periods), key="gt_energy", file_name=f"{ui.stem(ck)}_gate_energy_block{layer}")
st.caption("Energy of the text reaching the gates per bin (Parseval scaled) and the part the gates let through.")


def _npz() -> bytes:
    arrays = {k: getattr(g, k) for k in ("freqs", "bias", "magnitude", "open", "transmission", "open_fraction",
                                         "dead", "data_open", "token_energy", "passed_energy", "passed_fraction")
              if getattr(g, k) is not None}
    return export.npz_bytes(**arrays)


def _heads_csv() -> bytes:
    rows = [(i, h, report[i].open_fraction[h], report[i].passed_fraction[h] if report[i].passed_fraction is not None
             else np.nan, bool(report[i].dead[h])) for i in layers for h in range(len(report[i].dead))]
    cols = list(zip(*rows))
    return export.csv_bytes({"block": cols[0], "head": cols[1], "open_fraction": cols[2],
                         "passed_energy_fraction": cols[3], "dead": cols[4]})


d1, d2 = st.columns(2)
with d1:
    ui.download_npz(f"Block {layer} gates (NPZ)", _npz, f"{ui.stem(ck)}_gates_block{layer}.npz", key="gt_npz")
with d2:
    ui.download_csv("All heads (CSV)", _heads_csv, f"{ui.stem(ck)}_gate_heads.csv", key="gt_csv")
