"""Token influence: which earlier bytes a prediction depends on, and how each mixer moves
information between positions.

Two views, both exact for the checkpoint as it runs (float32, eval mode):

- `token_influence(ck, text)`: the whole model's gradient map,
      M[i, j] = || d log p(x_{i+1} | x_<=i) / d e_j ||_2
  with e_j the input embedding of byte j (or, with `layer=k`, the residual stream entering
  block k at position j). Computed with vectorised autograd (torch.func.vmap over one VJP per
  row, in memory-bounded chunks), never one Python backward pass per row.
- `mixing_matrices(ck, text)`: per layer and head, the token-to-token matrix of the mixer's
  sequence-mixing stage (see its docstring for the exact definition per mixer kind).

Causality: in a causal model every entry above the diagonal is zero in exact arithmetic. The
whole-model gradients pass through float32 FFTs, whose rounding puts tiny non-zero values
above the diagonal; nothing is masked: the measured upper-triangle maximum is returned next to
the map (`InfluenceMap.upper_max`, `.upper_rel`) so that a leak (large) and rounding (tiny) can
be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint


@dataclass
class InfluenceMap:
    """The whole-model token influence map of one text.

    values:    (L, L) float64, values[i, j] = || d log p(x_{i+1} | x_<=i) / d e_j ||_2 (natural log,
               L2 norm over the D embedding coordinates). Row L-1 is NaN: the text has no byte
               after its last one, so there is nothing to score.
    ids:       (L,) int64 byte ids of the text.
    labels:    L printable labels, `ByteTokenizer.label` of each byte.
    layer:     None (gradients w.r.t. the input embeddings) or k (w.r.t. the residual stream
               entering block k; k = 0 is the same as None).
    upper_max: max of values[i, j] over j > i (rows with a target): 0 in exact arithmetic for a
               causal model, float32 FFT rounding in practice, large for a leaky one.
    scale:     max of values over j <= i (the map's own scale, for a relative reading).
    causal:    whether the checkpoint's config claims causality (`ck.config.is_causal`).

    `np.asarray(m)` gives `values`, so the map can be used where an (L, L) array is expected.
    """

    values: np.ndarray
    ids: np.ndarray
    labels: list[str]
    layer: int | None
    upper_max: float
    scale: float
    causal: bool

    @property
    def upper_rel(self) -> float:
        """upper_max / scale: ~1e-7 is float32 rounding; 1e-3 and above is a real leak."""
        return self.upper_max / self.scale if self.scale > 0 else 0.0

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def influence_limit(ck: Checkpoint) -> int:
    """The longest text (bytes) that `token_influence` and `mixing_matrices` will compute on
    `ck.device`: a memory bound (about half the free memory of the device), rounded down to a
    multiple of 64. Longer texts raise `TextError` naming this limit."""
    raise NotImplementedError


def token_influence(ck: Checkpoint, text: str, layer: int | None = None, *,
                    chunk_size: int | None = None) -> InfluenceMap:
    """The whole-model influence map of `text` (see `InfluenceMap`).

    layer:      None: gradients w.r.t. the input embeddings e_j. k in 0..n_layers-1: w.r.t. the
                residual stream x^(k)_j entering block k (the activations are computed once and
                held fixed, so earlier blocks are not differentiated through).
    chunk_size: rows per vectorised backward pass; default sized to fit the memory budget.
    Raises TextError for empty text or text over `influence_limit(ck)`; ValueError for a bad layer.
    """
    raise NotImplementedError


def mixing_matrices(ck: Checkpoint, text: str) -> list[np.ndarray | None]:
    """Per block, the (H, L, L) float32 token-to-token mixing matrices of its mixer on `text`
    (None for attention blocks). Entry [h, t, j] says how strongly position j feeds output t.

    For channel c, the mixing matrix is the Jacobian d y[:, c] / d v[:, c] of the FFT stage
    output y (`MixerInternals.fft_output`) w.r.t. its input v (`fft_input`), with the other
    stream held at its value on this text:
    - mhf: y is linear in v for a fixed gate kernel g, so the matrix is exactly the Toeplitz
      (or, in causal_mode "circular", circulant) matrix of the kernel that is applied: the
      combined kernel h = (g * k)[:L] per channel (two_sided mode: with k's negative lags).
      Computed in float64 from the recorded g and k; entries above the diagonal are exactly 0
      in causal_mode "pad".
    - fftnet: y = irfft(modReLU(rfft(v) * W; b)) with the input-adapted filter W fixed (its
      dependence on the whole-sequence mean is not part of this matrix; the whole-model
      `token_influence` includes it). The Jacobian at this input, by vectorised autograd.
    Heads: entry [h, t, j] is the RMS over the head's dh channels of the channel matrices.
    Raises TextError for empty text or text over `influence_limit(ck)`.
    """
    raise NotImplementedError


def upper_triangle_max(m: np.ndarray) -> float:
    """Max |m[..., t, j]| over j > t (the entries a causal map must not have); NaN ignored."""
    raise NotImplementedError
