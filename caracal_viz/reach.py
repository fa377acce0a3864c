"""Reach: how far back each MHF head looks, from the causal kernel it applies to a text.

Per block and head, the kernel k[h, lag] as applied (hook point blocks.{i}.mixer.hook_kernel,
shape (H, L), lag 0 = the current byte) gives energy by lag |k|^2, its cumulative fraction and
the smallest lags holding 50% and 90% of the energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.hooks import run_with_cache


@dataclass(frozen=True)
class HeadReach:
    """Reach of one head. energy: (L,) |k|^2 by lag (lag 0 = the current byte, unit: kernel^2);
    cumulative: (L,) fraction of the total energy at lags <= each lag, in [0, 1];
    lag50, lag90: smallest lag (bytes) whose cumulative fraction reaches 0.5, 0.9."""

    block: int
    head: int
    energy: np.ndarray
    cumulative: np.ndarray
    lag50: int
    lag90: int


def reach_from_kernel(kernel: np.ndarray, block: int, head: int) -> HeadReach:
    """Reach of one kernel (L,) real, lag 0 first. An all-zero kernel has cumulative 0 and lags -1."""
    k = np.asarray(kernel, dtype=np.float64)
    energy = k * k
    total = energy.sum()
    if total == 0.0:
        return HeadReach(block, head, energy, np.zeros_like(energy), -1, -1)
    cumulative = np.cumsum(energy) / total
    lag50 = int(np.searchsorted(cumulative, 0.5))
    lag90 = int(np.searchsorted(cumulative, 0.9))
    return HeadReach(block, head, energy, cumulative, lag50, lag90)


def reach(model, tokens) -> list[HeadReach]:
    """Reach of every MHF head of `model` (a ByteLM) on `tokens` (a (1, L) long tensor), in block
    then head order, from the kernels at the hook points blocks.{i}.mixer.hook_kernel."""
    _, cache = run_with_cache(model, tokens, names_filter=lambda n: n.endswith("mixer.hook_kernel"))
    out = []
    for name in sorted(cache, key=lambda n: int(n.split(".")[1])):
        block = int(name.split(".")[1])
        kernels = cache[name].double().cpu().numpy()
        out.extend(reach_from_kernel(kernels[h], block, h) for h in range(kernels.shape[0]))
    return out
