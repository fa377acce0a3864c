"""Reach: how far back each head looks, from the exact kernels it applies to this text (the
learned kernel k and the combined kernel g*k), and the whole model's mean influence by distance
from the influence map of a window."""

import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import export, figures, reach
from caracal_viz.influence import token_influence

ck, text = ui.page_setup(
    "Reach",
    "How far back does each head look? An MHF head mixes the past through a causal kernel indexed by lag "
    "(lag 0 is the current byte): its **learned kernel** k, fixed after training, and the **combined kernel** "
    "g*k that it applies to this text (the data-dependent gate stream g, used as a kernel, convolved with k). "
    "Below, each kernel's energy by lag, summed from lag 0 outwards: the lag where a curve crosses 50% or 90% "
    "holds that share of the head's energy. At the bottom, the whole model's reach measured instead: the mean "
    "influence of a byte on a prediction by their distance apart.")

blocks = ui.text_analysis(reach.text_reach, ck, text, spinner="Reading every head's kernels...")
mhf = [b for b in blocks if b is not None]
n_bytes = len(text.encode("utf-8"))
if not mhf:
    st.info("This checkpoint has no MHF blocks: there is no kernel whose reach could be read. "
            "The whole-model view below still applies.")
else:
    kind = st.radio("Kernel", ["combined g*k (this text)", "learned k"], horizontal=True, key="re_kernel")
    combined = kind.startswith("combined")
    heads = [r for b in mhf for r in (b.combined if combined else b.learned)]
    ui.show_figure(figures.long.reach_figure(
        heads, subtitle=f"{'combined kernel g*k' if combined else 'learned kernel k'}, {n_bytes:,} lags (the text's "
                        "length), one line per block and head"),
        key="re_fig_cum", file_name=f"{ui.stem(ck)}_reach")
    st.caption("Log lag axis from lag 1 (lag 0's share is the curve's start). A curve that reaches 90% within a "
               "few bytes is a local head; one that climbs slowly over thousands of lags reads far back.")
    ui.show_figure(figures.long.reach_lags_figure([r for b in mhf for r in b.learned],
                                                  [r for b in mhf for r in b.combined]),
                   key="re_fig_lags", file_name=f"{ui.stem(ck)}_reach_lags")
    ui.download_csv("Lags holding 50% and 90% (CSV)", lambda: export.csv_bytes({
        "block": [r.block for b in mhf for r in b.learned], "head": [r.head for b in mhf for r in b.learned],
        "learned_lag50": [r.lag50 for b in mhf for r in b.learned],
        "learned_lag90": [r.lag90 for b in mhf for r in b.learned],
        "combined_lag50": [r.lag50 for b in mhf for r in b.combined],
        "combined_lag90": [r.lag90 for b in mhf for r in b.combined]}),
        f"{ui.stem(ck)}_reach_lags.csv", key="re_dl_lags")

st.subheader("Whole model: influence by distance")
window = ui.window_picker(ck, text, "The influence map")
if window.end - window.start < 2:
    st.info("The text has a single byte: there is no prediction to measure. Type a longer text in the sidebar.")
    st.stop()
imap = ui.analysis(token_influence, ck, window.text, None,
                   spinner=f"Differentiating every prediction of {window.end - window.start:,} bytes...")
by_lag = reach.influence_by_lag(imap.values)
ui.show_figure(figures.long.influence_by_lag_figure(by_lag, window.label), key="re_fig_by_lag",
               file_name=f"{ui.stem(ck)}_influence_by_lag")
st.caption("For each distance d, the mean over the window's predictions of the gradient size of the prediction "
           "after position i with respect to the byte at position i − d (the influence map of Token influence, "
           "read along its diagonals). The dotted lines: the distances within which 50% and 90% of the summed "
           "means lie.")
