"""Overview: how well the model predicts each byte of the text, what it expected instead, and a
generation box that streams the model's own continuation."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import binning, export, figures, predict, trace

TOP_K = 5

ck, text = ui.page_setup(
    "Overview",
    "Each byte of the text is coloured by the model's **loss** on it: how many bits of surprise "
    "the model felt when that byte arrived, given every byte before it (dark: expected, bright: "
    "surprising). Hover a byte to see the model's top guesses for it.",
)

view = ui.text_analysis(predict.next_token_view, ck, text, k=TOP_K, spinner="Running the model on the text...")

if not ck.nonfinite and not np.isfinite(view.loss_bits[:-1]).all():  # NaN/Inf weights: page_setup said so
    # say where the activations broke instead of plotting gaps silently
    bad = ui.text_analysis(trace.trace_of, ck, text, spinner="Locating the non-finite activations...").nonfinite
    first = bad[0] if bad else None
    st.markdown(":gray-background[:material/help: **NaN/Inf**] :gray[The model's activations overflow to NaN/Inf "
                "on this text"
                + (f", first in {export.markdown_literal_text(first.where)} ({first.n_nan} NaN, {first.n_inf} Inf at "
                   f"{len(first.positions)} positions)" if first else "")
                + ": the losses and figures below are incomplete. The checkpoint's weights are too large for "
                  "float32.]")

c1, c2, c3, c4 = st.columns(4)
c1.metric("Bytes", len(view.ids))
# short labels, the unit in the help: "Bits/byte, this text" was cut in a 900 px window
c2.metric("This text", "n/a" if np.isnan(view.mean_bits) else f"{view.mean_bits:.3f}",
          help="Bits per byte: the mean loss over this text's predictions")
bpb = ck.meta.get("val_bits_per_byte")
c3.metric("Validation", f"{bpb:.3f}" if isinstance(bpb, (int, float)) else "n/a",
          help="Bits per byte on the validation split, as the checkpoint's training record gives it")
cert = ui.certificate(ck)
c4.metric("Causality", {"causal": "causal", "leaks": "leaks"}.get(cert.verdict, "cannot certify"),
          help="The causality certificate (details on The causal trick page)")
ui.show_certificate(cert, summary=False)
if cert.verdict == "leaks":
    st.markdown("This model is not causal: its prediction for a byte can read that byte and the ones after "
                "it, so a low loss here is cheating, not understanding (see **The causal trick**).")

ui.show_figure(figures.token_loss_figure(view), key="tokens", file_name=f"{ui.stem(ck)}_token_loss", max_height=figures.TEXT_BOX_PX,
               pick="pos")
if view.binned:
    bins = view.loss_bins()
    st.caption(f"Binned: the text has {len(view.ids):,} bytes, more than the {binning.TEXT_CELLS:,} drawn one by one, so "
               f"each cell is the mean loss in bits, -log2 p(byte | earlier bytes), of {bins.width} consecutive bytes "
               f"({bins.values.size:,} bins, {figures.BIN_COLUMNS} a line; the first byte, with nothing before it, "
               "counts in none). Hover a bin for its positions, its largest loss and its first bytes; click it to "
               "select its first position. The top guesses below and the CSV have every byte.")
else:
    st.caption("Colour: loss in bits, -log2 p(byte | earlier bytes). The first byte has nothing before it to "
               "predict it from, so it stays uncoloured. Click a byte to select its position on every page.")

st.subheader("What the model expected at one position")
n = len(view.ids)
pos = ui.linked("pos", "ov_pos", range(n), lambda k: st.slider(
    "Position (the prediction made after reading bytes 0..i)", 0, n - 1, key=k), default=max(0, min(n - 2, n // 2))) \
    if n > 1 else 0
ui.show_figure(figures.topk_figure(view, pos), key="topk", file_name=f"{ui.stem(ck)}_top{TOP_K}_pos{pos}")


def _table() -> bytes:
    return export.csv_bytes({
        "position": np.arange(len(view.ids)), "byte": view.ids, "label": view.labels,
        "loss_bits": view.loss_bits, "target_prob": view.target_prob, "entropy_bits": view.entropy_bits,
        **{f"top{j + 1}_byte": view.topk_ids[:, j] for j in range(view.topk_ids.shape[1])},
        **{f"top{j + 1}_prob": view.topk_probs[:, j] for j in range(view.topk_probs.shape[1])},
    })


ui.download_csv("Per-byte losses and top guesses (CSV)", _table, f"{ui.stem(ck)}_next_bytes.csv", key="ov_csv")

st.subheader("Let the model write")
st.markdown("The model continues your prompt one byte at a time. "
            + ("Each new byte costs one step of incremental decoding: the cached value and gate "
               "streams, no FFT." if ck.config.is_causal else
               "This model is not causal, so it cannot decode incrementally: it re-runs the whole "
               "sequence for every new byte (slow)."))
# The generation box's inputs live in "gen_kept", copied into the widgets on every run: Streamlit
# forgets a widget's value on a run that does not draw it (a visit to another page).
ss = st.session_state
kept = ss.setdefault("gen_kept", {"gen_n": 160, "gen_temp": 0.8, "gen_topk": 0, "gen_seed": 0})
if ss.get("gen_prompt_for") != text:  # a new text brings a new default prompt
    kept["gen_prompt"] = text[-200:]
    ss["gen_prompt_for"] = text
    ss.pop("gen_result", None)
ss.update(kept)


def _keep(*keys: str) -> None:
    kept.update({k: ss[k] for k in keys})


# outside the form, so a prompt typed and not yet generated from is kept too
prompt = st.text_area("Prompt", height=100, key="gen_prompt", on_change=_keep, args=("gen_prompt",))
with st.form("generate"):
    g1, g2, g3, g4 = st.columns(4)
    n_new = g1.slider("New bytes", 16, 512, step=16, key="gen_n")
    temperature = g2.slider("Temperature", 0.0, 1.5, step=0.05, key="gen_temp",
                            help="0 always picks the most likely byte")
    top_k = g3.slider("Top-k (0: all 256)", 0, 64, key="gen_topk")
    seed = g4.number_input("Seed", 0, 2**31 - 1, key="gen_seed")
    go = st.form_submit_button("Generate", on_click=_keep, args=("gen_n", "gen_temp", "gen_topk", "gen_seed"))
with st.container(border=True):
    if go:
        with ui.guard():  # the prompt and settings are checked before the first byte
            pieces = predict.stream_generation(ck, prompt, int(n_new), temperature=float(temperature),
                                               top_k=int(top_k) or None, seed=int(seed))
        st.session_state["gen_result"] = (prompt, ui.stream_text(pieces))
    elif "gen_result" in st.session_state:
        st.markdown(export.markdown_literal_text(st.session_state["gen_result"][1]))
    else:
        st.caption("The continuation appears here.")
if "gen_result" in st.session_state:
    generated = "".join(st.session_state["gen_result"]).encode("utf-8")
    ui.download_bytes("Prompt and continuation (TXT)", generated, f"{ui.stem(ck)}_generated.txt", "text/plain",
                      key="gen_txt")
