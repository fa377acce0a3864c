"""The causal trick: why "pad to 2L, multiply, inverse FFT, keep the first L" is an exact causal
convolution and what leaks without the padding. A toy explainer first (no checkpoint needed),
then the loaded checkpoint's own kernels and its causality certificate."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import causality, explainer, export, figures, impulse
from caracal_viz.figures import explainer as xf

ss = st.session_state
LENGTHS = (16, 24, 32, 48, 64)
DEFAULTS = {"ct_signal": "spike train", "ct_L": 32, "ct_taps": 24, "ct_decay": 8.0, "ct_delay": 0,
            "ct_osc": 0.0, "ct_n": 32}


def apply_preset() -> None:
    p = explainer.PRESETS[ss["ct_preset"]]
    ss["ct_signal"], ss["ct_taps"], ss["ct_decay"] = p["signal"], p["taps"], p["decay"]
    ss["ct_delay"], ss["ct_osc"] = p["delay"], p["oscillation"]


ui.page_header(
    "The causal trick",
    "A Fourier mixer convolves a sequence of **L** tokens with a kernel of **K** lags using the FFT: "
    "transform, multiply, transform back. The FFT computes a *circular* convolution: whatever runs "
    "past the end of its buffer comes back in at the start, so **late tokens leak into early outputs** "
    "and the model reads the future. Caracal's trick pads the buffer with zeros to **N = 2L** and keeps "
    "only the first L outputs: then nothing wraps and the result is the exact causal convolution "
    "$y_t = \\sum_{j \\le t} h_{t-j}\\, x_j$. Shape a toy signal and filter on the left and watch the two side by side; "
    "then find out how much padding is really needed.")

for k, v in DEFAULTS.items():
    ss.setdefault(k, v)
ss.setdefault("ct_preset", next(iter(explainer.PRESETS)))

# ---- the toy: signal and filter ---------------------------------------------------------------
ctrl, view = st.columns([1, 2], gap="large")
with ctrl:
    st.selectbox("Preset", list(explainer.PRESETS), key="ct_preset", on_change=apply_preset,
                 help="A starting point; the sliders below change it")
    st.radio("Signal", explainer.SIGNALS, key="ct_signal", horizontal=True)
    st.select_slider("Sequence length L", LENGTHS, key="ct_L")
    L = int(ss["ct_L"])
    ss["ct_taps"] = min(int(ss["ct_taps"]), L)
    st.slider("Filter length K (taps)", 1, L, key="ct_taps", help="How far back the filter reaches: lags 0..K-1")
    taps = int(ss["ct_taps"])
    ss["ct_delay"] = min(int(ss["ct_delay"]), taps - 1)
    st.slider("Decay length (tokens)", 0.5, 32.0, step=0.5, key="ct_decay",
              help="How fast the filter's memory fades: e-folding length")
    st.slider("Delay (tokens)", 0, max(taps - 1, 1), key="ct_delay", disabled=taps == 1,
              help="The filter ignores the most recent tokens before this lag")
    st.slider("Oscillation (cycles per token)", 0.0, 0.5, step=0.005, key="ct_osc",
              help="0 is a plain decay; higher values make the filter ring")

x = explainer.toy_signal(ss["ct_signal"], L)
h = explainer.toy_filter(taps, float(ss["ct_decay"]), min(int(ss["ct_delay"]), taps - 1), float(ss["ct_osc"]))
circ = explainer.padding_demo(x, h, L)
padded = explainer.padding_demo(x, h, 2 * L)
K = circ.K

with view:
    ui.show_figure(xf.toy_inputs_figure(x, h), key="ct_fig_inputs", file_name="causal_trick_inputs")
    st.caption("The input x (one value per token) and the filter h by lag: h[m] multiplies the token m steps back.")
    ui.download_csv("Signal and filter (CSV)",
                    lambda: export.csv_bytes({"t_or_lag": np.arange(L), "x": x, "h": np.pad(h, (0, L - len(h)))}),
                    "causal_trick_inputs.csv", key="ct_dl_inputs")

st.subheader("No padding vs. pad to 2L and truncate")
left, right = st.columns(2, gap="large")
with left:
    st.markdown(f"**Circular (N = L = {L})**: leaked energy **{circ.leak_text}**")
    ui.show_figure(xf.outputs_figure(circ), key="ct_fig_circ", file_name="causal_trick_circular")
with right:
    st.markdown(f"**Pad to 2L = {2 * L}, keep the first {L}**: leaked energy **{padded.leak_text}**")
    ui.show_figure(xf.outputs_figure(padded), key="ct_fig_padded", file_name="causal_trick_padded")
st.caption("Green: the exact causal output. Blue circles: what the FFT computes. Red bars: the difference, "
           "made only of future tokens that wrapped around. Shaded: the outputs that read the future.")
ui.download_csv("Both outputs (CSV)",
                lambda: export.csv_bytes({"t": np.arange(L), "x": x, "exact_causal": padded.exact,
                                      "circular_output": circ.fft_output, "circular_leak": circ.leak,
                                      "padded_output": padded.fft_output}),
                "causal_trick_outputs.csv", key="ct_dl_outputs")

# ---- how much padding is enough ------------------------------------------------------------------
st.subheader("How much padding is enough?")
st.markdown(
    f"2L is safe, but the real condition is tighter. Choose the FFT size **N** (L = {L} kept outputs, "
    f"N − L = padding zeros). Each term x[j]·h[m] of the convolution belongs at position j + m; "
    f"positions run up to L + K − 2 = {L + K - 2}. A buffer of N holds positions 0..N−1; the rest wrap to n − N.")
ss["ct_n"] = int(np.clip(int(ss["ct_n"]), L, 2 * L))
st.slider("FFT size N (L = no padding, 2L = Caracal's choice)", L, 2 * L, key="ct_n")
N = int(ss["ct_n"])
demo = explainer.padding_demo(x, h, N)
# ask first, reveal after: the count (and the smallest safe N, from which it follows) stay hidden
# until this L, K, N has been answered or the answer asked for
with st.container(border=True):
    st.markdown(f"**Predict first.** With N = {N}, how many outputs, counting from t = 0, read a *later* "
                "token? (Work it out from L, K and N before you look at the pictures below.)")
    # the buttons sit under the box, not beside it: three abreast, a 900 px window cut their labels
    guess = st.number_input("Your answer: number of outputs", min_value=0, max_value=L, step=1, key="ct_guess")
    q1, q2 = st.columns(2)
    if q1.button("Check my answer", key="ct_check", width="stretch"):
        ss["ct_checked"] = (L, K, N, int(guess))
    if q2.button("Show the answer", key="ct_show", width="stretch"):
        ss["ct_shown"] = (L, K, N)
    count = explainer.future_output_count(L, K, N)
    why = (f"The terms at positions {N}..{L + K - 2} have no room in the buffer and wrap onto outputs "
           f"0..{L + K - 2 - N}: that is L + K − 1 − N = {count} output(s), each fed by tokens "
           f"{N - K + 1} or more steps ahead." if count else
           f"N = {N} ≥ L + K − 1 = {L + K - 1}: every term fits in the buffer and nothing wraps. "
           "The padding only has to hold the kernel's tail, K − 1 zeros, not a full L.")
    if ss.get("ct_checked") == (L, K, N, int(guess)):
        if int(guess) == count:
            st.success(f"Right: {count}. {why}")
        else:
            st.warning(f"Not quite: the answer is {count}. {why}")
    elif ss.get("ct_shown") == (L, K, N):
        st.info(f"The answer is {count}. {why}")
revealed = ss.get("ct_shown") == (L, K, N) or (ss.get("ct_checked") or ())[:3] == (L, K, N)
# two metrics a row: three abreast, a 900 px window cut the labels and values to "answe…"
m1, m2 = st.columns(2)
m1.metric("Leaked energy", demo.leak_text,
          help="||FFT output − exact causal output||² / ||exact||²")
m2.metric("Outputs that read the future", f"{int(demo.future_rows.sum())} of {L}" if revealed else "answer first",
          help=None if revealed else "Shown once you have checked your answer above (or asked for it)")
m3, _ = st.columns(2)
m3.metric("Smallest N with no leak", f"L + K − 1 = {demo.n_min}" if revealed else "answer first")

ui.show_figure(xf.wraparound_figure(demo), key="ct_fig_wrap", file_name="causal_trick_wraparound")
st.caption("Each bar is one coefficient of the full product x(z)·h(z) (the linear convolution). Green: kept "
           "outputs; grey: the padding, computed and thrown away; red: terms past the end of the buffer, "
           "which the FFT wraps around (red arcs) onto the first outputs.")
ui.download_csv("Wrap-around terms (CSV)",
                lambda: export.csv_bytes({"position": np.arange(len(demo.linear_full)), "coefficient": demo.linear_full,
                                      "lands_on": np.arange(len(demo.linear_full)) % N,
                                      "wraps": np.arange(len(demo.linear_full)) >= N}),
                f"causal_trick_wraparound_N{N}.csv", key="ct_dl_wrap")

ui.show_figure(xf.matrices_figure(demo), key="ct_fig_mat", file_name="causal_trick_matrices")
st.caption("The same convolutions as matrices, y = M x: row t lists the weight of every input j in output t. "
           "Circular convolution gives a circulant (every row is the kernel, rotated); the exact causal "
           "convolution a lower-triangular Toeplitz matrix. Anything above the dotted diagonal reads the "
           "future; the wrapped entries are tinted red, the colour of a leak on every page (weights: purple negative, blue "
           "positive). Raise N and watch them leave from the corner.")
ui.download_npz("Matrices (NPZ)",
                lambda: export.npz_bytes(circulant=demo.circulant, matrix=demo.matrix, toeplitz=demo.toeplitz,
                                     reads_future=demo.future, n_fft=N),
                f"causal_trick_matrices_N{N}.npz", key="ct_dl_mat")

sweep = explainer.leak_sweep(x, h)
ui.show_figure(xf.leak_vs_padding_figure(sweep.sizes, sweep.fractions, N, sweep.n_min), key="ct_fig_curve",
               file_name="causal_trick_leak_vs_N")
st.caption(f"Leaked energy for every N from L to 2L (log scale). It is exactly zero from N = {sweep.first_clean} on"
           + (" = L + K − 1" if sweep.clean_by_structure else
              f" (this signal happens to be zero where the last wrapped terms would come from; the matrix "
              f"still has wrapped entries up to N = {sweep.n_min - 1})")
           + ": Caracal's 2L is enough for any kernel of at most L taps.")
ui.download_csv("Leak against N (CSV)", lambda: export.csv_bytes({"n_fft": sweep.sizes, "leak_fraction": sweep.fractions}),
                "causal_trick_leak_vs_N.csv", key="ct_dl_curve")

with st.expander("Details: convolution is polynomial multiplication"):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0])
    st.markdown(
        "Write the signal and the kernel as polynomials, x(z) = Σ x[j] zʲ and h(z) = Σ h[m] zᵐ. Their product "
        "collects every x[j]·h[m] at the power z^(j+m): its coefficients are exactly the linear convolution. "
        f"For example ({explainer.format_poly(a)})·({explainer.format_poly(b)}) = "
        f"**{explainer.format_poly(explainer.poly_product(a, b))}**.\n\n"
        "An FFT of size N evaluates polynomials at the N-th roots of unity, where z^N = 1. So "
        "multiplying spectra multiplies polynomials *modulo z^N − 1*: the term z^(N+r) becomes z^r. With N = 3 "
        f"the same product becomes **{explainer.format_poly(explainer.poly_product_mod(a, b, 3))}**.")
    st.markdown("**Question:** the causal output 0 is x[0]·h[0] = 1, but with N = 3 it came out 4. "
                "Which term moved there, and is it from the past or the future?")
    if st.toggle("Show the answer", key="ct_poly_answer"):
        st.markdown("The z³ term, 3 = x[2]·h[1], had no room in a buffer of 3 and wrapped onto z⁰: output 0 "
                    "received token 2, from the future. Padding to N ≥ 3 + 2 − 1 = 4 gives z³ its own slot "
                    "(which we then throw away) and output 0 is 1 again.")

with st.expander("Details: why the FFT at all"):
    st.markdown(
        "Direct convolution costs L·K multiply-adds per channel (L² for a kernel as long as the context). "
        "The FFT route costs O(N log N): at L = 4096, about 34 million floating-point operations directly "
        "against about 1.6 million for three FFTs of N = 8192 points (≈ 5 N log₂N each), and the gap grows with "
        "L. The price is "
        "the circular wrap-around, and the padding removes it for at most a factor of 2 in N. In Caracal's MHF "
        "the FFT product has three factors (value stream, gate kernel, learned kernel), so the product is up "
        "to 3L − 2 long and the buffer must hold that (N ≥ 3L − 2), or the kernels must be combined and cut to "
        "L lags first.")

# ---- the loaded checkpoint ------------------------------------------------------------------------
st.divider()
st.header("Your checkpoint")
with ui.guard():
    ck = ui.current_checkpoint()
ui.nonfinite_note(ck)
st.markdown(f"**{export.md_escape(ck.name)}**: {ui.model_card(ck)['mixer']}. First its learned kernels, before and after the "
            "causal mask; then the proof by perturbation that no output reads a later token.")

st.subheader("Impulse responses before and after the causal mask")
ctx = int(ck.config.context)
options = [n for n in (32, 64, 128, 256, 512, 1024, 2048) if n < ctx] + [ctx]
length = st.select_slider("Kernel length (tokens)", options, value=min(options, key=lambda n: abs(n - 64)),
                          key="ct_ck_length")
kernels = ui.analysis(impulse.kernel_impulses, ck, int(length), spinner="Computing the learned kernels...")
layers = [i for i, k in enumerate(kernels) if k is not None]
if not layers:
    st.info("This checkpoint has no learned spectral kernel (no spectral filter in its mixers): "
            "there is no mask to show.")
else:
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", layers, key="ct_ck_layer", format_func=lambda i: f"layer {i}")
    ki = kernels[layer]
    head = c2.selectbox("Head", [-1, *range(ki.two_sided.shape[0])], key="ct_ck_head",
                        format_func=lambda h: "all heads" if h < 0 else f"head {h}")
    ui.show_figure(figures.kernel_impulse_figure(ki, None if head < 0 else head), key="ct_fig_kernels",
                   file_name=f"kernels_layer{layer}")
    applied = {
        "pad": "This model applies the masked kernel (solid) with zero padding: an exact causal convolution.",
        "circular": "This model applies the masked kernel (solid) but without padding: the kernel itself is causal, "
                    "yet its late lags wrap around the FFT buffer onto earlier outputs, as in the toy above.",
        "two_sided": "This model applies the kernel without the mask (dotted): its negative lags read the future directly.",
    }.get(ck.config.causal_mode, "") if ck.config.mixer == "mhf" else (
        "FFTNet has no causal mask: it applies the whole two-sided kernel (dotted), adapted to the input, so the "
        "shaded lags read the future; the solid curve is only what a mask would keep.")
    if applied:
        st.markdown(applied)
    mask_share = ", ".join(f"head {h}: {100 * f:.1f} %" for h, f in enumerate(ki.masked_fraction))
    st.caption("Dotted: the kernel the learned spectrum describes, over past (positive) and future "
               "(negative, shaded) lags. Solid: what is left after the causal mask zeroes the future. "
               f"Share of energy the mask removes: {mask_share}.")
    ui.download_npz("Kernels of every layer (NPZ)",
                    lambda: export.npz_bytes(**{f"layer{i}_{f}": getattr(kernels[i], f) for i in layers
                                            for f in ("lags", "two_sided", "causal", "masked_fraction")}),
                    "kernel_impulses.npz", key="ct_dl_kernels")
    after_mask = ki.after_mask
    ui.download_csv(f"Layer {layer} kernels (CSV)",
                    lambda: export.csv_bytes({"lag": ki.lags,
                                          **{f"head{h}_before_mask": ki.two_sided[h] for h in range(len(ki.two_sided))},
                                          **{f"head{h}_after_mask": after_mask[h] for h in range(len(after_mask))}}),
                    f"kernels_layer{layer}.csv", key="ct_dl_kernels_csv")

st.subheader("Causality certificate")
st.markdown("Change one token, run the model again, and check that no earlier output moved; for Fourier "
            "blocks, also prove it from the weights. " + causality.RULE)
precision = "float32"
if ck.device.type == "cuda":
    precision = st.radio("Precision", list(causality.PRECISIONS), horizontal=True, key="ct_precision",
                         format_func=lambda p: causality.PRECISIONS[p],
                         help="bf16 autocast is how the models train; its rounding is larger, and the certificate "
                              "measures it (the floor) and still catches every leak above it")
report = ui.certificate(ck, precision)
ui.show_certificate(report)
st.caption(f"Covered: {report.coverage}; {report.seconds:.1f} s.")
ui.show_figure(figures.causality_figure(report), key="ct_fig_certificate", file_name="causality_certificate")
st.caption("Per block (its mixer alone) and for the whole model, how much an earlier output moves when a later "
           "token changes, relative to the change at and after it (log scale; an exact zero sits on the floor). "
           f"Black ticks: {report.floor_factor:g} rounding floors, above which a change is a leak. "
           "Green: causal; red: leaks; grey: cannot certify (NaN/Inf).")
rows = {
    "layer": [p.layer for p in report.per_layer],
    "mixer": [p.kind for p in report.per_layer],
    "mode": [p.causal_mode for p in report.per_layer],
    "verdict": [p.verdict for p in report.per_layer],
    "structure": [p.structure.status for p in report.per_layer],
    "relative leak": [f"{p.relative_leak:.2g}" for p in report.per_layer],
    "leak / floor": [f"{p.floor_ratio:.3g}" for p in report.per_layer],
    "worst offset (tokens ahead)": [p.worst_offset if p.verdict == causality.LEAKS else "" for p in report.per_layer],
    "evidence": [p.source for p in report.per_layer],
}
with st.expander("Per-layer details: the evidence for each block", expanded=report.verdict != causality.CAUSAL):
    st.dataframe(rows, hide_index=True, width="stretch")
leaky = report.leaking_layers
if leaky:
    ui.show_figure(xf.leak_by_offset_figure(report.leak_curves, report.leak_tolerance), key="ct_fig_offsets",
                   file_name="leak_by_offset")
    st.caption("For each leaking layer: how much an earlier output moves (relative to the layer's normal "
               "response) when the token d steps later is changed. A circular mixer leaks from tokens up to "
               "the kernel's reach ahead; a global (FFTNet) mixer from everywhere; a two-sided kernel from its "
               "future lags. Grey dashed: the rounding tolerance, the largest of these layers' "
               f"{report.floor_factor:g} rounding floors relative to its response: above it, every layer's change "
               "is a leak.")
    ui.download_npz("Leak by offset (NPZ)",
                    lambda: export.npz_bytes(**{f"layer{p.layer}_leak_by_offset": p.leak_by_offset for p in leaky},
                                         **{f"layer{p.layer}_response": p.response for p in leaky}),
                    "leak_by_offset.npz", key="ct_dl_offsets")
ui.download_csv("Per-layer evidence (CSV)",
                lambda: export.csv_bytes({"layer": rows["layer"], "mixer": rows["mixer"], "mode": rows["mode"],
                                      "verdict": rows["verdict"], "structure": rows["structure"],
                                      "leak": [p.leak for p in report.per_layer],
                                      "response": [p.response for p in report.per_layer],
                                      "floor": [p.floor for p in report.per_layer],
                                      "relative_leak": [p.relative_leak for p in report.per_layer],
                                      "floor_ratio": [p.floor_ratio for p in report.per_layer],
                                      "worst_offset": [p.worst_offset for p in report.per_layer]}),
                "causality_per_layer.csv", key="ct_dl_causal")
