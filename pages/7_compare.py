"""Compare: two checkpoints side by side (model cards, causality certificates, learned filters,
gates), and, when they have the same shape, their head-by-head differences."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import compare, export, figures, filters, gates

ck_a, text = ui.page_setup(
    "Compare two checkpoints",
    "The checkpoint chosen in the sidebar (**A**) next to a second one (**B**): their cards, their "
    "causality certificates (does changing a token move any earlier prediction?), their filters and "
    "gates. Two checkpoints of the same shape are also compared head by head.",
)

default_b = "caracal-circular-leaky" if ck_a.name != "caracal-circular-leaky.safetensors" else "caracal-shakespeare"
with st.container(border=True):
    choice_b = ui.checkpoint_picker("Checkpoint B", key="cmp", default=default_b)
with ui.guard():
    ck_b = ui.load_checkpoint_choice(choice_b)

layer_count = max(ck_a.config.n_layers, ck_b.config.n_layers)
if st.session_state.get("cmp_layer", 0) >= layer_count:  # B changed to a shallower model
    st.session_state["cmp_layer"] = 0
layer = st.selectbox("Layer", list(range(layer_count)), key="cmp_layer",
                     format_func=lambda i: f"block {i}")

SIDES = (("A", ck_a), ("B", ck_b))


def side_by_side(draw) -> None:
    """One row of two columns, so that the two sides' sections line up."""
    for (side, ck), col in zip(SIDES, st.columns(2)):
        with col:
            draw(side, ck)


def card(side, ck):
    st.markdown(f"#### {side}: {export.md_escape(ui.stem(ck))}")
    c = ui.model_card(ck)
    st.markdown(" · ".join(f"**{k}** {c[k]}" for k in ("mixer", "layers", "heads", "parameters", "val bits/byte")))


def certificate(side, ck):
    ui.show_certificate(ui.certificate(ck))


def _block_filters(ck):
    return ui.analysis(filters.learned_filters, ck)[layer] if layer < ck.config.n_layers else None


# one dB range for both sides, so a colour means the same |H| in A and in B
shared = [f.magnitude_db for f in map(_block_filters, (ck_a, ck_b)) if f is not None]
DB_RANGE = figures.shared_db_range(*shared) if shared else None


def learned(side, ck):
    if layer >= ck.config.n_layers:
        st.info(f"{side} has only {ck.config.n_layers} blocks.")
        return
    lf = ui.analysis(filters.learned_filters, ck)[layer]
    if lf is None:
        st.info(f"Block {layer} of {side} has no learned filter.")
        return
    ui.show_figure(figures.filter_heatmap(lf.freqs, lf.magnitude_db, title=f"{side}: |H(f)| dB, block {layer}",
                                          db_range=DB_RANGE),
                   key=f"cmp_heat_{side}", file_name=f"{ui.stem(ck)}_filters_block{layer}")


def gate_map(side, ck):
    if layer >= ck.config.n_layers:
        return
    gr = ui.text_analysis(gates.gate_report, ck, text)[layer]
    if gr is None:
        st.info(f"Block {layer} of {side} has no modReLU gates.")
        return
    ui.show_figure(figures.gate_map_figure(gr, title=f"{side}: modReLU gates, block {layer}"), key=f"cmp_gates_{side}",
                   file_name=f"{ui.stem(ck)}_gates_block{layer}")
    dead = np.flatnonzero(gr.dead)
    st.caption("Dead heads: " + (", ".join(f"head {h}" for h in dead) if dead.size else "none"))


side_by_side(card)
st.markdown("##### Causality certificates")
st.caption("The same certificate as on The causal trick page (same numbers): does changing a token move any "
           "earlier prediction? Green: causal; red: leaks; grey: cannot certify (NaN/Inf).")
side_by_side(certificate)
st.markdown(f"##### Learned filters and gates, block {layer}")
side_by_side(learned)
side_by_side(gate_map)

st.subheader("Head by head: B minus A")
try:
    cmp = ui.analysis(compare.compare_checkpoints, ck_a, ck_b, passthrough=(compare.CompareError,))
except compare.CompareError as e:
    st.warning(export.md_escape(f"These two cannot be compared head by head: {e}"))
    st.stop()
st.markdown(export.md_escape(cmp.summary))
d = cmp.layers[layer] if layer < len(cmp.layers) else None
if d is None:
    st.info(f"Block {layer} has no learned filter in either checkpoint.")
    st.stop()
ui.show_figure(figures.compare_figure(d, cmp.name_a, cmp.name_b), key="cmp_diff",
               file_name=f"compare_{ui.stem(ck_a)}_{ui.stem(ck_b)}_block{layer}")


def _npz() -> bytes:
    return export.npz_bytes(**{k: v for k, v in vars(d).items() if isinstance(v, np.ndarray)})


ui.download_npz(f"Block {layer} differences (NPZ)", _npz, f"compare_{ui.stem(ck_a)}_{ui.stem(ck_b)}_block{layer}.npz",
                key="cmp_npz")
