"""Compare two checkpoints of the same shape: per-head filter differences and gate changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint
from .filters import LayerFilters, learned_filters
from .gates import LayerGates, gate_report


class CompareError(ValueError):
    """Two checkpoints that cannot be compared head by head; the message says what differs."""


@dataclass
class LayerDiff:
    """One block, checkpoint a against b (grids as in filters.LayerFilters).

    kind:                "mhf" or "fftnet".
    freqs:               (F,) cycles/token.
    magnitude_db_a/_b:   (H, F) |response| in dB of each; db_diff: (H, F) b - a.
    kernel_a/_b:         (H, K) time kernels; kernel_diff: (H, K) b - a.
    kernel_rel_change:   (H,) ||k_b - k_a|| / ||k_a||.
    spectrum_rel_change: (H,) ||S_b - S_a|| / ||S_a|| of the learned spectra.
    open_a/_b:           (H, F) bool gate masks, or None without modReLU.
    opened, closed:      (H, F) bool, gates closed in a and open in b / open in a and closed in b
                         (None unless both have modReLU).
    n_changed:           (H,) number of gates that changed state (0 unless both have modReLU).
    bias_diff:           (H, F) b - a of the modReLU bias, or None unless both have modReLU.
    """

    kind: str
    freqs: np.ndarray
    magnitude_db_a: np.ndarray
    magnitude_db_b: np.ndarray
    db_diff: np.ndarray
    kernel_a: np.ndarray
    kernel_b: np.ndarray
    kernel_diff: np.ndarray
    kernel_rel_change: np.ndarray
    spectrum_rel_change: np.ndarray
    open_a: np.ndarray | None
    open_b: np.ndarray | None
    opened: np.ndarray | None
    closed: np.ndarray | None
    n_changed: np.ndarray
    bias_diff: np.ndarray | None


@dataclass
class Comparison:
    """name_a, name_b: the checkpoints' names; layers: one LayerDiff per block (None where
    neither has a learned filter); summary: one line naming the most changed head."""

    name_a: str
    name_b: str
    layers: list[LayerDiff | None]
    summary: str


def compare_checkpoints(ck_a: Checkpoint, ck_b: Checkpoint) -> Comparison:
    """Compare the per-head filters and gates of two checkpoints. They must have the same
    number of blocks, the same mixer kind per block, the same heads and context (the filter
    grids); otherwise CompareError says what differs."""
    ca, cb = ck_a.config, ck_b.config
    for what, va, vb in (("blocks", ca.n_layers, cb.n_layers), ("heads", ca.n_heads, cb.n_heads),
                         ("context", ca.context, cb.context)):
        if va != vb:
            raise CompareError(f"cannot compare {ck_a.name} and {ck_b.name}: {va} vs {vb} {what}; "
                               "pick two checkpoints of the same shape")
    kinds_a = [ca.layer_kind(i) for i in range(ca.n_layers)]
    kinds_b = [cb.layer_kind(i) for i in range(cb.n_layers)]
    if kinds_a != kinds_b:
        i = next(i for i, (a, b) in enumerate(zip(kinds_a, kinds_b)) if a != b)
        raise CompareError(f"cannot compare {ck_a.name} and {ck_b.name}: block {i} is {kinds_a[i]} vs {kinds_b[i]}; "
                           "pick two checkpoints with the same mixers")
    fa, fb = learned_filters(ck_a), learned_filters(ck_b)
    for i, (x, y) in enumerate(zip(fa, fb)):
        if (x is None) != (y is None):
            raise CompareError(f"cannot compare {ck_a.name} and {ck_b.name}: block {i} has a learned filter in only "
                               "one of them (spectral_filter differs)")
    ga, gb = gate_report(ck_a), gate_report(ck_b)
    layers = [None if x is None else _layer_diff(x, y, g, h) for x, y, g, h in zip(fa, fb, ga, gb)]
    return Comparison(name_a=ck_a.name, name_b=ck_b.name, layers=layers, summary=_summary(ck_a, ck_b, layers))


def _rel_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.linalg.norm(b - a, axis=-1)
    den = np.linalg.norm(a, axis=-1)
    return np.divide(num, den, out=np.where(num > 0, np.inf, 0.0), where=den > 0)


def _layer_diff(a: LayerFilters, b: LayerFilters, ga: LayerGates | None, gb: LayerGates | None) -> LayerDiff:
    both = ga is not None and gb is not None
    opened = (~ga.open & gb.open) if both else None
    closed = (ga.open & ~gb.open) if both else None
    return LayerDiff(
        kind=a.kind, freqs=a.freqs, magnitude_db_a=a.magnitude_db, magnitude_db_b=b.magnitude_db,
        db_diff=b.magnitude_db - a.magnitude_db, kernel_a=a.kernel, kernel_b=b.kernel, kernel_diff=b.kernel - a.kernel,
        kernel_rel_change=_rel_change(a.kernel, b.kernel), spectrum_rel_change=_rel_change(a.spectrum, b.spectrum),
        open_a=None if ga is None else ga.open, open_b=None if gb is None else gb.open, opened=opened, closed=closed,
        n_changed=(opened | closed).sum(axis=-1) if both else np.zeros(a.kernel.shape[0], dtype=int),
        bias_diff=gb.bias - ga.bias if both else None,
    )


def _summary(ck_a: Checkpoint, ck_b: Checkpoint, layers: list[LayerDiff | None]) -> str:
    scored = [(float(d.kernel_rel_change[h]), i, h) for i, d in enumerate(layers) if d is not None
              for h in range(d.kernel_rel_change.size)]
    if not scored:
        return f"{ck_a.name} vs {ck_b.name}: no learned filters to compare"
    change, i, h = max(scored)
    flips = sum(int(d.n_changed.sum()) for d in layers if d is not None)
    return (f"{ck_a.name} vs {ck_b.name}: most changed is block {i} head {h} (kernel changes by {change:.0%} of its "
            f"norm); {flips} gate(s) changed state")
