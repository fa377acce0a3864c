"""Token influence: which earlier bytes each prediction depends on (the whole model's gradient
map), one prediction in detail, and how each mixer head moves information between positions."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import attribution, export, figures, influence, mixing
from caracal_viz.text import visible_label

# A long-format CSV row per entry: 4 heads x 1,024^2 entries is ~80 MB; 4,096 bytes would be ~2 GB.
MAX_CSV_ENTRIES = 4 * 1024 * 1024

ck, text = ui.page_setup(
    "Token influence",
    "Which earlier bytes does each prediction depend on? Row *i* of the map below is the model's prediction "
    "of the byte at position *i + 1*; column *j* is the input byte at position *j*; the colour is how much that "
    "prediction's log-probability changes when the embedding at position *j* is nudged (the gradient's size). In a causal model everything above "
    "the diagonal, the future, is zero; a model that reads the future lights up there. Below the map: one "
    "prediction in detail, then each mixer head's own token-to-token matrix.")

window = ui.window_picker(ck, text, "This page (the influence map, the methods, the mixing matrices)")
text = window.text
n_bytes = window.end - window.start

# ---- the whole map -----------------------------------------------------------------------------
st.subheader("Influence map")
# block 0's input is the embeddings themselves, so 0 stands for the whole model
start = st.selectbox("Gradient with respect to", list(range(ck.config.n_layers)), key="ti_layer",
                     format_func=lambda k: "the input bytes (whole model)" if k == 0
                     else f"the residual stream entering block {k} (blocks {k}..{ck.config.n_layers - 1})")
imap = ui.analysis(influence.token_influence, ck, text, start or None,
                   spinner=f"Differentiating every prediction of {n_bytes} bytes...")
labels = imap.labels
L = len(labels)
if L < 2:
    st.info("The text has a single byte: there is no prediction to explain. Type a longer text in the sidebar.")
    st.stop()

ui.show_figure(figures.influence_figure(imap), key="ti_fig_map", file_name="token_influence_map", pick="pos")
pooled = figures.pool_factor(L)
st.caption(f"Colour is logarithmic over {figures.LOG_DECADES:.0f} decades below the map's largest value; anything "
           "smaller shows as the darkest colour. "
           + ("Hover for the exact value. " if pooled == 1 else
              f"Over {figures.MAX_MATRIX_SIDE} bytes a browser cannot draw every cell: each cell shows the largest "
              f"value of a block of {pooled} × {pooled} (the hover gives the block's positions; a block on the "
              "diagonal holds past and future entries, so trust the subtitle's measured maximum for leaks), and the "
              "downloads below hold every value. ")
           + "The last row is empty: nothing follows the last byte. The subtitle gives the largest value above the "
             "diagonal, measured, nothing masked.")
if imap.reads_future:
    st.warning(f"Predictions depend on later bytes (largest future entry {imap.upper_max:.3g}, "
               f"{imap.upper_rel:.2g} of the map's scale): this checkpoint is not causal.")
c1, c2 = st.columns(2)
with c1:
    ui.download_csv("Influence map (CSV)",
                    lambda: export.matrix_csv_bytes(imap.values, [f"{i}:{s}" for i, s in enumerate(labels)],
                                                [f"{j}:{s}" for j, s in enumerate(labels)], corner="prediction\\input"),
                    "token_influence.csv", key="ti_dl_map_csv")
with c2:
    ui.download_npz("Influence map (NPZ)",
                    lambda: export.npz_bytes(values=imap.values, ids=imap.ids, upper_max=imap.upper_max, scale=imap.scale),
                    "token_influence.npz", key="ti_dl_map_npz")

st.subheader("Map and text, linked")
linked_html, linked_note = figures.linked_influence_html(imap, start=window.start)
st.caption("Hover a row of the map: the bytes that prediction reads light up in the text (outlined: the last byte "
           "it may read; underlined: the byte it predicts). Hover a byte: the bytes whose predictions read it light "
           f"up. Showing {linked_note}.")
# our own document: the text reaches it as JSON set with textContent, never as markup
st.iframe(linked_html, height="content")

# ---- one prediction -------------------------------------------------------------------------------
st.subheader("One prediction")
shown = [visible_label(s) for s in labels]
position = ui.linked("pos", "ti_pos", range(L - 1), lambda k: st.select_slider(
    "Prediction after position", list(range(L - 1)), key=k, format_func=lambda i: f"{i}: '{shown[i]}' → '{shown[i + 1]}'"),
    default=(L - 1) // 2)
row = imap.values[position]
ui.show_figure(figures.influence_strip_figure(imap, position), key="ti_fig_row",
               file_name=f"token_influence_row{position}", pick="pos")
top = imap.strongest(position)
st.caption("The text, each byte coloured by how much it moves this one prediction (same colours as the map; the "
           "outlined byte is the last one the prediction may read). Strongest: "
           + export.md_escape(", ".join(f"'{shown[j]}' at position {j} ({row[j]:.3g}{', in the future' if j > position else ''})"
                                    for j in top))
           + ".")
ui.download_csv("This prediction's row (CSV)",
                lambda: export.csv_bytes({"input_position": np.arange(L), "byte": imap.ids, "label": labels,
                                      "influence": row}),
                f"token_influence_row{position}.csv", key="ti_dl_row")

# ---- attribution methods side by side (caracal_viz.attribution) ----------------------------------
st.subheader("Methods")
st.markdown(
    "The gradient is one way to ask which bytes a prediction depends on. Below, the same prediction by several "
    "methods: the gradient's size, gradient × input, integrated gradients (Captum; from a text of baseline bytes), "
    "occlusion (each byte replaced by the baseline byte, the exact change in log p) and, for an MHF first block, "
    "that block's exact linear path (its mixing kernel's weights). Which to trust? Deleting a faithful method's "
    "top bytes makes log p fall fastest, and restoring them onto a baseline text makes it rise fastest: the "
    "curves and their areas (AOPC, in nats) below, against bytes taken in random order.")
m1, m2 = st.columns([3, 1])
with m1:
    chosen = st.multiselect("Methods", attribution.METHODS, default=list(attribution.METHODS), key="ti_methods",
                            format_func=attribution.METHOD_NAMES.get)
with m2:
    baseline = st.selectbox("Baseline byte", [0x20, 0x00, ord("e"), ord("\n")], key="ti_baseline",
                            format_func=lambda b: f"{b:#04x} ({figures.show_label(ck.tokenizer.label(b))})")
if not st.session_state.get("ti_methods_on"):  # a first visit runs none of it: it is most of the page's work
    st.caption("The methods run integrated gradients, one occlusion pass per byte and a forward pass per point of "
               "each curve: seconds on a GPU, longer on a CPU. Once asked, they follow the position and choices.")
    st.button("Compare the methods", key="ti_methods_run", on_click=st.session_state.__setitem__,
              args=("ti_methods_on", True))
elif not chosen:
    st.info("Choose at least one method.")
else:
    rep = ui.analysis(attribution.attribute, ck, text, position, tuple(chosen), baseline_byte=baseline,
                      spinner=f"Attributing the prediction after position {position} by {len(chosen)} method(s)...")
    if "linear_path" in chosen and "linear_path" not in rep.methods:
        st.caption("No linear path: block 0 is not an MHF mixer, so its mixing is not one fixed kernel.")
    for name in rep.methods:
        ui.show_figure(figures.attribution_strip_figure(rep, name), key=f"ti_fig_attr_{name}",
                       file_name=f"attribution_{name}_pos{position}", pick="pos")
    st.caption(f"Normalisation: {rep.normalisation} (the hover's share). Red raises log p of the target, blue "
               "lowers it; the gradient norm and the linear path have no sign. The subtitles give the largest score "
               "after the prediction, measured.")
    ui.show_figure(figures.faithfulness_figure(rep), key="ti_fig_faith", file_name=f"faithfulness_pos{position}")
    st.dataframe(rep.aopc_rows(), hide_index=True, key="ti_aopc")
    names = list(rep.methods)
    st.caption(f"AOPC: the mean log-p change over the curve's points (deletion: f(x) − f(edited); insertion: "
               f"f(edited) − f(baseline text)); higher is more faithful. The random row averages "
               f"{rep.random_deletion.shape[0]} random orders. Rank correlation (Spearman) of the methods' "
               f"absolute scores over {rep.correlation_over}:")
    st.dataframe({"method": [attribution.METHOD_NAMES[n] for n in names],
                  **{attribution.METHOD_NAMES[n]: rep.correlation[:, k] for k, n in enumerate(names)}},
                 hide_index=True, key="ti_rank_corr")
    d1, d2, d3 = st.columns(3)
    with d1:
        ui.download_npz("All attribution arrays (NPZ)", lambda: export.npz_bytes(**rep.arrays()),
                        f"attribution_pos{position}.npz", key="ti_dl_attr_npz")
    with d2:
        ui.download_csv("Scores (CSV)",
                        lambda: export.csv_bytes({"input_position": np.arange(len(rep.ids)), "byte": rep.ids,
                                              "label": rep.labels,
                                              **{f"{n}_{f}": getattr(a, f) for n, a in rep.methods.items()
                                                 for f in ("signed", "absolute", "normalised")}}),
                        f"attribution_pos{position}.csv", key="ti_dl_attr_csv")
    with d3:
        ui.download_csv("Curves (CSV)",
                        lambda: export.csv_bytes({"k": rep.ks, **{f"deletion_{n}": c for n, c in rep.deletion.items()},
                                              **{f"insertion_{n}": c for n, c in rep.insertion.items()}}),
                        f"faithfulness_pos{position}.csv", key="ti_dl_curves_csv")

# ---- per-head mixing ------------------------------------------------------------------------------
st.subheader("Mixing matrices per layer and head")
st.markdown(
    "Inside each block the mixer moves information between positions. For a Fourier mixer on this text that "
    "movement is a matrix per head: entry (t, j) says how strongly position j feeds output t (the exact "
    "Toeplitz matrix of the kernel the head applies, averaged (RMS) over the head's channels; for FFTNet the "
    "Jacobian of its spectral filter at this input). A causal head is lower-triangular; a circular one wraps "
    "into the top-right corner; FFTNet fills both triangles.")
mixers = [i for i in range(ck.config.n_layers) if ck.config.layer_kind(i) in ("mhf", "fftnet")]
if not mixers:
    st.info("This checkpoint has no Fourier mixer blocks (only attention): there is no mixing matrix to show.")
    st.stop()
mix_layer = ui.linked("layer", "ti_mix_layer", mixers, lambda k: st.selectbox(
    "Layer", mixers, key=k, format_func=lambda i: f"layer {i}"))
m = ui.text_analysis(influence.mixing_matrix, ck, text, mix_layer, spinner="Building the mixing matrices...")
ui.show_figure(figures.mixing_matrix_figure(m, labels, mix_layer, ck.config.layer_kind(mix_layer)), key="ti_fig_mix",
               file_name=f"mixing_layer{mix_layer}")
future = mixing.future_fraction(m)
st.caption("Largest entry above the diagonal, relative to the head's largest: "
           + ", ".join(f"head {h}: {f:.2g}" for h, f in enumerate(future)) + ". The heads share one colour scale.")
c3, c4 = st.columns(2)
with c3:
    ui.download_npz(f"Layer {mix_layer} matrices (NPZ)",
                    lambda: export.npz_bytes(ids=imap.ids, **{f"layer{mix_layer}": m}),
                    f"mixing_layer{mix_layer}.npz", key="ti_dl_mix_npz")
with c4:
    if m.size > MAX_CSV_ENTRIES:
        st.caption(f"{m.size:,} entries is too many for a CSV with one row each (over {MAX_CSV_ENTRIES:,}): "
                   f"use the NPZ.")
    else:
        ui.download_csv(f"Layer {mix_layer} matrices (CSV, one row per entry)",
                        lambda: export.csv_bytes({"head": np.repeat(np.arange(m.shape[0]), L * L),
                                              "output_t": np.tile(np.repeat(np.arange(L), L), m.shape[0]),
                                              "input_j": np.tile(np.arange(L), L * m.shape[0]),
                                              "weight": m.reshape(-1)}),
                        f"mixing_layer{mix_layer}.csv", key="ti_dl_mix_csv")
