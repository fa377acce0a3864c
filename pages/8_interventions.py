"""Interventions: change a head, a frequency band or a gate and see what the prediction does; the
sweep over every head and band; activation patching between a clean and a corrupted text."""

import hashlib

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import binning, export, figures
from caracal_viz import interventions as iv
from caracal_viz.text import TextError

KINDS = ("Ablate a head", "Filter a band", "Force gates", "Switch a block to circular")
PATCH_MAX_BYTES = 256  # patching runs n_layers x L copies of the model

ck, text = ui.page_setup(
    "Interventions",
    "Test a hypothesis about a filter by removing it. Zero a head, stop a frequency band in one head's "
    "learned spectrum (or in its gate stream), force its modReLU gates open or shut, or run a block without "
    "the causal padding, and watch the loss and the next-byte prediction change. The sweep at the bottom "
    "does every head and band at once: which heads and frequencies this text needs. Click one of its cells "
    "to apply that ablation above.")
cfg = ck.config
ss = st.session_state
fourier = [k for k in range(cfg.n_layers) if cfg.layer_kind(k) in ("mhf", "fftnet")]
if not fourier:
    st.info("This checkpoint has no Fourier mixer to intervene on (attention only).")
    st.stop()
ss.setdefault("iv_layer", fourier[-1])
ss.setdefault("iv_head", 0)
C = cfg.context
grid = [f / (2 * C) for f in range(C + 1)]  # the MHF learned spectrum's bins
ss.setdefault("iv_band", (grid[C // 8], grid[C // 4]))


def _freq(f: float) -> str:
    return f"{f:.4g} c/t (T {'∞' if f == 0 else f'{1 / f:.3g}'})"


def _apply_sweep_cell() -> None:
    """A click on the sweep heatmap: that cell's ablation becomes the page's intervention."""
    event = ss.get("iv_sweep_fig")
    cells = [p.get("customdata") for p in (event.selection.points if event else [])]
    cells = [c for c in cells if isinstance(c, (list, tuple, dict)) and len(c) >= 3]  # the pick layer's points
    sweep_result = ss.get("iv_sweep_last")
    if not cells or sweep_result is None:
        return
    data = cells[0]
    if isinstance(data, dict):  # a row of customdata arrives as {"0": .., "1": .., "2": ..}
        data = [data[str(i)] for i in range(len(data))]
    layer, head, band = (int(v) for v in data[:3])
    ss.update(iv_layer=layer, iv_head=head, iv_mode="zero", iv_band_text="")
    if band < 0:
        ss["iv_kind"] = KINDS[0]
        return
    lo, hi = sweep_result.band_edges[band], sweep_result.band_edges[band + 1]
    inside = [f for f in grid if lo <= f <= hi] or [min(grid, key=lambda f: abs(f - lo))]
    ss.update(iv_kind=KINDS[1], iv_stream="learned spectrum", iv_band_mode="stop", iv_band=(inside[0], inside[-1]))


# ---- the intervention -----------------------------------------------------------------------------
kind = st.radio("Intervention", KINDS, key="iv_kind", horizontal=True)
c1, c2, c3 = st.columns(3)
layer = int(c1.number_input(f"Block (0..{cfg.n_layers - 1})", min_value=0, step=1, key="iv_layer"))
head = None
if kind != KINDS[3]:
    head = int(c2.number_input(f"Head (0..{cfg.n_heads - 1})", min_value=0, step=1, key="iv_head"))
band = None
call = None
if kind == KINDS[0]:
    mode = c3.radio("Replace the head's output with", ("zero", "mean"), key="iv_mode", horizontal=True,
                    help="mean: its average over this text's positions (a constant: causality is kept)")
    call = (iv.ablate_head, (layer, head, mode), {})
elif kind in KINDS[1:3]:
    picked = st.slider("Band (cycles/token; the periods, 1 / frequency, are shown below)", 0.0, 0.5,
                       step=1 / (2 * C), format="%.4f", key="iv_band")
    typed = st.text_input("...or type a band ('0.1 0.15' in cycles/token, 'T 7 9' as periods in tokens)",
                          key="iv_band_text")
    try:
        band = iv.parse_band(typed) if typed.strip() else iv.check_band(picked)
    except ValueError as e:
        st.error(export.md_escape(ui.error_message(e)))
    if band is not None:
        st.caption(f"Band {_freq(band[0])} to {_freq(band[1])}: periods "
                   f"{1 / band[1]:.3g} to {'∞' if band[0] == 0 else f'{1 / band[0]:.3g}'} tokens.")
    if kind == KINDS[1]:
        stream = c3.radio("In", ("learned spectrum", "gate stream"), key="iv_stream", horizontal=True,
                          help="learned spectrum: the causal mask follows, causality is kept; gate stream: g is "
                               "filtered over the whole text, which reads the future (the certificate shows it)")
        bmode = st.radio("Band", ("stop", "pass"), key="iv_band_mode", horizontal=True,
                         format_func=lambda m: "stop it (remove the band)" if m == "stop" else "pass it (keep only it)")
        call = (iv.filter_band, (layer, head, band), {"stream": "spectrum" if stream == "learned spectrum" else "gate",
                                                      "mode": bmode})
    else:
        state = c3.radio("Force the gates", ("closed", "open"), key="iv_gate_state", horizontal=True,
                         help="closed: the bins are removed; open: they pass as if modReLU were off")
        call = (iv.force_gates, (layer, head, band, state), {})
else:
    call = (iv.switch_to_circular, (layer,), {})

result = None
if band is not None or kind in (KINDS[0], KINDS[3]):
    fn, args, kwargs = call
    try:
        result = ui.analysis(fn, ck, text, *args, spinner="Running the intervened model...",
                             passthrough=(ValueError, TextError), **kwargs)
    except (ValueError, TextError) as e:  # one line; the widgets above keep their values
        st.error(export.md_escape(ui.error_message(e)))

if result is not None:
    m1, m2, m3, m4 = st.columns(4)
    # three decimals as on the Overview: four were cut to "2.29…" in a 900 px window
    m1.metric("Bits/byte before", f"{result.bits_before:.3f}")
    m2.metric("Bits/byte after", f"{result.bits_after:.3f}", delta=f"{result.delta_bits:+.3g}", delta_color="inverse")
    m3.metric("Bytes", len(result.labels))
    if result.certificate is not None:
        m4.metric("Causal after", "yes" if result.certificate.causal else "no")
        ui.show_certificate(result.certificate)
    else:
        m4.metric("Causal after", "kept" if cfg.is_causal else "no (model)",
                  help="This intervention keeps the model's causality by construction (it is not re-measured); "
                       "band filters of the gate stream and circular blocks are measured")
    ui.show_figure(figures.loss_change_figure(result), key="iv_fig_loss", file_name=f"{ui.stem(ck)}_loss_change",
                   max_height=figures.TEXT_BOX_PX, pick="pos")
    st.caption("Colour: change of each byte's loss in bits (red: the intervention made it harder to predict, "
               "blue: easier). Click a byte to see the top guesses there."
               + ("" if len(result.labels) <= binning.TEXT_CELLS else
                  f" Binned: the text has {len(result.labels):,} bytes, more than the {binning.TEXT_CELLS:,} drawn one "
                  f"by one, so each cell is the mean change over {binning.bin_width(len(result.labels))} consecutive "
                  "bytes; a click selects the bin's first position. The CSV has every byte."))
    L = len(result.labels)
    pos = ui.linked("pos", "iv_pos", range(L - 1), lambda k: st.slider(
        "Position (the prediction made after reading bytes 0..i)", 0, L - 2, key=k), default=result.position)
    before, after = result.topk_change(pos)
    ui.show_figure(figures.topk_change_figure(before, after, pos, result.labels[pos]), key="iv_fig_topk",
                   file_name=f"{ui.stem(ck)}_topk_pos{pos}")
    d1, d2 = st.columns(2)
    with d1:
        ui.download_csv("Loss per byte (CSV)", lambda: export.csv_bytes({
            "position": np.arange(L), "label": result.labels, "loss_bits_before": result.loss_before,
            "loss_bits_after": result.loss_after, "change_bits": result.loss_change}),
            f"{ui.stem(ck)}_intervention_losses.csv", key="iv_dl_loss")
    with d2:
        ui.download_csv(f"Top-k at position {pos} (CSV)", lambda: export.csv_bytes({
            "when": ["before"] * len(before) + ["after"] * len(after), "byte": [b for b, _ in before + after],
            "probability": [p for _, p in before + after]}), f"{ui.stem(ck)}_topk_pos{pos}.csv", key="iv_dl_topk")



def asked(flag: str, key: tuple, label: str, what: str) -> bool:
    """Whether the long computation `flag` was asked for on this checkpoint and text (`key`); if not,
    a button that asks (a first visit runs none of it: the sweep is hundreds of forward passes)."""
    if ss.get(flag) == key:
        return True
    st.caption(what)
    st.button(label, key=f"{flag}_button", on_click=ss.__setitem__, args=(flag, key))
    return False


# ---- the sweep ------------------------------------------------------------------------------------
st.subheader("Sweep: every head and band")
n_ablations = len(fourier) * cfg.n_heads * 9  # each head zeroed, and each of its 8 bands stopped
if asked("iv_sweep_for", (ck.sha256, str(ck.device), text), "Run the sweep",
         f"The sweep runs about {n_ablations} ablations of this text (every head, and 8 bands of each): "
         "seconds on a GPU, longer on a CPU. Its result stays for this checkpoint and text."):
    try:
        sw = ui.analysis(iv.sweep, ck, text, spinner="Ablating every head and band...",
                         passthrough=(ValueError, TextError))
    except (ValueError, TextError) as e:
        st.error(export.md_escape(ui.error_message(e)))
        st.stop()
    ss["iv_sweep_last"] = sw
    st.plotly_chart(figures.sweep_figure(sw), width="stretch", theme="streamlit", key="iv_sweep_fig",
                    config=ui.plotly_config(f"{ui.stem(ck)}_sweep"), on_select=_apply_sweep_cell,
                    selection_mode="points")
    st.caption(f"Each cell: bits/byte added to {sw.bits_clean:.3f} when that head is zeroed (first column) or one "
               "band of its learned spectrum is stopped (MHF: before the causal mask; FFTNet: its adapted filter), "
               "on a log-frequency grid. Click a cell to apply it above.")
    ui.download_csv("Sweep (CSV)", lambda: export.rows_csv_bytes(sw.rows()),
                    f"{ui.stem(ck)}_sweep.csv", key="iv_dl_sweep")

# ---- activation patching ----------------------------------------------------------------------------
st.subheader("Activation patching")
clean = text
if len(clean.encode("utf-8")) > PATCH_MAX_BYTES:
    clean = clean.encode("utf-8")[:PATCH_MAX_BYTES].decode("utf-8", "ignore")
    st.info(f"Patching runs every block x position: this section uses the first {len(clean.encode('utf-8'))} bytes.")
raw = clean.encode("utf-8")
mid = len(raw) // 2  # the default corruption: the middle byte changed
swapped = (raw[:mid] + (b"q" if raw[mid:mid + 1] == b"z" else b"z") + raw[mid + 1:]).decode("utf-8", "replace")
st.markdown("Run the *corrupted* text with one activation (one block, one position) taken from the *clean* run "
            "(the sidebar's text), and see how much of the clean prediction comes back.")
# keyed by the clean text, so that a new text brings its own default corruption
corrupted = st.text_area("Corrupted text (same length in bytes)", value=swapped, height=80,
                         key=f"iv_corrupt_{hashlib.sha256(raw).hexdigest()[:12]}")
p1, p2 = st.columns(2)
hook = p1.selectbox("Patch", iv.PATCH_HOOKS, key="iv_patch_hook",
                    format_func=lambda h: {"resid_pre": "the residual stream entering the block",
                                           "mixer_out": "the mixer's output", "mlp_out": "the MLP's output"}[h])
n_raw = len(raw)
target = int(p2.number_input(f"Scored position (0..{max(0, n_raw - 2)})", min_value=0,
                             value=max(0, n_raw - 2), step=1, key="iv_patch_pos"))
pr = None
if asked("iv_patch_for", (ck.sha256, str(ck.device), clean), "Run activation patching",
         f"Patching runs {cfg.n_layers} x {len(raw)} copies of the model (every block and position). "
         "Once asked, it follows the corrupted text and the choices above."):
    try:
        pr = ui.analysis(iv.activation_patching, ck, clean, corrupted, hook=hook, position=target,
                         spinner="Patching every block and position...", passthrough=(ValueError, TextError))
    except (ValueError, TextError) as e:
        st.error(export.md_escape(ui.error_message(e)))
if pr is not None:
    ui.show_figure(figures.patching_figure(pr), key="iv_fig_patch", file_name=f"{ui.stem(ck)}_patching")
    ui.download_csv("Patching (CSV)", lambda: export.csv_bytes({
        "block": np.repeat(np.arange(pr.loss_bits.shape[0]), pr.loss_bits.shape[1]),
        "position": np.tile(np.arange(pr.loss_bits.shape[1]), pr.loss_bits.shape[0]),
        "loss_bits": pr.loss_bits.ravel(), "restored": pr.restored.ravel()}),
        f"{ui.stem(ck)}_patching.csv", key="iv_dl_patch")
