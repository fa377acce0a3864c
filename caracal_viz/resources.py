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
from .trace import clear_trace_cache

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
    """Drop the shared forward passes (`trace.clear_trace_cache`) and return the CUDA caching
    allocator's unused blocks (only the first without a GPU)."""
    clear_trace_cache()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_cpu_oom(e: BaseException) -> bool:
    # torch reports a failed CPU allocation as a plain RuntimeError from its allocator
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def run_with_fallback(fn: Callable[..., Any], ck: Checkpoint, *args, what: str | None = None,
                      **kwargs) -> Guarded:
    """Run `fn(ck, *args, **kwargs)`; on a CUDA out-of-memory error run it once more as
    `fn(cpu_copy(ck), *args, **kwargs)` and say so in `Guarded.message`.

    what: the analysis in words for the messages (default: fn's name).
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
