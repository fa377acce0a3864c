"""modReLU gates: modReLU(z) = ReLU(|z| + b) z / |z|, so the gate of a bin is open where
|z| + b > 0 and scales its energy by (ReLU(|z| + b) / |z|)^2 (its transmission).

mhf: z is the head's learned spectrum S_h (a gate per head and bin of the rfft grid of size 2C,
freqs 0..0.5 cycles/token); the gates do not depend on the text. fftnet: z is the filtered data
spectrum X W of each channel, so which gates open depends on the text; the static view uses the
base filter, |W_base| + b > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import MixerInternals

from . import spectral
from .checkpoint import Checkpoint
from .energy import head_energy
from .filters import resample_spectrum
from .results import DEAD_OPEN_FRACTION
from .trace import Forward, LayerTrace, static_internals


@dataclass
class LayerGates:
    """One mixer's gates.

    kind:             "mhf" or "fftnet".
    freqs:            (F,) cycles/token of the gate bins (mhf F = C + 1; fftnet F = C // 2 + 1).
    bias:             (H, F) modReLU bias b.
    magnitude:        (H, F) |z| of the static gate input (mhf |S_h|, fftnet |W_base|).
    open:             (H, F) bool, |z| + b > 0 (static).
    transmission:     (H, F) energy fraction each static gate passes, (ReLU(|z| + b) / |z|)^2
                      (0 where |z| = 0; above 1 where b > 0: an open gate can amplify). fftnet:
                      for a unit data spectrum (z = W_base).
    open_fraction:    (H,) fraction of open gates per head (from `data_open` when a text is given
                      for fftnet, else from `open`).
    dead:             (H,) bool, open_fraction <= DEAD_OPEN_FRACTION.
    -- with a text only (else None) --
    data_open:        (H, F) fraction of gates open for this text, per gate bin (mhf: equal to
                      `open`; fftnet: over the head's channels and the data bins pooled onto that
                      bin, NaN where no data bin falls, i.e. when L < C).
    token_energy:     (H, F) energy of the signal reaching the gates per gate bin (Parseval
                      scaled, one-sided weights): mhf the value stream v (the token spectrum the
                      learned filter multiplies, on an rfft grid that is a multiple of 2C),
                      fftnet the filtered spectrum X W (rfft of size L). The text's bins are pooled
                      onto the nearest gate bin, so totals are preserved.
    passed_energy:    (H, F) the part of token_energy that the gates let through.
    passed_fraction:  (H,) passed / token energy, per head (can exceed 1 where biases are positive).
    """

    kind: str
    freqs: np.ndarray
    bias: np.ndarray
    magnitude: np.ndarray
    open: np.ndarray
    transmission: np.ndarray
    open_fraction: np.ndarray
    dead: np.ndarray
    data_open: np.ndarray | None = None
    token_energy: np.ndarray | None = None
    passed_energy: np.ndarray | None = None
    passed_fraction: np.ndarray | None = None


def gate_report(ck: Checkpoint, fwd: Forward | None = None) -> list[LayerGates | None]:
    """Per block, its modReLU gates (None for attention blocks and mixers without modReLU).
    With `fwd`, a forward pass of ck on a text (`trace.forward_pass(ck, text)`), also the energy
    each gate passes for that text."""
    layers = static_internals(ck)
    records = [None] * len(layers) if fwd is None else fwd.check(ck).records
    H = ck.config.n_heads
    out: list[LayerGates | None] = []
    for rec, text_rec in zip(layers, records):
        if rec is None or rec.gate_bias is None:
            out.append(None)
            continue
        gates = _static_gates(rec)
        if fwd is not None:
            (_mhf_text if rec.kind == "mhf" else _fftnet_text)(gates, text_rec, H)
        gates.dead = gates.open_fraction <= DEAD_OPEN_FRACTION
        out.append(gates)
    return out


def _transmission(mag: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(ReLU(|z| + b) / |z|)^2, 0 where |z| = 0."""
    passed = np.maximum(mag + bias, 0.0)
    return np.divide(passed, mag, out=np.zeros_like(mag), where=mag > 0) ** 2


def _static_gates(rec: LayerTrace) -> LayerGates:
    mag = np.abs(rec.spectrum.astype(np.complex128))
    bias = rec.gate_bias.astype(np.float64)
    open_ = mag + bias > 0
    F = mag.shape[-1]
    freqs = np.fft.rfftfreq(rec.kernel_two_sided.shape[-1]) if rec.kind == "mhf" else np.linspace(0.0, 0.5, F)
    return LayerGates(kind=rec.kind, freqs=freqs, bias=bias, magnitude=mag, open=open_,
                      transmission=_transmission(mag, bias), open_fraction=open_.mean(axis=-1),
                      dead=np.zeros(mag.shape[0], dtype=bool))


def _pool(values: np.ndarray, target: np.ndarray, n_out: int) -> np.ndarray:
    """Sum values (..., F) into n_out bins: bin k goes to target[k]."""
    out = np.zeros(values.shape[:-1] + (n_out,))
    np.add.at(out, (..., target), values)
    return out


def _esd_per_head(X: np.ndarray, n: int, H: int) -> np.ndarray:
    """Parseval-scaled energy per one-sided bin of a (F, D) spectrum of size n, summed per head: (H, F)."""
    e = spectral.one_sided_weights(n)[:, None] * np.abs(X) ** 2 / n  # (F, D)
    return e.reshape(e.shape[0], H, -1).sum(axis=-1).T


def _mhf_text(gates: LayerGates, rec: MixerInternals, H: int) -> None:
    two_c = 2 * (gates.bias.shape[-1] - 1)  # the gates sit on the rfft grid of size 2C
    L = rec.fft_input.shape[1]
    n = two_c * -(-L // two_c)  # a multiple of 2C >= L: every data bin lies on or between gate bins
    _, energy = head_energy(rec.fft_input[0], H, n)
    target = np.rint(np.arange(n // 2 + 1) * two_c / n).astype(int)
    gates.token_energy = _pool(energy, target, two_c // 2 + 1)
    gates.passed_energy = gates.token_energy * gates.transmission
    gates.data_open = gates.open.astype(np.float64)
    gates.passed_fraction = _ratio(gates.passed_energy.sum(-1), gates.token_energy.sum(-1))


def _fftnet_text(gates: LayerGates, rec: MixerInternals, H: int) -> None:
    L = rec.fft_input.shape[1]
    F = L // 2 + 1
    X = np.fft.rfft(rec.fft_input[0].cpu().numpy().astype(np.float64), n=L, axis=0)  # (F, D)
    dh = X.shape[1] // H
    W = np.repeat(rec.adapted_filter[0].cpu().numpy().astype(np.complex128), dh, axis=0).T  # (F, D)
    bias = np.repeat(resample_spectrum(gates.bias.astype(np.complex128), F).real, dh, axis=0).T
    Z = X * W
    kept = spectral.modrelu(Z, bias)
    n_gate = gates.bias.shape[-1]
    target = np.minimum(np.rint(np.arange(F) * 2 * (n_gate - 1) / max(L, 1)).astype(int), n_gate - 1)
    gates.token_energy = _pool(_esd_per_head(Z, L, H), target, n_gate)
    gates.passed_energy = _pool(_esd_per_head(kept, L, H), target, n_gate)
    is_open = (np.abs(Z) + bias > 0).reshape(F, H, dh).sum(axis=-1).T.astype(np.float64)  # (H, F)
    count = _pool(np.full((H, F), float(dh)), target, n_gate)
    gates.data_open = np.divide(_pool(is_open, target, n_gate), count, out=np.full_like(count, np.nan),
                                where=count > 0)
    gates.open_fraction = is_open.sum(-1) / (F * dh)
    gates.passed_fraction = _ratio(gates.passed_energy.sum(-1), gates.token_energy.sum(-1))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)
