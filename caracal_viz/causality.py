"""The causality certificate: proof by perturbation that no output reads a later token.

Model level: for random byte sequences of each length, change the token at position t (all
perturbed copies run as one batch) and measure max |logits'[s] - logits[s]| over s < t. Layer
level: perturb one block's mixer input at position t and measure the change of that mixer's
outputs at s < t, as a function of the offset d = t - s (how far into the future the leaking
source lies).

Tolerance: an exactly causal "pad" model is causal in exact arithmetic, but its float32 FFTs
of size ~3L spread rounding of every position over all outputs, so outputs before t move by
float32 rounding of the activations (~1e-7 relative per FFT, ~1e-6 on logits of size ~10).
Leaky mixers move earlier logits by 1e-2 or more. LEAK_TOLERANCE sits between, orders of
magnitude from both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint

LEAK_TOLERANCE = 1e-4
"""Largest |change| of an earlier logit (or, relative to the response, of an earlier mixer output)
still counted as float rounding."""


@dataclass
class LayerLeak:
    """One block's leak, measured on its mixer alone.

    layer, kind:     block index and mixer kind ("mhf", "fftnet", "swa", "attention").
    causal_mode:     the mhf mode, "global" for fftnet, "causal" for attention.
    leak:            max |change of mixer output at s < t| over the perturbations.
    response:        max |change of mixer output at s >= t| (the legitimate response, for scale).
    relative_leak:   leak / response (0 when response is 0).
    causal:          relative_leak <= LEAK_TOLERANCE.
    leak_by_offset:  (Lmax,) max |change| at s = t - d, indexed by d (index 0 is 0).
    worst_offset:    the d with the largest leak (0 when causal).
    source:          one line: where this block's leak comes from (which lags reach the future).
    """

    layer: int
    kind: str
    causal_mode: str
    leak: float
    response: float
    relative_leak: float
    causal: bool
    leak_by_offset: np.ndarray
    worst_offset: int
    source: str


@dataclass
class CausalityReport:
    """The certificate.

    causal:         model_leak <= tolerance (and every value was finite).
    model_leak:     max |change of logits at positions < t| when token t changes.
    tolerance:      LEAK_TOLERANCE.
    lengths:        the sequence lengths tested; trials: random sequences per length.
    leak_by_length: {length: model leak at that length}.
    per_layer:      one LayerLeak per block (attention blocks included: they must show none).
    config_causal:  what the config claims (ModelConfig.is_causal).
    summary:        one line: causal or not, the leak, and where it comes from.
    """

    causal: bool
    model_leak: float
    tolerance: float
    lengths: list[int]
    trials: int
    leak_by_length: dict[int, float]
    per_layer: list[LayerLeak]
    config_causal: bool
    summary: str


def causality_report(ck: Checkpoint, lengths=None, trials: int = 3, seed: int = 0) -> CausalityReport:
    """Measure the leak of the model and of each mixer. lengths: sequence lengths to test
    (default: a short and a context-length one); trials: random sequences per length; seed
    makes the sequences and positions reproducible. Raises ValueError for bad lengths/trials."""
    raise NotImplementedError
