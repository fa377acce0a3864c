"""Token influence: which earlier bytes a prediction depends on, and how each mixer moves
information between positions.

Two views, both of the checkpoint as it runs (eval mode):

- `token_influence(ck, text)`: the whole model's gradient map,
      M[i, j] = || d log p(x_{i+1} | x_<=i) / d e_j ||_2
  with e_j the input embedding of byte j (or, with `layer=k`, the residual stream entering
  block k at position j). For models whose blocks are MHF mixers (from the layer on), by the
  hand-written batched backward of caracal_viz/influence_backward.py (Triton kernels on a GPU);
  for any other, by batched vector-Jacobian products (torch.func.vjp, then vmap over a chunk of
  one-hot cotangents). Never one Python-level backward pass per row; chunks are sized to memory.
- `mixing_matrices(ck, fwd)` (or one block: `mixing_matrix`): per layer and head, the
  token-to-token matrix of the mixer's sequence-mixing stage (caracal_viz/mixing.py, re-exported
  here; see its docstring for the exact definition per mixer kind).
Both are bounded by the memory budget of caracal_viz/resources.py (`influence_limit`).

What is guaranteed above the diagonal. In exact arithmetic a causal model's map is zero there.
The gradients pass through FFTs, and an FFT spreads rounding error over every position, the
future included, so the computed entries above the diagonal are tiny but not exactly zero
(about 1e-7 of the map's scale: the map runs the MHF's FFT products in float32). Nothing is
masked: the measured upper-triangle maximum travels with the map (`InfluenceMap.upper_max`,
`.upper_rel`) so that rounding (tiny) and a leak (large) can be told apart. For a model whose
config is causal, rows are computed in spans on the prefix they can depend on, so rounding is
measured within each span and the entries past a span's prefix are exactly 0. The mhf mixing
matrices are built from the recorded kernels in float64 numpy, where a causal kernel has no
negative lags at all, so their upper triangle is exactly 0 in mode "pad".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from models.mhf import MultiHeadFourier, fft_options

from . import influence_backward
from .checkpoint import Checkpoint
from .checks import int_arg
from .mixing import mixing_matrices as mixing_matrices  # re-exported: the two views of the page, one import
from .mixing import mixing_matrix as mixing_matrix
from .mixing import upper_triangle_max as upper_triangle_max
from .resources import check_influence_text, graph_bytes, memory_budget, row_bytes
from .results import ROUNDING_REL, TOP_INFLUENCES
from .resources import influence_limit as influence_limit
from .text import utf8_prefix as utf8_prefix  # re-exported: the page and notebooks call influence.utf8_prefix

# Rows per batched backward pass: on one CPU core at L = 512 (caracal-shakespeare, 2026-11-24)
# 16 rows cost 76 ms per row, 4 rows 90 ms (the MHF backward batches its FFTs under vmap). On an
# H100 at L = 4096 the whole map took 4.6 s with 64 rows per pass, 4.5 s with 128, 4.3 s with 256
# and 4.4 s with 512 (12.5 GB at 256: BENCHMARKS.md, question 4). The hand-written backward on an
# H200 at L = 4096 (TF32x3 products): 2.18 s with 128 rows, 2.30 s with 256, 2.60 s with 512.
_MAX_CHUNK = {"cpu": 16}
_MAX_CHUNK_GPU = 256


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
               causal model, FFT rounding in practice, large for a leaky one.
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
        """upper_max / scale: below results.ROUNDING_REL it is (float32 FFT) rounding, above a leak.
        NaN, never 0, when the map holds NaN/Inf below its last row (nothing can be read from it)."""
        if not np.isfinite(self.values[:-1]).all() or not np.isfinite([self.upper_max, self.scale]).all():
            return float("nan")
        return self.upper_max / self.scale if self.scale > 0 else 0.0

    @property
    def reads_future(self) -> bool:
        """True when some prediction depends on a later byte by more than rounding
        (upper_rel >= results.ROUNDING_REL); False when the map holds NaN (nothing can be read)."""
        return bool(self.upper_rel >= ROUNDING_REL)

    def strongest(self, position: int, k: int = TOP_INFLUENCES) -> np.ndarray:
        """(min(k, L),) int: the input positions j that move the prediction after `position` the
        most, largest values[position, j] first, the earlier of equal ones first (NaN counts as
        below every value)."""
        row = self.values[int_arg("position", position, 0, len(self.ids) - 1)]
        return np.argsort(-np.nan_to_num(row, nan=-1.0), kind="stable")[:k]

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


# The whole-model map costs one backward pass per byte, so its time grows as L^2: for
# caracal-shakespeare, 1.8 s at 256 bytes and 23.5 s at 1,024 on a 2-core CPU, 4.6 s at 4,096 on an
# H100 (BENCHMARKS.md, question 4). Interactive use caps it.
INTERACTIVE_BYTES = {"cpu": 256, "cuda": 4096}


def interactive_limit(ck: Checkpoint) -> int:
    """The longest prefix (bytes) the app differentiates at interactive speed on `ck.device`:
    256 on the CPU, 4,096 on a GPU (CARACAL_MAX_INFLUENCE_BYTES overrides), never more than
    `influence_limit(ck)`."""
    raw = os.environ.get("CARACAL_MAX_INFLUENCE_BYTES", "")
    cap = int(raw) if raw.isdigit() and int(raw) > 0 else INTERACTIVE_BYTES.get(ck.device.type, 256)
    return min(cap, influence_limit(ck))


# ---- whole-model influence -------------------------------------------------------------------
def _check_layer(ck: Checkpoint, layer) -> int:
    n = ck.config.n_layers
    if layer is None:
        return 0
    return int_arg("layer", layer, 0, n - 1, expect=f"None or a block index 0..{n - 1}")


def token_influence(ck: Checkpoint, text: str, layer: int | None = None, *,
                    chunk_size: int | None = None) -> InfluenceMap:
    """The whole-model influence map of `text` (see `InfluenceMap`).

    layer:      None: gradients w.r.t. the input embeddings e_j. k in 0..n_layers-1: w.r.t. the
                residual stream x^(k)_j entering block k (the activations are computed once and
                held fixed, so earlier blocks are not differentiated through).
    chunk_size: rows per vectorised backward pass; default sized to fit the memory budget.
    Raises TextError for empty text or text over `influence_limit(ck)`; ValueError for a bad layer.
    """
    ids = check_influence_text(ck, text)
    start = _check_layer(ck, layer)
    model, L = ck.model, len(ids)
    values = np.full((L, L), np.nan)
    if L > 1:
        if chunk_size is None:
            spare = memory_budget(ck) - graph_bytes(ck, L) - 8 * L * L
            widest = _MAX_CHUNK.get(ck.device.type, _MAX_CHUNK_GPU)
            chunk_size = max(1, min(widest, spare // row_bytes(ck, L)))
        else:
            int_arg("chunk_size", chunk_size, 1, expect="a positive integer")
        values[:-1] = _gradient_norms(model, torch.tensor(ids, device=ck.device), start, int(chunk_size),
                                       ck.config.is_causal)
    lower = np.tril(values[:-1], 0) if L > 1 else np.zeros((0, 0))
    upper = np.triu(values[:-1], 1) if L > 1 else np.zeros((0, 0))
    return InfluenceMap(
        values=values, ids=np.asarray(ids, dtype=np.int64), labels=[ck.tokenizer.label(i) for i in ids],
        layer=None if layer is None else start, upper_max=float(upper.max(initial=0.0)),
        scale=float(lower.max(initial=0.0)), causal=ck.config.is_causal,
    )


# Rows are grouped into this many spans of consecutive rows for a causal model, each span run on
# the prefix its rows can depend on: the work falls from L^2 towards L^2 / 2 (to 9/16 of it with
# 8 spans) for 8 forward passes instead of one.
_PREFIX_SPANS = 8


def _row_spans(n_rows: int, chunk: int, causal: bool) -> list[tuple[int, int, int]]:
    """(first row, end row, input length) per span. A causal model's row i depends on positions
    <= i only, so rows [a, b) need the first b positions; any other model needs all of them."""
    if not causal:
        return [(0, n_rows, n_rows + 1)]
    span = chunk * -(-n_rows // (_PREFIX_SPANS * chunk))  # a whole number of chunks
    return [(a, min(a + span, n_rows), min(a + span, n_rows)) for a in range(0, n_rows, span)]


# The chunks' matrix products on a GPU: float32 FMAs in the Triton kernel. Measured on the H200 at
# 4,096 bytes (BENCHMARKS.md question 4): "tf32x3" gave the same error and took 2.30 s against
# 1.62 s (the kernel's loads, not its arithmetic, set its time), "tf32" 1.61 s with 15x the error.
GPU_GEMM = "fp32"


def _gradient_norms(model, ids: torch.Tensor, start: int, chunk: int, causal: bool, *,
                    path: str = "auto") -> np.ndarray:
    """(L-1, L) || d log p(ids[i+1] | ids[:i+1]) / d x^(start)_j ||_2.

    path "auto": the hand-written batched backward (caracal_viz/influence_backward.py) where it
    covers the model (MHF blocks from `start` on), else "plain", autograd's batched VJPs below.
    """
    if path == "auto" and influence_backward.supported(model, start):
        gemm = GPU_GEMM if ids.device.type == "cuda" else "fp32"
        return influence_backward.gradient_norms(model, ids, start, chunk, causal, gemm=gemm)
    if path not in ("auto", "plain"):
        raise ValueError(f"path must be 'auto' or 'plain', got {path!r}")
    return _plain_gradient_norms(model, ids, start, chunk, causal)


def _plain_gradient_norms(model, ids: torch.Tensor, start: int, chunk: int, causal: bool) -> np.ndarray:
    """(L-1, L) || d log p(ids[i+1] | ids[:i+1]) / d x^(start)_j ||_2 by batched VJPs.

    Per span of rows (`_row_spans`), one forward pass builds the pullback (torch.func.vjp); each
    chunk of one-hot cotangents goes through it under torch.func.vmap, which uses the MHF's own
    batched FFT backward. (autograd.grad with is_grads_batched ran every FFT of the backward once
    per row: ~3x slower on the CPU.) The MHF's FFT products run in float32 here: the map is a
    picture of gradient magnitudes, and float32 halves the FFT backward's traffic. Entries a
    span's input does not reach (j >= its length, causal models only) are exactly 0.
    On CUDA every span and chunk has the same shapes (the whole text's FFT size, chunks padded
    with zero cotangents): the first transform of a new size and batch took 0.06-0.27 s on an
    H100 (plan, work area, buffers), and with a size per span a first 4,096-byte text took 15 s
    instead of 6."""
    from torch.func import vjp, vmap

    L = ids.shape[0]
    chunk = min(chunk, L - 1)
    on_gpu = ids.device.type == "cuda"
    mixers = [b.mixer for b in model.blocks if isinstance(b.mixer, MultiHeadFourier)]
    min_size = max((m.fft_size(L) for m in mixers), default=0) if on_gpu else 0
    out = np.zeros((L - 1, L))
    for first, end, length in _row_spans(L - 1, chunk, causal):
        part = ids[:length]
        targets = ids[1:end + 1]
        with torch.no_grad():
            x = model(part[None], stop_at_layer=start)  # the residual stream entering block `start`

        def scored(x0: torch.Tensor) -> torch.Tensor:  # (1, length, D) -> (end,) log-probabilities of the next bytes
            logp = torch.log_softmax(model(x0, start_at_layer=start)[0, :end].double(), dim=-1)  # (end, 256)
            return logp[torch.arange(end, device=ids.device), targets]

        with torch.enable_grad(), fft_options(torch.float32, min_size):
            _, pull = vjp(scored, x.detach())
        with torch.no_grad(), fft_options(torch.float32, min_size):  # no graph of the backward itself
            for s in range(first, end, chunk):
                n = min(chunk, end - s)
                cot = torch.zeros(chunk if on_gpu else n, end, device=ids.device, dtype=torch.float64)
                cot[torch.arange(n), torch.arange(s, s + n)] = 1.0  # one one-hot cotangent per row
                (grad,) = vmap(pull)(cot)
                out[s:s + n, :length] = grad[:n, 0].norm(dim=-1).double().cpu().numpy()  # (rows, length)
    return out
