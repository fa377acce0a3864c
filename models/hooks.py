"""Hook points: named places in the forward pass where a function may read or replace a tensor,
in TransformerLens's conventions (`HookPoint`, `run_with_hooks`, `run_with_cache`, `hooks`).

A `HookPoint` is an identity module until a hook is attached. A hook is `fn(tensor, hook)`:
`hook` is the HookPoint (its `.name` is the full name in the model, e.g.
"blocks.2.mixer.hook_spectrum"); `fn` returns a replacement tensor of the same shape, or None to
leave the tensor as it is. Hooks are attached for the length of a `with hooks(model, [...])`
block only, and only in the calling thread (a context variable, not module state): Streamlit
sessions share one model between threads, and one session's intervention must never reach
another's forward pass. Leaving the block removes them, also when the forward raises.

Which hook points a model has, their shapes and conventions: ByteLM's docstring (models/lm.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import torch
import torch.nn as nn

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
# name or predicate on the name, and the function
FwdHook = tuple[str | Callable[[str], bool], HookFn]

# HookPoint key -> the functions attached to it in this context, outermost first. The key is an
# int that copy.deepcopy keeps, so a copy of a model (e.g. a float64 one to measure rounding
# against) runs the hooks attached to the original, as its hook points are the same points.
_ACTIVE: contextvars.ContextVar[Mapping] = contextvars.ContextVar("caracal_hooks", default=MappingProxyType({}))
_KEYS = itertools.count()


class HookPoint(nn.Module):
    """Identity on a tensor, unless hooks are attached in this thread: then each hook in turn
    (outer `hooks` blocks first) sees the tensor and may replace it. A deep copy of the point
    (of its model) shares its hooks."""

    def __init__(self):
        super().__init__()
        self.name = ""  # set by name_hook_points(): the dotted name in the model
        self.key = next(_KEYS)

    @property
    def active(self) -> bool:
        """True when a hook is attached to this point in the calling thread."""
        return self.key in _ACTIVE.get()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x unchanged, or what the attached hooks return in turn (each of x's shape)."""
        for fn in _ACTIVE.get().get(self.key, ()):
            out = fn(x, self)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(f"hook on {self.name} returned shape {tuple(out.shape)}, "
                                     f"expected {tuple(x.shape)}")
                x = out
        return x

    def extra_repr(self) -> str:
        """The point's dotted name, shown in the model's repr."""
        return self.name


def name_hook_points(root: nn.Module) -> None:
    """Give every HookPoint under `root` its dotted name (call once, after construction)."""
    for name, m in root.named_modules():
        if isinstance(m, HookPoint):
            m.name = name


def hook_dict(root: nn.Module) -> dict[str, HookPoint]:
    """Every HookPoint under `root` by its name relative to `root`, in forward order of definition."""
    return {name: m for name, m in root.named_modules() if isinstance(m, HookPoint)}


def _matcher(spec) -> Callable[[str], bool]:
    if spec is None:
        return lambda name: True
    if isinstance(spec, str):
        return lambda name: name == spec
    if callable(spec):
        return spec
    names = set(spec)
    return lambda name: name in names


def _resolve(root: nn.Module, fwd_hooks: Iterable[FwdHook]) -> list[tuple[HookPoint, HookFn]]:
    points = hook_dict(root)
    out = []
    for spec, fn in fwd_hooks:
        if not callable(fn):
            raise TypeError(f"the hook for {spec!r} is not callable: pass (name or predicate, fn(tensor, hook))")
        match = _matcher(spec)
        found = [p for name, p in points.items() if match(name)]
        if isinstance(spec, str) and not found:
            raise KeyError(f"no hook point named {spec!r}: the model has {', '.join(list(points)[:8])}, ...")
        out += [(p, fn) for p in found]
    return out


@contextlib.contextmanager
def hooks(root: nn.Module, fwd_hooks: Iterable[FwdHook] = ()):
    """Attach `fwd_hooks` [(name or predicate(name) -> bool, fn(tensor, hook))] to the hook
    points of `root` (names relative to root) for the block, in this thread only; nested blocks
    add their hooks after the outer ones. Removed on leaving the block, also on an exception."""
    active = {k: list(v) for k, v in _ACTIVE.get().items()}
    for point, fn in _resolve(root, fwd_hooks):
        active.setdefault(point.key, []).append(fn)
    token = _ACTIVE.set(active)
    try:
        yield root
    finally:
        _ACTIVE.reset(token)


def any_active() -> bool:
    """True when any hook is attached in this thread (analyses that cache passes check this)."""
    return bool(_ACTIVE.get())


def run_with_hooks(root: nn.Module, *args, fwd_hooks: Iterable[FwdHook] = (), **kwargs):
    """root(*args, **kwargs) with `fwd_hooks` attached for this one call."""
    with hooks(root, fwd_hooks):
        return root(*args, **kwargs)


def run_with_cache(root: nn.Module, *args, names_filter=None, **kwargs) -> tuple[object, dict[str, torch.Tensor]]:
    """root(*args, **kwargs), and the tensors at its hook points: (output, cache) with cache[name]
    the tensor (detached, not copied) as it left the hook point, names relative to root.
    names_filter: None (every hook point), a name, a list of names or a predicate on the name.
    Hooks already attached (an enclosing `hooks` block) run first, so the cache shows their effect."""
    cache: dict[str, torch.Tensor] = {}
    rel = {p: name for name, p in hook_dict(root).items()}

    def keep(x, hook):
        cache[rel[hook]] = x.detach()

    match = _matcher(names_filter)
    with hooks(root, [(lambda name: match(name), keep)]):
        out = root(*args, **kwargs)
    return out, cache
