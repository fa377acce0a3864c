"""Spectral filters: each head's learned filter as a frequency response (heads x frequency), one
head in detail (magnitude, phase, group delay, time kernel), and what the text itself adds
(mhf: the data-dependent gate kernel; fftnet: the input-adapted filter)."""

import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import binning, export, figures, filters

ck, text = ui.page_setup(
    "Spectral filters",
    "Every head multiplies the spectrum of its token stream by a filter **H(f)**. Frequency is in "
    "cycles per token: 0 is the running average (slow, long-range content), 0.5 alternates every "
    "token. A bright bin passes that frequency, a dark one removes it; a head whose filter peaks "
    "at f remembers patterns that repeat every 1/f tokens.",
)

lf = ui.analysis(filters.learned_filters, ck, spinner="Reading the learned filters...")
layers = [i for i, f in enumerate(lf) if f is not None]
if not layers:
    st.info("This checkpoint has no learned spectral filters (attention blocks, or the filter is switched off).")
    st.stop()

c1, c2 = st.columns(2)
c3, c4 = st.columns(2)
layer = ui.linked("layer", "sf_layer", layers, lambda k: c1.selectbox(
    "Layer", layers, format_func=lambda i: f"block {i} ({ck.config.layer_kind(i)})", key=k))
f = lf[layer]
heads = list(range(f.magnitude_db.shape[0]))
head = ui.linked("head", "sf_head", heads, lambda k: c2.selectbox("Head", heads, format_func=lambda h: f"head {h}", key=k))
axis = c3.radio("Frequency axis", figures.FREQ_AXES, horizontal=True, key="sf_axis",
                help="Log frequency spreads out the slow end (near f = 0), where most heads act; period shows "
                     "1/f, how many tokens a pattern takes to repeat")
per_head = c4.toggle("dB below each head's peak", key="sf_norm",
                     help="Show every head in dB below its own peak: its shape, whatever its overall gain")
peaks = filters.filter_peaks(f)
periods = filters.task_periods(ck)
if periods:
    st.caption(f"Green dashed lines: the periods this checkpoint's training task repeats with "
               f"({', '.join(map(str, periods))} tokens; see sample_checkpoints/README.md).")

with st.expander("Every block and head at a glance (click one to show it below)", expanded=True):
    ui.show_figure(figures.filter_grid_figure(lf, axis, (layer, head)), key="sf_grid",
                   file_name=f"{ui.stem(ck)}_filters_grid", pick=("layer", "head"))

st.subheader(f"Block {layer}: every head's filter")
ui.show_figure(figures.filter_heatmap(f.freqs, f.magnitude_db, title=f"|H(f)| in dB, block {layer}", axis=axis,
                                      per_head=per_head, peaks=peaks, periods=periods),
               key="sf_heat", file_name=f"{ui.stem(ck)}_filters_block{layer}")
st.caption(("The response of the causal kernel as applied: the causal mask (negative lags zeroed) changes the "
            "learned spectrum." if f.kind == "mhf" else
            "The base filter, before the text adapts it (below). It is two-sided: it reads the future.")
           + f" One colour range for every head (at most {figures.DB_SPAN:g} dB below the top: the -120 dB floor "
             "of a closed bin would flatten the rest), so heads compare at a glance. ▼ marks each head's strongest "
             "spectral peaks, labelled with their period 1/f in tokens.")

st.subheader(f"Head {head} in detail")
ui.show_figure(figures.filter_detail(f, head, axis, periods), key="sf_detail",
               file_name=f"{ui.stem(ck)}_block{layer}_head{head}")
st.caption("Phase is unwrapped; group delay is how many tokens, on average, each frequency is delayed "
           "by: the typical look-back of the head at that frequency. It is not drawn where |H| is more than "
           f"{figures.GROUP_DELAY_FLOOR_DB:g} dB below the head's peak: the head passes under 1% of the amplitude "
           "there, and the phase swings around the response's zeros. The subtitle says how many bins that leaves "
           "out, and how many far outliers lie off the panel's axis (double-click it to see them); the CSV keeps "
           "every bin.")
ui.show_figure(figures.kernel_figure(f.lags, f.kernel[head], title=f"Time kernel of head {head}",
                                     peak_lags=peaks.lags[head], periods=periods),
               key="sf_kernel", file_name=f"{ui.stem(ck)}_block{layer}_head{head}_kernel")
st.caption(f"Peaks: lags where |k| rises at least {filters.PEAK_PROMINENCE:.0%} of the head's largest weight above "
           "its surroundings (lag 0, the present token, left out): the distances this head looks back.")


def _layer_npz() -> bytes:
    return export.npz_bytes(freqs=f.freqs, spectrum=f.spectrum, gated_spectrum=f.gated_spectrum,
                        response=f.response, magnitude_db=f.magnitude_db, phase=f.phase,
                        group_delay=f.group_delay, kernel=f.kernel, lags=f.lags)


def _head_csv() -> bytes:
    return export.csv_bytes({"freq_cycles_per_token": f.freqs, "magnitude_db": f.magnitude_db[head],
                         "phase_rad": f.phase[head], "group_delay_tokens": f.group_delay[head]})



d1, d2 = st.columns(2)
with d1:
    ui.download_npz(f"Block {layer} filters (NPZ)", _layer_npz, f"{ui.stem(ck)}_filters_block{layer}.npz", key="sf_npz")
with d2:
    ui.download_csv(f"Head {head} response (CSV)", _head_csv, f"{ui.stem(ck)}_block{layer}_head{head}.csv",
                    key="sf_csv")

kind = ck.config.layer_kind(layer)
if kind == "mhf":
    st.subheader("What this text adds: the gate kernel")
    st.markdown("Caracal's mixing is data-dependent: the gate stream **g**, computed from the text, is "
                "itself a causal kernel, multiplied by the learned filter. Below: each head's mean "
                "response over its channels, for the gate alone and for the combined kernel g*k that "
                "actually mixes the value stream.")
    dk = ui.text_analysis(filters.data_kernels, ck, text, spinner="Running the model on the text...")[layer]
    ui.show_figure(figures.data_kernel_figure(dk, head), key="sf_data",
                   file_name=f"{ui.stem(ck)}_block{layer}_datakernel")
    if (width := binning.bin_width(dk.freqs.size)) > 1:
        st.caption(f"Binned: the responses' {dk.freqs.size:,} frequency bins are drawn as the mean dB of {width} "
                   "adjacent bins, at their mean frequency; the NPZ below has every bin.")
    ui.download_npz("Gate and combined kernels (NPZ)",
                    lambda: export.npz_bytes(freqs=dk.freqs, gate_db=dk.gate_db, combined_db=dk.combined_db,
                                         gate_kernel=dk.gate_kernel, combined_kernel=dk.combined_kernel),
                    f"{ui.stem(ck)}_block{layer}_data_kernels.npz", key="sf_dk_npz")
elif kind == "fftnet":
    st.subheader("Base filter against the filter adapted to this text")
    st.markdown("FFTNet adds an input-dependent modulation (an MLP of the mean over all tokens) to its "
                "base filter. The mean reads every token, the future included.")
    ff = ui.text_analysis(filters.fftnet_filters, ck, text, spinner="Running the model on the text...")[layer]
    ui.show_figure(figures.fftnet_filter_figure(ff, head), key="sf_fftnet",
                   file_name=f"{ui.stem(ck)}_block{layer}_head{head}_adapted")
    ui.download_csv("Base and adapted filter (CSV)",
                    lambda: export.csv_bytes({"freq_cycles_per_token": ff.freqs, "base_db": ff.base_db[head],
                                          "adapted_db": ff.adapted_db[head], "open_fraction": ff.data_open[head]}),
                    f"{ui.stem(ck)}_block{layer}_head{head}_adapted.csv", key="sf_ff_csv")
