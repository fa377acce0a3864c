"""Parseval energy: the energy of every mixer's signals counted in time and in frequency (the
identity checked), where along the frequency axis it sits, and how much each layer and head
amplifies or damps it."""

import numpy as np
import streamlit as st

import caracal_viz.app_support as ui
from caracal_viz import energy, export, figures

ck, text = ui.page_setup(
    "Parseval energy",
    "Parseval's theorem: a signal's energy is the same counted over time (sum of squares of the "
    "tokens' values) or over frequency (sum of squared spectrum magnitudes, suitably scaled). "
    "FFTNet takes it as its foundation. Here the identity is checked on every mixer for this "
    "text, then the energy is laid out over frequency (the energy spectral density) and compared "
    "before and after each mixer: the **gain** says which frequencies a layer amplifies (> 1) or damps (< 1).",
)

rep = ui.text_analysis(energy.parseval_report, ck, text, spinner="Measuring energies...")
layers = [i for i, e in enumerate(rep.layers) if e is not None]
if not layers:
    st.info("This checkpoint has no Fourier mixers to measure.")
    st.stop()

if rep.ok:
    st.success(f"Parseval holds in every mixer and head: the largest relative difference between time and "
               f"frequency energy is {rep.max_rel_error:.1e} (tolerance {rep.tolerance:.0e}, float64 sums).")
elif np.isnan(rep.max_rel_error):  # a finding about the checkpoint in the certificate's grey, not a failure
    st.markdown(":gray-background[:material/help: **NaN/Inf**] :gray[Parseval cannot be checked: the mixers' "
                "signals hold NaN/Inf on this text.]")
else:
    st.error(f"Parseval check failed: time and frequency energies differ by up to {rep.max_rel_error:.1e} "
             f"(tolerance {rep.tolerance:.0e}). The spectra here are not scaled as documented.")

ui.show_figure(figures.energy_identity_figure(rep), key="pe_identity", file_name=f"{ui.stem(ck)}_parseval_identity")
st.caption("Each point is one head of one block: its energy counted in time (x) and in frequency (y). "
           "Parseval puts every point on the diagonal.")

bands = energy.energy_bands(rep)
st.subheader("Where the energy goes")
ui.show_figure(figures.energy_bands_figure(bands), key="pe_bands", file_name=f"{ui.stem(ck)}_energy_bands")
loud = [(r, g) for r, g, v in zip(bands.rows, bands.gain_db, bands.verdict) if v != "keeps" and np.isfinite(g)]
st.caption("Each head's energy, into its FFT mixing and out of it, summed over bands of period 1/f (f = 0 is the "
           "text's mean): a head that moves energy to the right of the map sharpens the fast, token-to-token "
           "content; one that moves it left smooths. "
           + (f"Strongest: block {loud[0][0][0]} head {loud[0][0][1]} ({loud[0][1]:+.1f} dB). "
              if (loud := sorted(loud, key=lambda t: -abs(t[1]))) else "")
           + f"A head within ±{bands.keep_db:g} dB keeps its energy.")

ui.show_figure(figures.energy_gain_figure(rep), key="pe_gain", file_name=f"{ui.stem(ck)}_energy_gain")
gain_width = next(e.gain_bins().width for e in rep.layers if e is not None)
st.caption("Gain over frequency, output / input energy spectral density of the FFT stream, in dB, per block "
           "and head: red amplifies that frequency, blue damps it, white (0 dB) keeps it."
           + ("" if gain_width == 1 else
              f" Binned: the text's {next(e.freqs.size for e in rep.layers if e is not None):,} frequency bins are "
              f"drawn in bands of {gain_width} adjacent bins, each the band's output energy over its input energy "
              "(the energy-weighted mean of its bins' gains), at the band's mean frequency."))

c1, c2 = st.columns(2)
layer = ui.linked("layer", "pe_layer", layers, lambda k: c1.selectbox(
    "Layer", layers, format_func=lambda i: f"block {i} ({ck.config.layer_kind(i)})", key=k))
e = rep.layers[layer]
heads = ["all heads"] + [f"head {h}" for h in range(e.esd_input.shape[0])]
pick = c2.selectbox("Head", heads, key="pe_head")
head = None if pick == "all heads" else heads.index(pick) - 1
st.subheader(f"Block {layer}: energy spectral density")
ui.show_figure(figures.esd_figure(e, head), key="pe_esd", file_name=f"{ui.stem(ck)}_esd_block{layer}")
st.caption("Energy per frequency bin of the mixer's FFT input and output (one-sided, Parseval scaled: the "
           "bins sum to the energy), a panel per head on one shared axis."
           + ("" if gain_width == 1 else f" Binned: each point is the mean energy per bin of {gain_width} adjacent "
                                         "bins, at their mean frequency."))


def _table() -> bytes:
    rows = [(i, h, rep.layers[i].input_time[h], rep.layers[i].input_freq[h], rep.layers[i].output_time[h],
             rep.layers[i].output_freq[h], rep.layers[i].input_rel_error[h], rep.layers[i].output_rel_error[h],
             rep.layers[i].energy_gain[h]) for i in layers for h in range(len(rep.layers[i].input_time))]
    names = ("block", "head", "input_time", "input_freq", "output_time", "output_freq", "input_rel_error",
             "output_rel_error", "energy_gain")
    return export.csv_bytes(dict(zip(names, (np.array(c) for c in zip(*rows)))))


def _bands_csv() -> bytes:
    cols = {"block": [i for i, _ in bands.rows], "head": [h for _, h in bands.rows]}
    for j, name in enumerate(bands.names):
        cols[f"input_share {name}"] = bands.input_fraction[:, j]
        cols[f"output_share {name}"] = bands.output_fraction[:, j]
        cols[f"gain_db {name}"] = bands.band_gain_db[:, j]
    return export.csv_bytes({**cols, "gain_db": bands.gain_db, "verdict": bands.verdict})


def _esd_npz() -> bytes:
    return export.npz_bytes(freqs=e.freqs, esd_input=e.esd_input, esd_output=e.esd_output, gain=e.gain,
                        mixer_esd_input=e.mixer_esd_input, mixer_esd_output=e.mixer_esd_output,
                        mixer_gain=e.mixer_gain)


d1, d2, d3 = st.columns(3)
with d1:
    ui.download_csv("Energies per block and head (CSV)", _table, f"{ui.stem(ck)}_parseval.csv", key="pe_csv")
with d3:
    ui.download_csv("Energy by band (CSV)", _bands_csv, f"{ui.stem(ck)}_energy_bands.csv", key="pe_bands_csv")
with d2:
    ui.download_npz(f"Block {layer} spectral densities (NPZ)", _esd_npz, f"{ui.stem(ck)}_esd_block{layer}.npz",
                    key="pe_npz")
