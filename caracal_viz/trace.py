"""One forward pass with every mixer's internals, as numpy on the CPU: the raw material of the
other analyses, and the place where NaN/Inf in activations is found and reported (never hidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .checkpoint import Checkpoint


@dataclass
class LayerTrace:
    """One mixer's internals for one text, batch dimension dropped, as numpy (float32 /
    complex64 as recorded; see models/internals.py for the conventions: one-sided rfft spectra,
    backward normalisation, kernels indexed by lag).

    kind, causal_mode, fft_size: as in MixerInternals.
    mixer_input, fft_input, fft_output, mixer_output: (L, D).
    spectrum, gated_spectrum: (H, F) complex or None; gate_bias, gate_open: (H, F) or None.
    kernel_two_sided: (H, 2C) irfft layout or None; kernel: (H, L) causal kernel as applied or None.
    gate_kernel, combined_kernel: (L, D) (mhf) or None.
    adapted_filter: (H, L//2+1) complex (fftnet) or None; data_gate_open: (L//2+1, D) bool (fftnet) or None.
    """

    kind: str
    causal_mode: str
    fft_size: int
    mixer_input: np.ndarray
    fft_input: np.ndarray
    fft_output: np.ndarray
    mixer_output: np.ndarray
    spectrum: np.ndarray | None = None
    gate_bias: np.ndarray | None = None
    gated_spectrum: np.ndarray | None = None
    gate_open: np.ndarray | None = None
    kernel_two_sided: np.ndarray | None = None
    kernel: np.ndarray | None = None
    gate_kernel: np.ndarray | None = None
    combined_kernel: np.ndarray | None = None
    adapted_filter: np.ndarray | None = None
    data_gate_open: np.ndarray | None = None


@dataclass
class NonFinite:
    """Where NaN or Inf appeared in one activation.

    where:     human-readable place, e.g. "block 3 mixer_output" or "logits".
    layer:     block index, or None for the logits.
    name:      the activation's name ("mixer_input", "fft_output", "block_output", "logits", ...).
    n_nan, n_inf: counts of NaN and of +-Inf entries.
    positions: (k,) int, the sequence positions (tokens) that hold at least one of them.
    """

    where: str
    layer: int | None
    name: str
    n_nan: int
    n_inf: int
    positions: np.ndarray


@dataclass
class Trace:
    """The result of `run_trace`.

    text:      the analysed text.
    ids:       (L,) int64 byte ids.
    labels:    L printable labels, `ByteTokenizer.label` of each byte.
    logits:    (L, 256) float32 next-byte logits.
    layers:    one LayerTrace per block, None for attention (SWA) blocks.
    nonfinite: every activation that holds NaN/Inf, in forward order (empty when all finite).
    """

    text: str
    ids: np.ndarray
    labels: list[str]
    logits: np.ndarray
    layers: list[LayerTrace | None]
    nonfinite: list[NonFinite] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        """True when no activation held NaN or Inf."""
        return not self.nonfinite


def run_trace(ck: Checkpoint, text: str) -> Trace:
    """Run the model once on `text` (validated by `encode_text`, raises TextError) on ck.device and
    return the logits and every mixer's internals on the CPU. NaN/Inf in block outputs, mixer
    internals or logits are listed in `Trace.nonfinite` (where, how many, which positions)."""
    raise NotImplementedError
