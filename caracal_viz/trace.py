"""One forward pass with every mixer's internals, as numpy on the CPU: the raw material of the
other analyses, and the place where NaN/Inf in activations is found and reported (never hidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from models import MixerInternals

from .checkpoint import Checkpoint
from .text import encode_text

# MixerInternals fields that carry a leading batch dimension.
_BATCHED = ("mixer_input", "fft_input", "fft_output", "mixer_output", "gate_kernel", "combined_kernel",
            "adapted_filter", "data_gate_open")
# Fields whose second axis (after the batch) is the sequence position, for locating NaN/Inf.
_POSITIONAL = ("mixer_input", "fft_input", "fft_output", "mixer_output", "gate_kernel", "combined_kernel")


@dataclass
class LayerTrace:
    """One mixer's internals for one text, batch dimension dropped, as numpy (float32 /
    complex64 as recorded; see models/internals.py for the conventions: one-sided rfft spectra,
    backward normalisation, kernels indexed by lag).

    kind, causal_mode, fft_size: as in MixerInternals.
    mixer_input, fft_input, fft_output, mixer_output: (L, D).
    spectrum, gated_spectrum: (H, F) complex or None; gate_bias, gate_open: (H, F) or None.
    kernel_two_sided: (H, 2C) irfft layout or None; kernel: (H, L) causal kernel as applied or None.
    gate_kernel, combined_kernel: (L, D) (mhf) or None.
    adapted_filter: (H, L//2+1) complex (fftnet) or None; data_gate_open: (L//2+1, D) bool (fftnet) or None.
    """

    kind: str
    causal_mode: str
    fft_size: int
    mixer_input: np.ndarray
    fft_input: np.ndarray
    fft_output: np.ndarray
    mixer_output: np.ndarray
    spectrum: np.ndarray | None = None
    gate_bias: np.ndarray | None = None
    gated_spectrum: np.ndarray | None = None
    gate_open: np.ndarray | None = None
    kernel_two_sided: np.ndarray | None = None
    kernel: np.ndarray | None = None
    gate_kernel: np.ndarray | None = None
    combined_kernel: np.ndarray | None = None
    adapted_filter: np.ndarray | None = None
    data_gate_open: np.ndarray | None = None


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


def run_trace(ck: Checkpoint, text: str) -> Trace:
    """Run the model once on `text` (validated by `encode_text`, raises TextError) on ck.device and
    return the logits and every mixer's internals on the CPU. NaN/Inf in block outputs, mixer
    internals or logits are listed in `Trace.nonfinite` (where, how many, which positions)."""
    ids = encode_text(text)
    x = torch.tensor([ids], dtype=torch.long, device=ck.device)
    logits, records, block_outputs = forward_blocks(ck, x)
    nonfinite: list[NonFinite] = []
    for i, (rec, out) in enumerate(zip(records, block_outputs)):
        if rec is not None:
            for name in _POSITIONAL:
                if getattr(rec, name) is not None:
                    _scan(nonfinite, getattr(rec, name)[0], i, name)
        _scan(nonfinite, out[0], i, "block_output")
    _scan(nonfinite, logits[0], None, "logits")
    tok = ck.tokenizer
    return Trace(
        text=text,
        checkpoint_sha256=ck.sha256,
        ids=np.asarray(ids, dtype=np.int64),
        labels=[tok.label(i) for i in ids],
        logits=logits[0].float().cpu().numpy(),
        layers=[None if r is None else layer_numpy(r, 0) for r in records],
        nonfinite=nonfinite,
    )


def reuse_trace(ck: Checkpoint, text: str, trace: Trace | None) -> Trace:
    """`trace` when it was made for this checkpoint and text, else a fresh `run_trace(ck, text)`.
    Raises ValueError when a trace for another text or checkpoint is passed."""
    if trace is None:
        return run_trace(ck, text)
    if trace.text != text or trace.checkpoint_sha256 != ck.sha256:
        raise ValueError("the trace passed was made for another text or checkpoint: pass the matching one")
    return trace


@torch.no_grad()
def forward_blocks(ck: Checkpoint, ids: torch.Tensor) -> tuple[torch.Tensor, list[MixerInternals | None],
                                                              list[torch.Tensor]]:
    """The model's forward pass block by block (ByteLM.forward in eval mode), keeping every
    block's output. ids: (B, L) on ck.device. Returns logits (B, L, 256), the internals (one per
    block, None for attention) and the block outputs (B, L, D) each, all on ck.device."""
    model = ck.model
    x = model.tok_emb(ids)
    records: list = []
    outputs = []
    for block in model.blocks:
        x = block(x, records)
        outputs.append(x)
    return model.head(model.ln_f(x)), records, outputs


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def layer_numpy(rec: MixerInternals, b: int = 0) -> LayerTrace:
    """Batch element b of one mixer's internals as a LayerTrace (numpy, CPU)."""
    kw = {}
    for f in fields(MixerInternals):
        value = getattr(rec, f.name)
        if isinstance(value, torch.Tensor):
            value = _np(value[b] if f.name in _BATCHED else value)
        kw[f.name] = value
    return LayerTrace(**kw)


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


@torch.no_grad()
def static_internals(ck: Checkpoint) -> list[LayerTrace | None]:
    """Every mixer's input-independent internals (learned spectrum, gate bias and mask, two-sided
    kernel) from a one-token forward pass; the per-token fields describe that one token only."""
    ids = torch.full((1, 1), ord("\n"), dtype=torch.long, device=ck.device)
    _, records = ck.model(ids, return_internals=True)
    return [None if r is None else layer_numpy(r, 0) for r in records]
