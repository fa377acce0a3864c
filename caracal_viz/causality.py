"""The causality certificate: proof by perturbation that no output reads a later token.

Model level: for random byte sequences of each length, change the token at position t (all
perturbed copies, each run on its own) and measure max |logits'[s] - logits[s]| over s < t. Layer
level: perturb one block's mixer input at position t (in the first sequence of each length,
at that sequence's positions) and measure the change of that mixer's outputs at s < t, as a
function of the offset d = t - s (how far into the future the leaking source lies).

Tolerance: an exact "pad" model is causal in exact arithmetic, but a float32 FFT of size ~3L
spreads the rounding of every position (the future included) over all outputs: ~1e-7 relative
per FFT, ~1e-6..4e-5 in the logits after six layers. The mhf mixer therefore forms its FFT
product in float64 outside autocast: its rounding (~1e-16 relative) vanishes in the cast back
to float32, so a causal model measures a leak of exactly 0, or a float32 ulp (~6e-8 relative)
grown to at most ~1e-6 through the layers (the shipped "pad" samples measure 0). Leaky mixers
(circular wrap-around, two-sided kernels, FFTNet's global context) move earlier logits far more:
the shipped circular and fftnet samples by ~1 to ~20, even a freshly initialised FFTNet by ~4e-4.
LEAK_TOLERANCE = 1e-5 sits between: >= 10x above the worst float rounding, >= 40x below the
smallest leak seen. The per-layer check uses the same number relative to the mixer's legitimate
response.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import Checkpoint

POSITIONS_PER_TRIAL = 4
MAX_LENGTH = 8192

LEAK_TOLERANCE = 1e-5
"""Largest |change| of an earlier logit (and, relative to the mixer's response, of an earlier mixer
output) still counted as float rounding."""


@dataclass
class LayerLeak:
    """One block's leak, measured on its mixer alone.

    layer, kind:     block index and mixer kind ("mhf", "fftnet", "swa", "attention").
    causal_mode:     the mhf mode, "global" for fftnet, "causal" for attention.
    leak:            max |change of mixer output at s < t| over the perturbations.
    response:        max |change of mixer output at s >= t| (the legitimate response, for scale).
    relative_leak:   leak / response (0 when response is 0).
    causal:          relative_leak <= LEAK_TOLERANCE.
    leak_by_offset:  (Lmax,) max |change| at s = t - d, indexed by d (index 0 is 0).
    worst_offset:    the d with the largest leak at the longest length (0 when causal).
    source:          one line: where this block's leak comes from (which lags reach the future).
    """

    layer: int
    kind: str
    causal_mode: str
    leak: float
    response: float
    relative_leak: float
    causal: bool
    leak_by_offset: np.ndarray
    worst_offset: int
    source: str


@dataclass
class CausalityReport:
    """The certificate.

    causal:         model_leak <= tolerance (and every value was finite).
    model_leak:     max |change of logits at positions < t| when token t changes.
    tolerance:      LEAK_TOLERANCE.
    lengths:        the sequence lengths tested; trials: random sequences per length.
    leak_by_length: {length: model leak at that length}.
    per_layer:      one LayerLeak per block (attention blocks included: they must show none).
    config_causal:  what the config claims (ModelConfig.is_causal).
    summary:        one line: causal or not, the leak, and where it comes from.
    """

    causal: bool
    model_leak: float
    tolerance: float
    lengths: list[int]
    trials: int
    leak_by_length: dict[int, float]
    per_layer: list[LayerLeak]
    config_causal: bool
    summary: str


def causality_report(ck: Checkpoint, lengths=None, trials: int = 3, seed: int = 0) -> CausalityReport:
    """Measure the leak of the model and of each mixer. lengths: sequence lengths to test
    (each 2..MAX_LENGTH; default 16 and min(context, 512)); trials: random sequences per length; seed
    makes the sequences and positions reproducible. Raises ValueError for bad lengths/trials."""
    C = ck.config.context
    lengths = _check_lengths(lengths, C)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    rng = np.random.default_rng(seed)
    leak_by_length: dict[int, float] = {}
    layer_parts: list[list[tuple]] = [[] for _ in ck.model.blocks]
    for L in lengths:
        seqs = rng.integers(0, 256, size=(trials, L))
        positions = _positions(rng, trials, L)
        leak, inputs = _model_leak(ck, seqs, positions, rng)
        leak_by_length[L] = leak
        # One sequence per length is enough to locate a mixer's leak, and costs a third.
        for i, part in enumerate(_layer_leaks(ck, [x[:1] for x in inputs], positions[:1], rng)):
            layer_parts[i].append(part)
    per_layer = [_layer_summary(ck, i, parts, max(lengths)) for i, parts in enumerate(layer_parts)]
    leaks = list(leak_by_length.values())
    model_leak = float("nan") if any(np.isnan(leaks)) else max(leaks)
    causal = bool(np.isfinite(model_leak) and model_leak <= LEAK_TOLERANCE)
    return CausalityReport(
        causal=causal, model_leak=model_leak, tolerance=LEAK_TOLERANCE, lengths=lengths, trials=trials,
        leak_by_length=leak_by_length, per_layer=per_layer, config_causal=ck.config.is_causal,
        summary=_summary(ck, causal, model_leak, per_layer),
    )


def _check_lengths(lengths, context: int) -> list[int]:
    if lengths is None:
        return sorted({max(2, min(16, context)), max(2, min(context, 512))})
    if isinstance(lengths, (str, bytes)):
        raise ValueError(f"lengths must be a list of integers, got {lengths!r}")
    try:
        out = sorted({int(L) for L in lengths})
    except (TypeError, ValueError):
        raise ValueError(f"lengths must be a list of integers, got {lengths!r}") from None
    if not out or out[0] < 2 or out[-1] > MAX_LENGTH:
        raise ValueError(f"every length must be in 2..{MAX_LENGTH} (a token needs a later one to leak from), "
                         f"got {lengths!r}")
    return out


def _positions(rng: np.random.Generator, trials: int, L: int) -> np.ndarray:
    """(trials, P) positions to perturb, 1..L-1: always the last one (every earlier output could
    hear it), the rest at random."""
    P = min(POSITIONS_PER_TRIAL, L - 1)
    pos = np.empty((trials, P), dtype=np.int64)
    for k in range(trials):
        pos[k] = np.concatenate([[L - 1], rng.choice(np.arange(1, L - 1), size=P - 1, replace=False)]) \
            if P > 1 else [L - 1]
    return pos


def _before_mask(positions: np.ndarray, L: int, device) -> torch.Tensor:
    """(trials * P, L) bool, True at s < t for each perturbed copy."""
    t = torch.as_tensor(positions.reshape(-1), device=device)
    return torch.arange(L, device=device)[None, :] < t[:, None]


def _rowwise(fn, x: torch.Tensor) -> torch.Tensor:
    """fn applied to each row of x (B, ...) as a batch of one, concatenated. A batched matrix
    product may round a row differently depending on where it sits in the batch (thread
    partitions, edge tiles: 1.7e-5 in the logits of a causal sample on a 16-thread CPU); rows of
    one shape computed alone round identically up to the perturbed position, so only a real
    dependence on the future is measured."""
    return torch.cat([fn(x[i:i + 1]) for i in range(x.shape[0])])


@torch.no_grad()
def _model_leak(ck: Checkpoint, seqs: np.ndarray, positions: np.ndarray, rng) -> tuple[float, list[torch.Tensor]]:
    """Max |logit change| at s < t over every perturbed copy (each copy run on its own), and
    the unperturbed sequences' input to every block (trials, L, D)."""
    trials, L = seqs.shape
    P = positions.shape[1]
    pert = np.repeat(seqs, P, axis=0)  # (trials * P, L)
    rows = np.arange(trials * P)
    cols = positions.reshape(-1)
    pert[rows, cols] = (pert[rows, cols] + rng.integers(1, 256, size=rows.size)) % 256
    ids = torch.as_tensor(np.concatenate([seqs, pert]), device=ck.device)
    model = ck.model
    x = model.tok_emb(ids)
    inputs = []
    for block in model.blocks:
        inputs.append(x[:trials])
        x = _rowwise(block, x)
    logits = model.head(model.ln_f(x)).float()
    base = logits[:trials].repeat_interleave(P, dim=0)
    change = (logits[trials:] - base).abs().amax(dim=-1)  # (trials * P, L)
    leak = change.masked_fill(~_before_mask(positions, L, ck.device), 0.0).amax()
    if not torch.isfinite(logits).all():
        return float("nan"), inputs
    return float(leak), inputs


@torch.no_grad()
def _layer_leaks(ck: Checkpoint, inputs: list[torch.Tensor], positions: np.ndarray, rng) -> list[tuple]:
    """Per block: (leak, response, leak_by_offset (L,), finite) of its mixer alone, perturbing its
    real input (the pre-normed residual stream `inputs[i]`, (trials, L, D)) at each position by a
    random vector as large as the input there. Each perturbed copy runs on its own (`_rowwise`)."""
    trials, L = inputs[0].shape[:2]
    P = positions.shape[1]
    before = _before_mask(positions, L, ck.device)
    rows = torch.arange(trials * P, device=ck.device)
    cols = torch.as_tensor(positions.reshape(-1), device=ck.device)
    offsets = cols[:, None] - torch.arange(L, device=ck.device)[None, :]  # d = t - s
    out = []
    for block, x in zip(ck.model.blocks, inputs):
        u = block.ln1(x)  # (trials, L, D): the mixer's input
        pert = u.repeat_interleave(P, dim=0)
        direction = torch.as_tensor(rng.standard_normal((trials * P, u.shape[-1])), dtype=u.dtype, device=u.device)
        scale = pert[rows, cols].norm(dim=-1, keepdim=True) / direction.norm(dim=-1, keepdim=True)
        pert[rows, cols] = pert[rows, cols] + direction * scale
        y = _rowwise(block.mixer, torch.cat([u, pert])).float()
        change = (y[trials:] - y[:trials].repeat_interleave(P, dim=0)).abs().amax(dim=-1)  # (trials * P, L)
        finite = bool(torch.isfinite(y).all())
        leak_map = change.masked_fill(~before, 0.0)
        by_offset = torch.zeros(L + 1, device=ck.device).scatter_reduce(
            0, offsets.clamp(min=0).flatten(), leak_map.flatten(), reduce="amax")[:L]
        by_offset[0] = 0.0
        out.append((float(leak_map.amax()), float(change.masked_fill(before, 0.0).amax()),
                    by_offset.cpu().numpy(), finite))
    return out


def _layer_summary(ck: Checkpoint, i: int, parts: list[tuple], L_max: int) -> LayerLeak:
    cfg = ck.config
    kind = cfg.layer_kind(i)
    mode = {"mhf": cfg.causal_mode, "fftnet": "global"}.get(kind, "causal")
    finite = all(p[3] for p in parts)
    leak = max(p[0] for p in parts) if finite else float("nan")
    response = max(p[1] for p in parts)
    by_offset = np.zeros(L_max, dtype=np.float64)
    for p in parts:
        by_offset[: p[2].size] = np.maximum(by_offset[: p[2].size], p[2])
    relative = leak / response if response > 0 else (0.0 if leak == 0 else float("inf"))
    causal = bool(finite and relative <= LEAK_TOLERANCE)
    worst = 0 if causal else int(np.argmax(parts[-1][2]))
    return LayerLeak(layer=i, kind=kind, causal_mode=mode, leak=leak, response=response, relative_leak=relative,
                     causal=causal, leak_by_offset=by_offset, worst_offset=worst,
                     source=_source(kind, mode, causal, finite, worst, by_offset, L_max))


def _source(kind: str, mode: str, causal: bool, finite: bool, worst: int, by_offset: np.ndarray, L: int) -> str:
    """One line naming the mechanism of a block's leak and the offsets (lags) that carry it."""
    if not finite:
        return "NaN/Inf in the mixer output: the leak cannot be measured"
    if causal:
        if kind == "mhf":
            return "none: zero-padded FFT (a linear, not circular, convolution) with causal kernels only"
        return "none: causal attention mask" if kind in ("swa", "attention") else "none measured"
    reach = int(np.count_nonzero(by_offset > LEAK_TOLERANCE * by_offset.max()))
    where = f"outputs hear tokens up to {int(np.flatnonzero(by_offset > 0).max())} ahead ({reach} offsets), " \
            f"most from {worst} ahead"
    if kind == "mhf" and mode == "circular":
        return (f"wrap-around: FFT size N = L (no zero padding), so the combined kernel's lag L-d lands on the "
                f"output d tokens before its source; {where} (kernel lag {L - worst} at L = {L})")
    if kind == "mhf" and mode == "two_sided":
        return f"two-sided learned kernel: no causal mask, so its negative lag -d reads d tokens ahead; {where}"
    if kind == "fftnet":
        return ("global mixing: the mean-over-tokens context that adapts the filter, the unpadded (circular) FFT "
                f"and modReLU on the whole-sequence spectrum let every output read every token; {where}")
    return f"unexpected leak in a {kind} ({mode}) mixer; {where}"


def _summary(ck: Checkpoint, causal: bool, model_leak: float, per_layer: list[LayerLeak]) -> str:
    if not np.isfinite(model_leak):
        return f"{ck.name}: NOT CERTIFIED: NaN/Inf in the logits, the leak cannot be measured"
    if causal:
        return (f"{ck.name}: causal: changing a token moves no earlier logit by more than {model_leak:.1e} "
                f"(tolerance {LEAK_TOLERANCE:.0e}, float rounding)")
    leaky = [p for p in per_layer if not p.causal]
    head = f"{ck.name}: LEAKS: changing a token moves earlier logits by up to {model_leak:.3g}"
    if not leaky:
        return head + " (no single mixer leaks on its own: look at the blocks' interaction)"
    first = leaky[0]
    more = f" and {len(leaky) - 1} more block(s)" if len(leaky) > 1 else ""
    return f"{head}; from block {first.layer} ({first.kind} {first.causal_mode}){more}: {first.source}"
