"""Running out of memory without crashing: retry an analysis on the CPU when the GPU is full.

Usage (the app and the CLI wrap their calls into the analysis library):

    done = run_with_fallback(influence.token_influence, ck, text)
    if done.message:
        st.info(done.message)           # "The GPU ran out of memory for ...; computed on the CPU"
    matrix = done.value

A CUDA out-of-memory error (`torch.cuda.OutOfMemoryError`, which is `torch.OutOfMemoryError`)
frees the GPU's cached blocks and runs the same function again on a CPU copy of the model; the
checkpoint passed in, which the app shares between sessions, is never modified. If the CPU
cannot hold it either, `ResourceError` says so in one line.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models import ByteLM

from .checkpoint import Checkpoint
from .text import TextError, encode_text

CPU = torch.device("cpu")


class ResourceError(MemoryError):
    """An analysis that does not fit in memory on any device; the message says what to do."""


@dataclass
class Guarded:
    """The result of `run_with_fallback`.

    value:   what the function returned.
    device:  the device it was finally computed on.
    message: None when it ran where asked; otherwise one line for the user saying that the GPU
             ran out of memory and the CPU was used instead.
    """

    value: Any
    device: torch.device
    message: str | None = None

    @property
    def fell_back(self) -> bool:
        """True when the GPU ran out of memory and the value was computed on the CPU instead."""
        return self.message is not None


def cpu_copy(ck: Checkpoint) -> Checkpoint:
    """A copy of `ck` whose model lives on the CPU (eval mode, same weights, tied head kept tied).
    The weights are copied tensor by tensor to the CPU, so nothing new is allocated on ck's
    device; ck itself is not touched."""
    model = ByteLM(ck.config)
    model.load_state_dict({k: v.detach().to(CPU) for k, v in ck.model.state_dict().items()})
    return dataclasses.replace(ck, model=model.eval(), device=CPU)


def free_gpu_memory() -> None:
    """Collect garbage and return the CUDA caching allocator's unused blocks (only the first
    without a GPU). A caller that keeps forward passes (the app's cache) drops them first."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_cpu_oom(e: BaseException) -> bool:
    # torch reports a failed CPU allocation as a plain RuntimeError from its allocator
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def run_with_fallback(fn: Callable[..., Any], ck: Checkpoint, *args, what: str | None = None,
                      release: Callable[[], None] | None = None, **kwargs) -> Guarded:
    """Run `fn(ck, *args, **kwargs)`; on a CUDA out-of-memory error run it once more as
    `fn(cpu_copy(ck), *args, **kwargs)` and say so in `Guarded.message`.

    what: the analysis in words for the messages (default: fn's name).
    release: called before the retry to drop what the caller keeps on the GPU (the app's
    forward passes), then `free_gpu_memory`.
    Raises ResourceError (one line) when the CPU run runs out of memory too; any other
    exception from fn propagates unchanged.
    """
    what = what or getattr(fn, "__name__", "this analysis").replace("_", " ")
    try:
        return Guarded(fn(ck, *args, **kwargs), ck.device)
    except torch.OutOfMemoryError as e:
        detail = str(e).strip().splitlines()[0][:120] if str(e).strip() else "out of memory"
    # Retry outside the except block: the caught error's traceback holds the frames, and with
    # them the GPU tensors, of the failed call until the block is left.
    if release is not None:
        release()
    free_gpu_memory()
    cpu = cpu_copy(ck)
    try:
        value = fn(cpu, *args, **kwargs)
    except Exception as e:
        if not _is_cpu_oom(e):
            raise
        raise ResourceError(f"{what} does not fit in memory on the GPU ({detail}) nor on the CPU: "
                            "use a shorter text or a smaller length") from None
    return Guarded(value, CPU, f"The GPU ran out of memory for {what} ({detail}); it was computed on "
                               "the CPU instead, which is slower. A shorter text keeps it on the GPU.")


# ---- memory budget of the influence analyses (caracal_viz.influence, caracal_viz.mixing) -----------
# Autograd memory per token, per block and per unit of width, in 4-byte words: one forward graph,
# and one more row of a batched backward pass (float32 FFTs). Measured 2026-11-24 for
# caracal-shakespeare: at L = 1024 on the CPU (peak RSS) 64 words for the graph and 5.1 per row; at
# L = 4096 on an H100 (peak allocated) 3.0 per row. Rounded up for what a peak reading can miss.
_GRAPH_WORDS = 96
_ROW_WORDS = 8
_LIMIT_CAP = 1 << 16


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            raw = f.read().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def free_bytes(device: torch.device) -> int:
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


def memory_budget(ck: Checkpoint) -> int:
    """Half the device's free memory: room for the rest of the app and for estimate error."""
    return free_bytes(ck.device) // 2


def graph_bytes(ck: Checkpoint, L: int) -> int:
    """Estimated autograd memory (bytes) of one forward graph of ck at length L."""
    cfg = ck.config
    return 4 * _GRAPH_WORDS * L * cfg.n_layers * cfg.d_model


def row_bytes(ck: Checkpoint, L: int) -> int:
    """Estimated memory (bytes) of one more row of a batched backward pass at length L."""
    cfg = ck.config
    return 4 * _ROW_WORDS * L * cfg.n_layers * cfg.d_model


def mixing_bytes(ck: Checkpoint, L: int) -> int:
    """Bytes of the mixing matrices at length L: the (H, L, L) float32 result per mixer block plus one float64 head being built."""
    cfg = ck.config
    n_mixers = sum(cfg.layer_kind(i) != "swa" for i in range(cfg.n_layers))
    return 4 * n_mixers * cfg.n_heads * L * L + 8 * 2 * L * L


def needed_bytes(ck: Checkpoint, L: int) -> int:
    """The larger of what the influence map and the mixing matrices need at length L (bytes)."""
    influence = graph_bytes(ck, L) + row_bytes(ck, L) + 8 * L * L
    return max(influence, mixing_bytes(ck, L))


def influence_limit(ck: Checkpoint) -> int:
    """The longest text (bytes) that `token_influence` and `mixing_matrices` will compute on
    `ck.device`: a memory bound (half the device's free memory now, against an estimate of the
    autograd graph, one batched backward row and the (H, L, L) mixing matrices of every layer),
    rounded down to a multiple of 64. Longer texts raise `TextError` naming this limit.
    Time grows as L^2 (L backward passes of length L): see the report for measured seconds."""
    budget = memory_budget(ck)
    lo, hi = 0, _LIMIT_CAP
    while lo < hi:  # largest L with needed_bytes(L) <= budget; the estimate grows with L
        mid = (lo + hi + 1) // 2
        if needed_bytes(ck, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return max(64, lo // 64 * 64)


def check_influence_text(ck: Checkpoint, text: str) -> list[int]:
    """The text's byte ids, or TextError when it is empty or over `influence_limit(ck)`."""
    ids = encode_text(text, device=ck.device)
    limit = influence_limit(ck)
    if len(ids) > limit:
        raise TextError(f"the text is {len(ids)} bytes, over the token-influence limit of {limit} bytes for "
                        f"this model on {ck.device.type} (a memory bound): shorten the text")
    return ids
