"""Length extrapolation: bits/byte by position on windows longer than the training context, for
the samples (measured on the GPU, shipped) and, on request, for the loaded checkpoint(s)."""

import math

import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import export, figures
from caracal_viz import extrapolate as ex

ss = st.session_state
ck, text = ui.page_setup(
    "Length extrapolation",
    "What does a model do with more context than it was trained on? Each window of text is read from its "
    "first byte, and the prediction at position t has t + 1 bytes of context. Bits/byte by position (averaged "
    "over windows, in log-spaced bins) stays flat or falls while the model uses the longer context, and rises "
    "where it breaks down. Past its training context C a Fourier mixer's learned kernel holds nothing beyond "
    "lag C − 1 and an attention layer meets distances it never saw: the dotted line marks C.")


def table_rows(tables: list[ex.Curve]) -> dict:
    """The README's bins, one row per checkpoint (a bin past the window is empty)."""
    e = ex.TABLE_EDGES
    cols = {"checkpoint": [t.name for t in tables], "context": [t.context for t in tables]}
    for i, (lo, hi) in enumerate(zip(e[:-1], e[1:])):
        cols[f"{lo:,}-{hi:,}"] = [round(float(t.bits[i]), 4) if math.isfinite(t.bits[i]) else None
                                             for t in tables]
    return cols


# ---- the samples, measured --------------------------------------------------------------------------
st.subheader("The samples on the validation split (measured)")
try:
    record, curves, tables = ex.load_measured()
except (OSError, ValueError, KeyError) as e:
    st.info(f"The shipped measurements (sample_checkpoints/extrapolation.json) could not be read: "
            f"{export.md_escape(ui.error_message(e))}. Compute the curves for your checkpoint below.")
else:
    ui.show_figure(figures.long.extrapolation_figure(
        curves, subtitle=f"validation split (bytes training never saw), {record['windows']} windows per model; "
                         f"{record['machine']}, {record['date_utc']} UTC, {record['precision']}"),
        key="ex_fig_measured", file_name="extrapolation_samples")
    st.table(table_rows(tables))
    st.caption(f"Bits/byte over the positions of each bin (0-512: positions 0 to 511), {record['windows']} windows of 8,192 positions at the "
               f"same starts for every model. Measured with `{record['command']}` (torch {record['torch']}).")

# ---- your checkpoint(s), live ----------------------------------------------------------------------------
st.subheader("Your checkpoint, computed here")
source = st.radio("Text", ["the validation split", "the sidebar's text"], horizontal=True, key="ex_source")
cks = [ck]
if st.toggle("Add a second checkpoint", key="ex_second"):
    with st.container(border=True):
        choice = ui.checkpoint_picker("Second checkpoint", key="ex2", default="transformer-shakespeare")
    with ui.guard():
        other = ui.load_checkpoint_choice(choice)
    if (other.sha256, str(other.device)) != (ck.sha256, str(ck.device)):
        cks.append(other)
own_text = source != "the validation split"
n_bytes = len(text.encode("utf-8")) if own_text else None
options = ex.length_options([c.config.context for c in cks], n_bytes)
if not options:
    st.info("The sidebar's text has a single byte: there is no prediction to score. Choose the validation split "
            "or type a longer text.")
    st.stop()
gpu = str(ck.device).startswith("cuda")
want = (ex.MAX_FACTOR if gpu else 4) * ck.config.context  # 16x on a GPU; a CPU takes seconds per window
c1, c2 = st.columns(2)
length = c1.select_slider("Window length (positions)", options, value=max([n for n in options if n <= want]
                                                                          or options[:1]),
                          format_func=lambda n: f"{n:,}", key="ex_length")
n_windows = c2.number_input("Windows", 1, 64, 16 if gpu else 4, key="ex_windows")
asked_for = (tuple((c.sha256, str(c.device)) for c in cks), own_text, text if own_text else None, length, n_windows)
if ss.get("ex_for") != asked_for:
    st.caption(f"Scores {n_windows} windows of {length:,} positions with each checkpoint ({len(cks)}): seconds on a "
               "GPU, up to minutes on a CPU for the longest windows. The result stays for these choices.")
    st.button("Compute the curves", key="ex_for_button", on_click=ss.__setitem__, args=("ex_for", asked_for))
    st.stop()
runs = [ui.analysis(ex.extrapolate, c, text if own_text else None, length=length, n_windows=int(n_windows),
                    batch_size=4 if gpu else 1,
                    spinner=f"Scoring {n_windows} windows of {length:,} positions with {ui.stem(c)}...")
        for c in cks]
live = [r.curve(ex.curve_edges(r.length)) for r in runs]
ui.show_figure(figures.long.extrapolation_figure(
    live, subtitle=f"{runs[0].source}, {runs[0].n_windows} windows of {length:,} positions, on {runs[0].device}"),
    key="ex_fig_live", file_name=f"{ui.stem(ck)}_extrapolation")
st.table(table_rows([r.table() for r in runs]))
if own_text and runs[0].n_windows < n_windows:
    st.caption(f"The text holds {runs[0].n_windows} distinct window(s) of {length:,} positions: fewer than asked.")
ui.download_csv("Bits/byte by position bin (CSV)", lambda: export.csv_bytes({
    "checkpoint": [c.name for c in live for _ in c.bits],
    "first_position": [int(lo) for c in live for lo in c.edges[:-1]],
    "last_position": [int(hi) - 1 for c in live for hi in c.edges[1:]],
    "bits_per_byte": [float(b) for c in live for b in c.bits]}), f"{ui.stem(ck)}_extrapolation.csv", key="ex_dl")
