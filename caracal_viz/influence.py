"""Token influence: which earlier bytes a prediction depends on, and how each mixer moves
information between positions.

Two views, both of the checkpoint as it runs (eval mode):

- `token_influence(ck, text)`: the whole model's gradient map,
      M[i, j] = || d log p(x_{i+1} | x_<=i) / d e_j ||_2
  with e_j the input embedding of byte j (or, with `layer=k`, the residual stream entering
  block k at position j). Computed with batched vector-Jacobian products (torch.func.vjp, then
  vmap over a chunk of one-hot cotangents), never one Python-level backward pass per row;
  chunks are sized to memory.
- `mixing_matrices(ck, text)` (or one block: `mixing_matrix`): per layer and head, the
  token-to-token matrix of the mixer's sequence-mixing stage (see its docstring for the exact
  definition per mixer kind).

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
import scipy.signal
import torch

from models.fftnet import resample_bins
from models.fourier import modrelu
from models.mhf import MultiHeadFourier, fft_options

from .checkpoint import Checkpoint
from .checks import int_arg
from .spectral import upper_triangle_maxima
from .text import TextError, encode_text
from .text import utf8_prefix as utf8_prefix  # re-exported: the page and notebooks call influence.utf8_prefix
from .trace import text_internals

# Autograd memory per token, per block and per unit of width, in 4-byte words: one forward graph,
# and one more row of a batched backward pass (float32 FFTs). Measured 2026-11-24 for
# caracal-shakespeare: at L = 1024 on the CPU (peak RSS) 64 words for the graph and 5.1 per row; at
# L = 4096 on an H100 (peak allocated) 3.0 per row. Rounded up for what a peak reading can miss.
_GRAPH_WORDS = 96
_ROW_WORDS = 8
# Rows per batched backward pass: on one CPU core at L = 512 (caracal-shakespeare, 2026-11-24)
# 16 rows cost 76 ms per row, 4 rows 90 ms (the MHF backward batches its FFTs under vmap). On an
# H100 at L = 4096 the whole map took 4.6 s with 64 rows per pass, 4.5 s with 128, 4.3 s with 256
# and 4.4 s with 512 (12.5 GB at 256: BENCHMARKS.md, question 4).
_MAX_CHUNK = {"cpu": 16}
_MAX_CHUNK_GPU = 256
_LIMIT_CAP = 1 << 16


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
        """upper_max / scale: 1e-6 and below is (float32 FFT) rounding; 1e-3 and above is a real leak.
        NaN, never 0, when the map holds NaN/Inf below its last row (nothing can be read from it)."""
        if not np.isfinite(self.values[:-1]).all() or not np.isfinite([self.upper_max, self.scale]).all():
            return float("nan")
        return self.upper_max / self.scale if self.scale > 0 else 0.0

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


# ---- memory budget ---------------------------------------------------------------------------
def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            raw = f.read().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def _free_bytes(device: torch.device) -> int:
    """Free memory on the device: CUDA's own count, else the smaller of the kernel's
    MemAvailable and what a cgroup v2 memory limit (a container) still allows."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        free = max(0, limit - used) if free is None else min(free, max(0, limit - used))
    return free if free is not None else 4 << 30  # no /proc: assume a modest machine


def _budget(ck: Checkpoint) -> int:
    """Half the device's free memory: room for the rest of the app and for estimate error."""
    return _free_bytes(ck.device) // 2


def _graph_bytes(ck: Checkpoint, L: int) -> int:
    cfg = ck.config
    return 4 * _GRAPH_WORDS * L * cfg.n_layers * cfg.d_model


def _row_bytes(ck: Checkpoint, L: int) -> int:
    cfg = ck.config
    return 4 * _ROW_WORDS * L * cfg.n_layers * cfg.d_model


def _mixing_bytes(ck: Checkpoint, L: int) -> int:
    """The (H, L, L) float32 result per mixer block plus one float64 head being built."""
    cfg = ck.config
    n_mixers = sum(cfg.layer_kind(i) != "swa" for i in range(cfg.n_layers))
    return 4 * n_mixers * cfg.n_heads * L * L + 8 * 2 * L * L


def _needed_bytes(ck: Checkpoint, L: int) -> int:
    influence = _graph_bytes(ck, L) + _row_bytes(ck, L) + 8 * L * L
    return max(influence, _mixing_bytes(ck, L))


def influence_limit(ck: Checkpoint) -> int:
    """The longest text (bytes) that `token_influence` and `mixing_matrices` will compute on
    `ck.device`: a memory bound (half the device's free memory now, against an estimate of the
    autograd graph, one batched backward row and the (H, L, L) mixing matrices of every layer),
    rounded down to a multiple of 64. Longer texts raise `TextError` naming this limit.
    Time grows as L^2 (L backward passes of length L): see the report for measured seconds."""
    budget = _budget(ck)
    lo, hi = 0, _LIMIT_CAP
    while lo < hi:  # largest L with _needed_bytes(L) <= budget; the estimate grows with L
        mid = (lo + hi + 1) // 2
        if _needed_bytes(ck, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return max(64, lo // 64 * 64)


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


def _check_text(ck: Checkpoint, text: str) -> list[int]:
    ids = encode_text(text)
    limit = influence_limit(ck)
    if len(ids) > limit:
        raise TextError(f"the text is {len(ids)} bytes, over the token-influence limit of {limit} bytes for "
                        f"this model on {ck.device.type} (a memory bound): shorten the text")
    return ids


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
    ids = _check_text(ck, text)
    start = _check_layer(ck, layer)
    model, L = ck.model, len(ids)
    values = np.full((L, L), np.nan)
    if L > 1:
        if chunk_size is None:
            spare = _budget(ck) - _graph_bytes(ck, L) - 8 * L * L
            widest = _MAX_CHUNK.get(ck.device.type, _MAX_CHUNK_GPU)
            chunk_size = max(1, min(widest, spare // _row_bytes(ck, L)))
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


def _gradient_norms(model, ids: torch.Tensor, start: int, chunk: int, causal: bool) -> np.ndarray:
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


# ---- per-layer mixing matrices ---------------------------------------------------------------
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
      `token_influence` includes it). The Jacobian at this input, by vectorised autograd
      (vmap over jacrev, channels in memory-bounded chunks), in float64.
    Heads: entry [h, t, j] is the RMS over the head's dh channels of the channel matrices,
    sqrt(mean_c J_c[t, j]^2): a magnitude (the signs of different channels would cancel in a mean).
    Raises TextError for empty text or text over `influence_limit(ck)`.
    """
    _check_text(ck, text)
    internals = text_internals(ck, text)  # the forward pass the other analyses of this text share
    return [None if rec is None else _mixing_heads(ck, rec, i) for i, rec in enumerate(internals)]


def mixing_matrix(ck: Checkpoint, text: str, layer: int) -> np.ndarray:
    """One block's (H, L, L) float32 mixing matrices, `mixing_matrices(ck, text)[layer]`, without
    building the others (at 4,096 bytes each block's matrices are 4 heads x 64 MB).
    Raises TextError as `mixing_matrices`; ValueError for a layer that is not a Fourier mixer."""
    if layer is None:
        raise ValueError(f"layer must be a block index 0..{ck.config.n_layers - 1}, got None")
    k = _check_layer(ck, layer)
    if ck.config.layer_kind(k) == "swa":
        raise ValueError(f"block {k} is an attention block: it has no Fourier mixing matrix")
    _check_text(ck, text)
    return _mixing_heads(ck, text_internals(ck, text)[k], k)


def _mixing_heads(ck: Checkpoint, rec, layer: int) -> np.ndarray:
    if rec.kind == "mhf":
        return _toeplitz_heads(_mhf_lag_kernels(ck, rec), ck.config.n_heads)
    return _fftnet_jacobian_heads(ck, rec, ck.model.blocks[layer].mixer)


def _mhf_lag_kernels(ck: Checkpoint, rec) -> np.ndarray:
    """(D, 2L-1) float64 w_c[d], the weight of v_j in y_t[c] at lag d = t - j (index d + L - 1)."""
    cfg = ck.config
    g = rec.gate_kernel[0].double().cpu().numpy().T  # (D, L)
    D, L = g.shape
    dh = cfg.head_dim
    w = np.zeros((D, 2 * L - 1))
    if cfg.spectral_filter:
        causal_k = np.repeat(rec.kernel.double().cpu().numpy(), dh, axis=0)  # (D, L), lags 0..L-1
    else:
        causal_k = np.zeros((D, L))
        causal_k[:, 0] = 1.0  # no learned filter: g alone is the kernel
    if cfg.causal_mode == "circular":
        # N = L: lag d and lag d - L land on the same FFT bin, so the kernel is periodic in L
        c = np.fft.irfft(np.fft.rfft(g, n=L) * np.fft.rfft(causal_k, n=L), n=L)  # (D, L)
        d = np.arange(-(L - 1), L)
        return c[:, d % L]
    if cfg.causal_mode == "two_sided" and cfg.spectral_filter:
        # N >= 3L - 2 leaves no wrap-around, but k keeps its negative lags (up to C of them)
        two = rec.kernel_two_sided.double().cpu().numpy()  # (H, 2C), irfft layout
        C = two.shape[-1] // 2
        full = np.zeros((D, 2 * L - 1))  # k over lags -(L-1)..L-1
        full[:, L - 1:] = causal_k
        neg = min(L - 1, C)
        if neg > 0:
            full[:, L - 1 - neg:L - 1] = np.repeat(two[:, 2 * C - neg:], dh, axis=0)
        conv = scipy.signal.fftconvolve(g, full, axes=-1)  # lags -(L-1)..2L-2
        return conv[:, : 2 * L - 1]
    # "pad": the exact causal convolution; nothing reaches a negative lag
    w[:, L - 1:] = scipy.signal.fftconvolve(g, causal_k, axes=-1)[:, :L]
    return w


def _toeplitz_heads(w: np.ndarray, n_heads: int) -> np.ndarray:
    """(D, 2L-1) lag kernels -> (H, L, L) float32 with [h, t, j] = RMS_c w_c[t - j]."""
    D, n_lags = w.shape
    L = (n_lags + 1) // 2
    rms = np.sqrt(np.mean(w.reshape(n_heads, D // n_heads, n_lags) ** 2, axis=1)).astype(np.float32)  # (H, 2L-1)
    # Row t of the matrix is rms at lags t, t-1, .., t-L+1: a window of the reversed lag axis. A
    # strided view and one copy, instead of gathering an (H, L, L) float64 index (10x slower).
    rev = np.ascontiguousarray(rms[:, ::-1])  # index i is lag L-1-i
    windows = np.lib.stride_tricks.sliding_window_view(rev, L, axis=-1)  # (H, L, L): [h, s, j] = lag L-1-s-j
    return np.ascontiguousarray(windows[:, ::-1])  # [h, t, j] with s = L-1-t: lag t-j


def _fftnet_jacobian_heads(ck: Checkpoint, rec, mixer) -> np.ndarray:
    v = rec.fft_input[0].to(torch.float64)  # (L, D)
    L, D = v.shape
    H, dh = ck.config.n_heads, ck.config.head_dim
    W = torch.view_as_real(rec.adapted_filter[0].to(torch.complex128))  # (H, F, 2): jacrev takes real inputs
    with torch.no_grad():
        bias = resample_bins(mixer.gate_bias.detach().to(torch.float64), W.shape[1])  # (H, F)

    def channel(v_c, w_c, b_c):  # (L,), (F, 2), (F,) -> (L,)
        return torch.fft.irfft(modrelu(torch.fft.rfft(v_c, n=L) * torch.view_as_complex(w_c), b_c), n=L)

    jac = torch.func.vmap(torch.func.jacrev(channel, argnums=0))
    per_chunk = max(1, min(dh, (_budget(ck) // 8) // max(1, 24 * L * L)))
    out = np.empty((H, L, L), dtype=np.float32)
    for h in range(H):
        sq = torch.zeros(L, L, dtype=torch.float64, device=v.device)
        for s in range(0, dh, per_chunk):
            cols = range(h * dh + s, h * dh + min(dh, s + per_chunk))
            vc = v[:, list(cols)].T  # (n, L)
            n = vc.shape[0]
            J = jac(vc, W[h].expand(n, -1, -1), bias[h].expand(n, -1))  # (n, L, L)
            sq += (J**2).sum(0)
        out[h] = torch.sqrt(sq / dh).cpu().numpy()
    return out


def upper_triangle_max(m: np.ndarray) -> float:
    """Max |m[..., t, j]| over j > t (the entries a causal map must not have) over every matrix
    in m; NaN ignored (`spectral.upper_triangle_maxima` gives one per matrix)."""
    return float(upper_triangle_maxima(m).max(initial=0))
