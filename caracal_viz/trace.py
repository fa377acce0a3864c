"""One forward pass with every mixer's internals: the raw material of the other analyses, and
the place where NaN/Inf in activations is found and reported (never hidden).

`forward_pass(ck, text)` runs it once and returns a `Forward` (tensors on the model's device);
the analyses of a text (next-byte view, data kernels, gates, energies, reach, mixing matrices)
take that object, so whoever runs them decides how often the model runs: the CLI and the report
run one pass per text and pass it to every analysis; the app keeps the passes it ran in its own
cache (caracal_viz.app_support.caching.forward_pass, st.cache_resource). Nothing here keeps one.
`trace_of` copies a pass to numpy on the CPU (`Trace`, what the CLI saves); `run_trace` is both.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, make_dataclass

import numpy as np
import torch

from models import MixerInternals
from models.internals import BATCHED

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
    """One forward pass of a checkpoint on a text (`forward_pass`), kept on the model's device: the
    object every analysis of a text takes. Read it, never write into it (several analyses, and in
    the app several sessions, read the same tensors).

    text:      the text; checkpoint_sha256, device: the checkpoint's (Checkpoint.sha256, str(ck.device)).
    ids:       (L,) the text's byte ids.
    logits:    (L, 256) float32 next-byte logits, on the device.
    records:   one MixerInternals per block (None for attention), batch of one, on the device.
    nonfinite: as `Trace.nonfinite`.
    """

    text: str
    checkpoint_sha256: str
    device: str
    ids: tuple[int, ...]
    logits: torch.Tensor
    records: list[MixerInternals | None]
    nonfinite: list[NonFinite]

    def check(self, ck: Checkpoint) -> Forward:
        """self, after checking that it is a pass of `ck` (same weights and device); ValueError if not."""
        if self.checkpoint_sha256 != ck.sha256 or self.device != str(ck.device):
            raise ValueError("the forward pass passed was made for another checkpoint or device: pass the matching one")
        return self

    @property
    def nbytes(self) -> int:
        """Bytes held by the pass's tensors (logits and every record's internals)."""
        tensors = [self.logits] + [getattr(r, f.name) for r in self.records if r is not None
                                   for f in fields(MixerInternals)]
        return sum(t.nbytes for t in tensors if isinstance(t, torch.Tensor))


def forward_pass(ck: Checkpoint, text: str) -> Forward:
    """The forward pass of ck on `text` (validated by `encode_text`, raises TextError) with every
    mixer's internals, on ck.device. Hooks attached in this thread (`model.hooks`, an
    intervention) take effect. Run it once per text and pass it to each analysis of that text."""
    ids = tuple(encode_text(text, device=ck.device))
    x = torch.tensor([ids], dtype=torch.long, device=ck.device)
    logits, records, block_outputs = forward_blocks(ck, x)
    scanned: list[tuple[int | None, str, torch.Tensor]] = []
    for i, (rec, out) in enumerate(zip(records, block_outputs)):
        if rec is not None:
            scanned += [(i, name, getattr(rec, name)[0]) for name in _POSITIONAL if getattr(rec, name) is not None]
        scanned.append((i, "block_output", out[0]))
    scanned.append((None, "logits", logits[0]))
    return Forward(text=text, checkpoint_sha256=ck.sha256, device=str(ck.device), ids=ids, logits=logits[0],
                   records=records, nonfinite=_find_nonfinite(scanned))


def trace_of(ck: Checkpoint, fwd: Forward) -> Trace:
    """A forward pass of ck (checked to match) copied to the CPU as numpy (the caller owns it): the
    logits and every mixer's internals, and where NaN/Inf appeared (`Trace.nonfinite`: which
    activation, how many, which positions)."""
    fwd.check(ck)
    tok = ck.tokenizer
    return Trace(
        text=fwd.text,
        checkpoint_sha256=ck.sha256,
        ids=np.asarray(fwd.ids, dtype=np.int64),
        labels=[tok.label(i) for i in fwd.ids],
        logits=numpy_copy(fwd.logits.float()),
        layers=[None if r is None else layer_numpy(r, 0) for r in fwd.records],
        nonfinite=list(fwd.nonfinite),
    )


def run_trace(ck: Checkpoint, text: str) -> Trace:
    """`trace_of(ck, forward_pass(ck, text))`: one new pass on `text`, as numpy (raises TextError)."""
    return trace_of(ck, forward_pass(ck, text))


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
    kernel) from a one-token forward pass (a newline: cheap, so not kept), as numpy copies; the
    per-token fields describe that one token only."""
    return [None if r is None else layer_numpy(r, 0) for r in forward_pass(ck, "\n").records]
