"""Parseval energy: the energy of each mixer's signals in time and in frequency, their energy
spectral densities, and the energy gain of each layer and head over frequency.

Spectra are rfft of size L (no padding), one-sided, backward normalisation, so Parseval reads
sum_t |x_t|^2 = (1/L) sum_k w_k |X_k|^2 with w_k = 1 for DC (and Nyquist when L is even),
2 for every other bin. All sums are float64, computed with torch on the device that holds the
activations (the model's, or the CPU for a given trace); only the per-head results come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models import MixerInternals

from . import binning, spectral
from .checkpoint import Checkpoint
from .device_fft import rfft64
from .trace import Forward

PARSEVAL_TOLERANCE = 1e-9
"""Largest relative difference between time and frequency energy (float64 sums) that passes."""


@dataclass
class LayerEnergy:
    """One mixer's energies for one text of L tokens (F = L // 2 + 1 bins, `freqs` 0..0.5).

    Per head h (the channels of head h of the FFT stream):
    input_time, input_freq:   (H,) energy of the FFT input (value stream) in time / frequency.
    output_time, output_freq: (H,) energy of the FFT output (before the output projection).
    input_rel_error, output_rel_error: (H,) |time - freq| / time (the Parseval check).
    esd_input, esd_output:    (H, F) energy spectral density, Parseval scaled (sums to the energy).
    gain:                     (H, F) esd_output / esd_input (NaN where the input has no energy).
    energy_gain:              (H,) output_time / input_time.
    Whole mixer (all D channels):
    mixer_input_time, mixer_input_freq, mixer_output_time, mixer_output_freq: floats.
    mixer_rel_error:          max relative time/frequency difference of the two.
    mixer_esd_input, mixer_esd_output: (F,) energy spectral densities.
    mixer_gain:               (F,) mixer_esd_output / mixer_esd_input (NaN where no input energy).
    """

    freqs: np.ndarray
    input_time: np.ndarray
    input_freq: np.ndarray
    output_time: np.ndarray
    output_freq: np.ndarray
    input_rel_error: np.ndarray
    output_rel_error: np.ndarray
    esd_input: np.ndarray
    esd_output: np.ndarray
    gain: np.ndarray
    energy_gain: np.ndarray
    mixer_input_time: float
    mixer_input_freq: float
    mixer_output_time: float
    mixer_output_freq: float
    mixer_rel_error: float
    mixer_esd_input: np.ndarray
    mixer_esd_output: np.ndarray
    mixer_gain: np.ndarray

    def gain_bins(self, max_bins: int = binning.MAX_BINS) -> binning.Bins:
        """The gain per head over bands of `binning.bin_width(F, max_bins)` adjacent frequency bins
        (all F bins, width 1, when F <= max_bins): values (H, m), each band's output energy over
        its input energy, sum of esd_output / sum of esd_input (NaN where the band has no input
        energy); starts/ends index `freqs`."""
        return binning.ratio_bins(self.esd_output, self.esd_input, binning.bin_width(self.freqs.size, max_bins))


@dataclass
class ParsevalReport:
    """layers: one LayerEnergy per block (None for attention); max_rel_error: the largest
    relative time/frequency difference anywhere (NaN when activations hold NaN/Inf);
    ok: max_rel_error <= tolerance (False for NaN)."""

    layers: list[LayerEnergy | None]
    max_rel_error: float
    tolerance: float
    ok: bool


# Where the energy sits, in bands of period 1/f (tokens): band 0 is f = 0 alone (the mean over
# the text, usually most of the energy); band i > 0 holds the bins with
# BAND_EDGES[i - 1] < f <= BAND_EDGES[i].
BAND_EDGES = (0.0, 1 / 64, 1 / 16, 1 / 4, 0.5)
BAND_NAMES = ("f = 0 (the mean)", "periods over 64 tokens", "16 to 64 tokens", "4 to 16 tokens", "2 to 4 tokens")
GAIN_KEEP_DB = 1.0
"""A head whose output energy is within this many dB of its input energy keeps it; above it
amplifies, below it attenuates."""


@dataclass
class EnergyBands:
    """Where each head's energy goes, by band of period (`energy_bands`); one row per (block, head).

    edges:           (B,) band edges in cycles/token (band 0: f = 0; band i: edges[i-1] < f <= edges[i]);
    names:           (B,) the bands by period.
    rows:            R (block, head) pairs.
    input_fraction:  (R, B) share of the head's FFT input energy in each band (a row sums to 1).
    output_fraction: (R, B) the same for its output.
    band_gain_db:    (R, B) 10 log10 (output energy / input energy) within the band (NaN: no input).
    gain_db:         (R,) 10 log10 of the head's whole energy gain.
    verdict:         (R,) "amplifies", "attenuates" or "keeps" (|gain_db| <= keep_db), "n/a" for NaN.
    keep_db:         the threshold.
    """

    edges: np.ndarray
    names: tuple[str, ...]
    rows: list[tuple[int, int]]
    input_fraction: np.ndarray
    output_fraction: np.ndarray
    band_gain_db: np.ndarray
    gain_db: np.ndarray
    verdict: list[str]
    keep_db: float


def _db(ratio: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(ratio)


def energy_bands(rep: ParsevalReport, edges: tuple[float, ...] = BAND_EDGES, names: tuple[str, ...] = BAND_NAMES,
                 keep_db: float = GAIN_KEEP_DB) -> EnergyBands:
    """Sum each head's energy spectral densities (`ParsevalReport`) over bands of frequency:
    the share of its input and output energy in each band, the gain within each band and over
    all, and whether the head amplifies, attenuates or keeps its energy."""
    rows, e_in, e_out = [], [], []
    for i, e in enumerate(rep.layers):
        if e is None:
            continue
        band = np.where(e.freqs == 0, 0, np.clip(np.searchsorted(np.asarray(edges), e.freqs, side="left"),
                                                  1, len(edges) - 1))
        onehot = np.eye(len(edges))[band]  # (F, B)
        e_in.append(e.esd_input @ onehot)
        e_out.append(e.esd_output @ onehot)
        rows += [(i, h) for h in range(e.esd_input.shape[0])]
    B = len(edges)
    e_in = np.concatenate(e_in) if e_in else np.zeros((0, B))
    e_out = np.concatenate(e_out) if e_out else np.zeros((0, B))
    tot_in, tot_out = e_in.sum(axis=1, keepdims=True), e_out.sum(axis=1, keepdims=True)
    gain_db = _db(_gain(tot_out[:, 0], tot_in[:, 0]))
    verdict = ["n/a" if not np.isfinite(g) else "keeps" if abs(g) <= keep_db else
               "amplifies" if g > 0 else "attenuates" for g in gain_db]
    return EnergyBands(edges=np.asarray(edges, dtype=np.float64), names=tuple(names), rows=rows,
                       input_fraction=_gain(e_in, np.broadcast_to(tot_in, e_in.shape)),
                       output_fraction=_gain(e_out, np.broadcast_to(tot_out, e_out.shape)),
                       band_gain_db=_db(_gain(e_out, e_in)), gain_db=gain_db, verdict=verdict, keep_db=keep_db)


def parseval_report(ck: Checkpoint, fwd: Forward) -> ParsevalReport:
    """Energies of every mixer for the text of `fwd`, a forward pass of ck (`trace.forward_pass`)."""
    records = fwd.check(ck).records
    layers = [None if rec is None else _layer_energy(rec, ck.config.n_heads) for rec in records]
    errors = [e for layer in layers if layer is not None
              for e in (*layer.input_rel_error, *layer.output_rel_error, layer.mixer_rel_error)]
    worst = float(np.max(errors)) if errors else 0.0
    return ParsevalReport(layers=layers, max_rel_error=worst, tolerance=PARSEVAL_TOLERANCE,
                          ok=bool(worst <= PARSEVAL_TOLERANCE))


def _rel(time: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """|time - freq| / time (0 when both are 0, NaN when activations are not finite)."""
    diff = np.abs(time - freq)
    rel = np.divide(diff, time, out=np.where(diff > 0, np.inf, 0.0), where=time > 0)
    return np.where(np.isfinite(time) & np.isfinite(freq), rel, np.nan)


def _gain(out: np.ndarray, inp: np.ndarray) -> np.ndarray:
    return np.divide(out, inp, out=np.full_like(out, np.nan), where=inp > 0)


def head_energy(x: torch.Tensor, H: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-head energies of a signal x (L, D) (time along axis 0; channel c belongs to head
    c // (D // H)), in float64 on x's device: the time energy sum_t |x_t|^2 (H,) and the
    Parseval-scaled energy spectral density (H, n//2 + 1) of its rfft of size n (default L),
    w_k |X_k|^2 / n summed over the head's channels (it sums to the time energy). numpy float64."""
    x = x.double()
    L, D = x.shape
    n = n or L
    X = rfft64(x, n, dim=0)  # (F, D)
    power = torch.addcmul(X.real * X.real, X.imag, X.imag).reshape(-1, H, D // H).sum(-1)  # (F, H): |X|^2
    w = torch.as_tensor(spectral.one_sided_weights(n) / n, device=x.device)
    esd = (power * w[:, None]).T
    time = (x * x).sum(dim=0).reshape(H, D // H).sum(dim=-1)
    return time.cpu().numpy(), esd.cpu().numpy()


def _head_energy(x: torch.Tensor, H: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (L, D) -> per-head time energy (H,), frequency energy (H,) and ESD (H, F)."""
    time, esd = head_energy(x, H)
    return time, esd.sum(axis=-1), esd


def _layer_energy(rec: MixerInternals, H: int) -> LayerEnergy:
    L = rec.fft_input.shape[1]
    in_t, in_f, esd_in = _head_energy(rec.fft_input[0], H)
    out_t, out_f, esd_out = _head_energy(rec.fft_output[0], H)
    mx_in_t, mx_in_f, mx_esd_in = (a.sum(axis=0) for a in _head_energy(rec.mixer_input[0], 1))
    mx_out_t, mx_out_f, mx_esd_out = (a.sum(axis=0) for a in _head_energy(rec.mixer_output[0], 1))
    return LayerEnergy(
        freqs=spectral.rfft_freqs(L), input_time=in_t, input_freq=in_f, output_time=out_t, output_freq=out_f,
        input_rel_error=_rel(in_t, in_f), output_rel_error=_rel(out_t, out_f), esd_input=esd_in,
        esd_output=esd_out, gain=_gain(esd_out, esd_in), energy_gain=_gain(out_t, in_t),
        mixer_input_time=float(mx_in_t), mixer_input_freq=float(mx_in_f), mixer_output_time=float(mx_out_t),
        mixer_output_freq=float(mx_out_f),
        mixer_rel_error=float(max(_rel(mx_in_t, mx_in_f), _rel(mx_out_t, mx_out_f))),
        mixer_esd_input=mx_esd_in, mixer_esd_output=mx_esd_out, mixer_gain=_gain(mx_esd_out, mx_esd_in),
    )
