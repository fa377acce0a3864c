"""Reach: how far back each MHF head looks, from the causal kernels it applies to a text.

Per block and head, two kernels indexed by lag (lag 0 = the current byte):
- the learned kernel k[h, lag] as applied (hook point blocks.{i}.mixer.hook_kernel, (H, L));
- the combined kernel h = (g * k)[:L] of this text (`MixerInternals.combined_kernel`, (L, D)):
  the data-dependent gate kernel g convolved with k, one kernel per channel; a head's energy at
  a lag is the sum over its dh channels of h_c[lag]^2.
For each: energy by lag, its cumulative fraction, and the smallest lags holding 50% and 90%.
`influence_by_lag` reads the whole model's reach off an influence map instead: the mean
gradient size at each distance between the prediction and the input byte.
Everything here is O(H L) per block (the kernels come from the one shared forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.hooks import run_with_cache

from .checkpoint import Checkpoint
from .trace import Forward


@dataclass(frozen=True)
class HeadReach:
    """Reach of one head. energy: (L,) |k|^2 by lag (lag 0 = the current byte, unit: kernel^2,
    summed over the head's channels for a per-channel kernel); cumulative: (L,) fraction of the
    total energy at lags <= each lag, in [0, 1]; lag50, lag90: smallest lag (bytes) whose
    cumulative fraction reaches 0.5, 0.9 (-1 for an all-zero kernel)."""

    block: int
    head: int
    energy: np.ndarray
    cumulative: np.ndarray
    lag50: int
    lag90: int


@dataclass(frozen=True)
class BlockReach:
    """One MHF block's reach on a text: `learned` (the learned kernel k) and `combined` (g * k),
    one HeadReach per head each, in head order."""

    block: int
    learned: list[HeadReach]
    combined: list[HeadReach]


def reach_from_kernel(kernel: np.ndarray, block: int, head: int) -> HeadReach:
    """Reach of one kernel: (L,) real, or (C, L) for C channel kernels whose energies add; lag 0
    first. An all-zero kernel has cumulative 0 and lags -1."""
    k = np.asarray(kernel, dtype=np.float64)
    energy = (k * k).reshape(-1, k.shape[-1]).sum(axis=0)
    total = energy.sum()
    if total == 0.0:
        return HeadReach(block, head, energy, np.zeros_like(energy), -1, -1)
    cumulative = np.cumsum(energy) / total
    # the last entry is 1 up to rounding: a rounding shortfall must not push a 90% lag off the end
    lag50 = min(int(np.searchsorted(cumulative, 0.5)), energy.size - 1)
    lag90 = min(int(np.searchsorted(cumulative, 0.9)), energy.size - 1)
    return HeadReach(block, head, energy, cumulative, lag50, lag90)


def reach(model, tokens) -> list[HeadReach]:
    """Reach of the learned kernel of every MHF head of `model` (a ByteLM) on `tokens` (a (1, L)
    long tensor), in block then head order, from the hook points blocks.{i}.mixer.hook_kernel."""
    _, cache = run_with_cache(model, tokens, names_filter=lambda n: n.endswith("mixer.hook_kernel"))
    out = []
    for name in sorted(cache, key=lambda n: int(n.split(".")[1])):
        block = int(name.split(".")[1])
        kernels = cache[name].double().cpu().numpy()
        out.extend(reach_from_kernel(kernels[h], block, h) for h in range(kernels.shape[0]))
    return out


def text_reach(ck: Checkpoint, fwd: Forward) -> list[BlockReach | None]:
    """Per block, the reach of its learned and combined kernels on the text of `fwd`, a forward
    pass of ck (`trace.forward_pass`); None for fftnet and attention blocks."""
    H = ck.config.n_heads
    out: list[BlockReach | None] = []
    for i, rec in enumerate(fwd.check(ck).records):
        if rec is None or rec.kind != "mhf":
            out.append(None)
            continue
        k = rec.kernel.double().cpu().numpy()  # (H, L)
        h = rec.combined_kernel[0].double().cpu().numpy()  # (L, D), channel c in head c // dh
        per_head = h.T.reshape(H, h.shape[1] // H, h.shape[0])  # (H, dh, L)
        out.append(BlockReach(i, [reach_from_kernel(k[j], i, j) for j in range(H)],
                              [reach_from_kernel(per_head[j], i, j) for j in range(H)]))
    return out


@dataclass(frozen=True)
class LagInfluence:
    """Mean influence by distance, from an (L, L) influence map M (rows: predictions, columns:
    input bytes). lags: (L,) 0..L-1 bytes; mean: (L,) mean of M[i, i - lag] over the rows that
    have a target (all but the last) and reach that far back (NaN where none does); rows: (L,)
    how many rows each mean averages; cumulative: (L,) share of sum(mean) at distances <= lag;
    lag50, lag90: smallest lags where cumulative reaches 0.5, 0.9 (-1 when the map is all zero)."""

    lags: np.ndarray
    mean: np.ndarray
    rows: np.ndarray
    cumulative: np.ndarray
    lag50: int
    lag90: int


def influence_by_lag(values: np.ndarray) -> LagInfluence:
    """`LagInfluence` of an (L, L) influence map (`InfluenceMap.values`: the last row NaN)."""
    m = np.asarray(values, dtype=np.float64)[:-1]  # (L-1, L): the last row has no target
    L = m.shape[1]
    sums, rows = np.zeros(L), np.zeros(L, dtype=np.int64)
    for lag in range(min(L, m.shape[0])):
        d = np.diagonal(m, offset=-lag)  # M[i, i - lag] for i = lag..L-2
        sums[lag], rows[lag] = d.sum(), d.size
    with np.errstate(invalid="ignore"):
        mean = np.where(rows > 0, sums / np.maximum(rows, 1), np.nan)
    filled = np.nan_to_num(mean, nan=0.0)
    total = filled.sum()
    cumulative = np.cumsum(filled) / total if total > 0 else np.zeros(L)
    lag50 = min(int(np.searchsorted(cumulative, 0.5)), L - 1) if total > 0 else -1
    lag90 = min(int(np.searchsorted(cumulative, 0.9)), L - 1) if total > 0 else -1
    return LagInfluence(np.arange(L), mean, rows, cumulative, lag50, lag90)
