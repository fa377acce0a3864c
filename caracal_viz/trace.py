"""One forward pass with every mixer's internals: the raw material of the other analyses (as
tensors on the model's device, `text_internals`, or as numpy on the CPU, `run_trace`), and the
place where NaN/Inf in activations is found and reported (never hidden).

The forward pass of a (checkpoint, text) is run once and shared: `shared_forward` keeps the last
few on the model's device (a small LRU, thread-safe: Streamlit sessions are threads), so that the
next-byte view, the data kernels, the gates, the energies and `run_trace` of one text cost one
pass of the model between them, not one each.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import MISSING, dataclass, field, fields, make_dataclass

import numpy as np
import torch

from models import MixerInternals
from models.internals import BATCHED
from models import hooks as model_hooks
from models.precision import fft_options_in_effect

from .checkpoint import Checkpoint
from .text import encode_text

# Fields whose second axis (after the batch) is the sequence position, for locating NaN/Inf.
_POSITIONAL = ("mixer_input", "fft_input", "fft_output", "mixer_output", "gate_kernel", "combined_kernel")


_LAYER_TRACE_DOC = """One mixer's internals for one text, batch dimension dropped, as numpy (float32 /
complex64 as recorded): the fields of MixerInternals (models/internals.py, which documents them
and their conventions: one-sided rfft spectra, backward normalisation, kernels indexed by lag),
each tensor a numpy array, the batched ones (models.internals.BATCHED) without their first axis.

kind, causal_mode, fft_size: as in MixerInternals.
mixer_input, fft_input, fft_output, mixer_output: (L, D).
spectrum, gated_spectrum: (H, F) complex or None; gate_bias, gate_open: (H, F) or None.
kernel_two_sided: (H, 2C) irfft layout or None; kernel: (H, L) causal kernel as applied or None.
gate_kernel, combined_kernel: (L, D) (mhf) or None.
adapted_filter: (H, L//2+1) complex (fftnet) or None; data_gate_open: (L//2+1, D) bool (fftnet) or None.
"""
# The field list is MixerInternals' own, so the two never drift apart.
LayerTrace = make_dataclass(
    "LayerTrace",
    [(f.name, str(f.type).replace("torch.Tensor", "np.ndarray"))
     + (() if f.default is MISSING else (field(default=f.default),)) for f in fields(MixerInternals)],
    namespace={"__doc__": _LAYER_TRACE_DOC, "__module__": __name__},
)


@dataclass
class NonFinite:
    """Where NaN or Inf appeared in one activation.

    where:     human-readable place, e.g. "block 3 mixer_output" or "logits".
    layer:     block index, or None for the logits.
    name:      the activation's name ("mixer_input", "fft_output", "block_output", "logits", ...).
    n_nan, n_inf: counts of NaN and of +-Inf entries.
    positions: (k,) int, the sequence positions (tokens) that hold at least one of them.
    """

    where: str
    layer: int | None
    name: str
    n_nan: int
    n_inf: int
    positions: np.ndarray


@dataclass
class Trace:
    """The result of `run_trace`.

    text:      the analysed text; checkpoint_sha256: the checkpoint's (Checkpoint.sha256).
    ids:       (L,) int64 byte ids.
    labels:    L printable labels, `ByteTokenizer.label` of each byte.
    logits:    (L, 256) float32 next-byte logits.
    layers:    one LayerTrace per block, None for attention (SWA) blocks.
    nonfinite: every activation that holds NaN/Inf, in forward order (empty when all finite).
    """

    text: str
    checkpoint_sha256: str
    ids: np.ndarray
    labels: list[str]
    logits: np.ndarray
    layers: list[LayerTrace | None]
    nonfinite: list[NonFinite] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        """True when no activation held NaN or Inf."""
        return not self.nonfinite


@dataclass(frozen=True)
class Forward:
    """One forward pass, kept on the model's device: what `shared_forward` returns and shares.
    Read it, never write into it (other analyses read the same tensors).

    ids:       (L,) the text's byte ids.
    logits:    (L, 256) float32 next-byte logits, on ck.device.
    records:   one MixerInternals per block (None for attention), batch of one, on ck.device.
    nonfinite: as `Trace.nonfinite`.
    """

    ids: tuple[int, ...]
    logits: torch.Tensor
    records: list[MixerInternals | None]
    nonfinite: list[NonFinite]

    @property
    def nbytes(self) -> int:
        """Bytes held by the pass's tensors (logits and every record's internals)."""
        tensors = [self.logits] + [getattr(r, f.name) for r in self.records if r is not None
                                   for f in fields(MixerInternals)]
        return sum(t.nbytes for t in tensors if isinstance(t, torch.Tensor))


TRACE_CACHE_ENTRIES = 6
"""Forward passes `shared_forward` keeps (the least recently used goes first): a few texts of a
few checkpoints, each checkpoint's one-token pass (`static_internals`) included."""
TRACE_CACHE_BYTES = 512 * 1024 * 1024
"""Most bytes of tensors they may hold together (one pass of caracal-shakespeare on 4,096 bytes
holds ~100 MB); a pass larger than this alone is returned without being kept."""
# key -> (weak reference to the model, its pass); the reference tells a live model from a new
# one that happens to get the same id() after the first was freed
_cache: OrderedDict[tuple, tuple[weakref.ref, Forward]] = OrderedDict()
_cache_lock = threading.Lock()


def _model_state(ck: Checkpoint) -> tuple:
    """What the forward pass depends on besides the text: the model object, its weights (storage
    and in-place version counters: editing or reloading a weight misses), its mode, paths and
    FFT options (models.precision.fft_options)."""
    model = ck.model
    return (id(model), ck.sha256, str(ck.device), model.training, torch.is_autocast_enabled(ck.device.type),
            fft_options_in_effect(), tuple(getattr(b.mixer, "fast", None) for b in model.blocks),
            tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers())))


def shared_forward(ck: Checkpoint, text: str) -> Forward:
    """The forward pass of ck on `text` (validated by `encode_text`, raises TextError) with every
    mixer's internals, run once and then shared: the last TRACE_CACHE_ENTRIES passes are kept
    (within TRACE_CACHE_BYTES), keyed by the model object and the state of its weights, so a
    modified or reloaded model runs again. Nothing in it may be modified. While hooks are attached
    in this thread (`model.hooks`, an intervention) the pass runs with them and is not shared."""
    ids = tuple(encode_text(text, device=ck.device))
    if model_hooks.any_active():
        return _run_forward(ck, ids)
    key = (_model_state(ck), ids)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0]() is ck.model:
            _cache.move_to_end(key)
            return hit[1]
    done = _run_forward(ck, ids)
    with _cache_lock:
        for stale in [k for k, (ref, _) in _cache.items() if ref() is None]:
            del _cache[stale]  # its model is gone: free its tensors now
        if done.nbytes <= TRACE_CACHE_BYTES:
            _cache[key] = (weakref.ref(ck.model), done)
            _cache.move_to_end(key)
            while len(_cache) > TRACE_CACHE_ENTRIES or sum(f.nbytes for _, f in _cache.values()) > TRACE_CACHE_BYTES:
                _cache.popitem(last=False)
    return done


def clear_trace_cache() -> None:
    """Forget every shared forward pass (frees the memory, GPU memory included, that they hold)."""
    with _cache_lock:
        _cache.clear()


def _run_forward(ck: Checkpoint, ids: tuple[int, ...]) -> Forward:
    x = torch.tensor([ids], dtype=torch.long, device=ck.device)
    logits, records, block_outputs = forward_blocks(ck, x)
    scanned: list[tuple[int | None, str, torch.Tensor]] = []
    for i, (rec, out) in enumerate(zip(records, block_outputs)):
        if rec is not None:
            scanned += [(i, name, getattr(rec, name)[0]) for name in _POSITIONAL if getattr(rec, name) is not None]
        scanned.append((i, "block_output", out[0]))
    scanned.append((None, "logits", logits[0]))
    return Forward(ids=ids, logits=logits[0], records=records, nonfinite=_find_nonfinite(scanned))


def run_trace(ck: Checkpoint, text: str) -> Trace:
    """The model's forward pass on `text` (validated by `encode_text`, raises TextError) on
    ck.device (`shared_forward`: run once per checkpoint and text): the logits and every mixer's
    internals, copied to the CPU (the caller owns them). NaN/Inf in block outputs, mixer
    internals or logits are listed in `Trace.nonfinite` (where, how many, which positions)."""
    fwd = shared_forward(ck, text)
    tok = ck.tokenizer
    return Trace(
        text=text,
        checkpoint_sha256=ck.sha256,
        ids=np.asarray(fwd.ids, dtype=np.int64),
        labels=[tok.label(i) for i in fwd.ids],
        logits=numpy_copy(fwd.logits.float()),
        layers=[None if r is None else layer_numpy(r, 0) for r in fwd.records],
        nonfinite=list(fwd.nonfinite),
    )


def reuse_trace(ck: Checkpoint, text: str, trace: Trace | None) -> Trace:
    """`trace` when it was made for this checkpoint and text, else `run_trace(ck, text)`.
    Raises ValueError when a trace for another text or checkpoint is passed."""
    if trace is None:
        return run_trace(ck, text)
    _check_trace(ck, text, trace)
    return trace


def _check_trace(ck: Checkpoint, text: str, trace: Trace) -> None:
    if trace.text != text or trace.checkpoint_sha256 != ck.sha256:
        raise ValueError("the trace passed was made for another text or checkpoint: pass the matching one")


def text_internals(ck: Checkpoint, text: str, trace: Trace | None = None) -> list[MixerInternals | None]:
    """Every mixer's internals for `text` as tensors with a batch of one (None for attention):
    those of `trace` (a `run_trace(ck, text)` result, checked to match; its numpy arrays seen as
    CPU tensors, not copied) when given, else the shared forward pass's, on ck.device
    (`shared_forward`; raises TextError for bad text). Read them, never write into them."""
    if trace is None:
        return shared_forward(ck, text).records
    _check_trace(ck, text, trace)
    return [None if layer is None else _as_internals(layer) for layer in trace.layers]


def _as_internals(layer: LayerTrace) -> MixerInternals:
    kw = {}
    for f in fields(MixerInternals):
        value = getattr(layer, f.name)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
            if f.name in BATCHED:
                value = value[None]
        kw[f.name] = value
    return MixerInternals(**kw)


@torch.no_grad()
def forward_blocks(ck: Checkpoint, ids: torch.Tensor) -> tuple[torch.Tensor, list[MixerInternals | None],
                                                              list[torch.Tensor]]:
    """The model's forward pass (eval mode) read through its hook points: every mixer's internals
    and every block's output (blocks.{k}.hook_resid_post). ids: (B, L) on ck.device. Returns
    logits (B, L, 256), the internals (one per block, None for attention) and the block outputs
    (B, L, D) each, all on ck.device. Hooks attached by the caller (`model.hooks`) take effect."""
    model = ck.model
    logits, cache = model.run_with_cache(
        ids, names_filter=lambda name: model.internal_hook(name) or name.endswith("hook_resid_post"))
    outputs = [cache[f"blocks.{i}.hook_resid_post"] for i in range(len(model.blocks))]
    return logits, model.mixer_internals(cache), outputs


def numpy_copy(t: torch.Tensor | None) -> np.ndarray | None:
    """t as a numpy array on the CPU that owns its memory (never a view of t's)."""
    return None if t is None else t.detach().to("cpu", copy=True).numpy()


def layer_numpy(rec: MixerInternals, b: int = 0) -> LayerTrace:
    """Batch element b of one mixer's internals as a LayerTrace (numpy copies on the CPU)."""
    kw = {}
    for f in fields(MixerInternals):
        value = getattr(rec, f.name)
        if isinstance(value, torch.Tensor):
            value = numpy_copy(value[b] if f.name in BATCHED else value)
        kw[f.name] = value
    return LayerTrace(**kw)


def _find_nonfinite(scanned: list[tuple[int | None, str, torch.Tensor]]) -> list[NonFinite]:
    """A NonFinite for every (layer, name, tensor (L, ...)) that holds NaN/Inf, in order.

    A tensor's sum is finite only when every entry is (NaN and Inf propagate), so one reduction
    per tensor and a single device sync find the suspects; only those (a sum can also overflow)
    are scanned entry by entry."""
    sums = torch.stack([torch.view_as_real(t).sum() if t.is_complex() else t.float().sum() for _, _, t in scanned])
    suspect = (~torch.isfinite(sums)).cpu().tolist()
    found: list[NonFinite] = []
    for (layer, name, t), maybe in zip(scanned, suspect):
        if maybe:
            _scan(found, t, layer, name)
    return found


def _scan(found: list[NonFinite], t: torch.Tensor, layer: int | None, name: str) -> None:
    """Append a NonFinite for t (L, ...) when it holds NaN/Inf; positions along axis 0."""
    if t.is_complex():
        t = torch.view_as_real(t)
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    n_nan = int(torch.isnan(t).sum())
    where = "logits" if layer is None else f"block {layer} {name}"
    positions = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten().cpu().numpy()
    found.append(NonFinite(where=where, layer=layer, name=name, n_nan=n_nan, n_inf=int(bad.sum()) - n_nan,
                           positions=positions))


def static_internals(ck: Checkpoint) -> list[LayerTrace | None]:
    """Every mixer's input-independent internals (learned spectrum, gate bias and mask, two-sided
    kernel) from a one-token forward pass (a newline, shared: `shared_forward`), as numpy copies;
    the per-token fields describe that one token only."""
    return [None if r is None else layer_numpy(r, 0) for r in shared_forward(ck, "\n").records]
