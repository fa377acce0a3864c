"""The causality certificate: does changing a later token move any earlier prediction?

One function, `causality_report(ck)`, serves the CLI (`check`, `report`, `analyze`), the causal
trick page, Compare and the Overview (the app caches it with st.cache_data), so a checkpoint shows
the same verdict and the same numbers everywhere. Three verdicts: "causal" (green), "leaks" (red)
and "cannot certify" (grey: NaN/Inf in the weights or the activations, nothing can be measured).

Two kinds of evidence.

Structure (MHF blocks, exact, from the config and the weights). An MHF block is causal at length
L exactly when its FFT product y = irfft(rfft(v, N) rfft(g, N) rfft(k, N))[:L] is a linear, not a
circular, convolution of causal factors: v and g hold L samples and the learned kernel, as the
mixer lays it out for an FFT of size N, its weights at buffer indices j. A term v_a g_b k_j lands
on output (a + b + j) mod N; every output s < L - 1 receives a term from a later token as soon as
some a + b + j reaches N. So the block reads the future at length L if and only if some weight
sits at an index j >= N - 2L + 2, that is: N < 2L - 1 + j_max. This one condition covers both
ways to leak: wrap-around (N too small for the kernels' lags, e.g. N = L in "circular" mode) and
weight on a negative lag -m (which the buffer holds at index N - m). The certificate reads the
kernel as the mixer applies it (`kernel_buffer`, `fft_size`) and checks the condition for every
length from 2 to the app's maximum text length (`text.max_text_bytes()`). The rest of an MHF
block is position-wise or the causal 3-tap convolution. FFTNet, attention and any other block have
no such proof: for them the evidence is perturbation alone, and the certificate says so.

Perturbation (every block and the whole model). Random byte sequences of several lengths, from 16
to the maximum text length (past the training context); in each, change the last token, a random
token, or a whole random suffix, and run every copy on its own. For each perturbation:
  leak      max |change of an earlier logit| (positions before the first changed token),
  response  max |change of a logit at the changed position or later| (the model's own reaction),
  floor     the run's own rounding error: max |logit - the same logit computed in higher
            precision| on the unperturbed sequence (float32 against float64; bf16 autocast
            against float32), measured in the same call wherever a leak is not exactly 0.
The rule, in plain words: a perturbation leaks when an earlier logit moves by more than
FLOOR_FACTOR (4) times the rounding floor. Rounding makes two runs of the same computation differ
by at most about twice their own error, and a leak is a change the arithmetic cannot explain.
Every quantity is in the logits' own units, so multiplying all logits by a positive constant
changes none of the ratios and never the verdict. The same rule runs on each block's mixer alone
(its input perturbed at one position by a random vector as large as the input there, its output
compared with the same mixer run in higher precision); that gives the per-block lines and the
leak by offset (how many tokens ahead the source lies).

The verdict never contradicts a per-block line: any block that leaks, by structure or by
perturbation, makes the model leak, whatever the sampled logits say (a small leak can hide
under the rounding of the logits, never under the structure). NaN or Inf anywhere that a
measurement needs makes it "cannot certify: NaN/Inf from block k", unless a leak is proved
anyway.
"""

from __future__ import annotations

import copy
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from models.mhf import MultiHeadFourier
from models.precision import fft_options

from .checkpoint import Checkpoint
from .checks import int_arg
from .text import max_text_bytes

CAUSAL, LEAKS, CANNOT = "causal", "leaks", "cannot certify"
VERDICTS = (CAUSAL, LEAKS, CANNOT)

FLOOR_FACTOR = 4.0
"""A change of an earlier output counts as a leak when it exceeds this many rounding floors."""

ROUNDOFF = {"float32": 2.0**-24, "bf16": 2.0**-8}
"""Unit roundoff of each precision: a change below this fraction of the response is never a leak."""

PRECISIONS = {"float32": "float32 (the MHF FFT products in float64)",
              "bf16": "bf16 autocast on CUDA (the MHF FFT products in float32), as training runs"}

# Perturbation plans: which lengths, how many random sequences and single-token perturbations.
# The CPU plan is sized for a 6-layer, D=160 model in under 3 s on a 2-core CPU (BENCHMARKS.md,
# benchmarks/certificate.py); the GPU covers more lengths and positions in less time.
PERTURB_CAP = {"cpu": 4096, "cuda": 65536}
"""The longest sequence perturbed on each device; the structure is checked up to the maximum text
length whatever this is."""

RULE = ("A change counts as a leak when an earlier logit (or an earlier output of one block's mixer) moves "
        f"by more than {FLOOR_FACTOR:g} times the rounding floor: the difference between the same computation "
        "in the certificate's precision and in higher precision, measured in the same run. Multiplying the "
        "logits by any constant scales the change and the floor alike, so the verdict does not depend on "
        "scale. MHF blocks are also proved from their weights: no weight on a future lag, and an FFT large "
        "enough that nothing wraps around, for every text length up to the app's maximum. Any block that "
        "leaks, by either test, makes the model leak; NaN/Inf means it cannot be certified.")


@dataclass
class Structure:
    """What the config and weights prove about one block.

    status:       "proved" (causal at every length 2..max_length), "leaks" (reads the future at
                  `first_length` and, for a negative lag, every longer length), "none" (no
                  structural argument for this kind of block: perturbation evidence only) or
                  "nonfinite" (NaN/Inf in the learned kernel).
    text:         one line in plain words.
    max_length:   the longest length checked.
    first_length: the shortest length that leaks, or None.
    future_lag:   m > 0 when the leak is weight on lag -m (the token m ahead), else None.
    """

    status: str
    text: str
    max_length: int
    first_length: int | None = None
    future_lag: int | None = None


@dataclass
class LayerLeak:
    """One block's evidence.

    layer, kind:     block index and mixer kind ("mhf", "fftnet", "swa", "attention").
    causal_mode:     the mhf mode, "global" for fftnet, "causal" for attention.
    verdict:         "causal", "leaks" or "cannot certify" (never contradicted by the model's).
    structure:       the Structure line.
    leak:            max |change of the mixer's output at s < t| over its perturbations (NaN when
                     not measurable).
    response:        max |change at s >= t| (the mixer's legitimate reaction, for scale).
    floor:           the largest rounding floor measured for this mixer (0 when no leak needed one).
    relative_leak:   leak / response (0 when both are 0).
    floor_ratio:     leak / floor: above FLOOR_FACTOR is a leak (inf for a leak over a 0 floor).
    lengths:         lengths at which the mixer was perturbed.
    leak_by_offset:  (Lmax,) max |change| at s = t - d, indexed by d (index 0 is 0).
    worst_offset:    the d with the largest leak (0 when causal).
    source:          one line: where this block's leak comes from, or why it is causal.
    """

    layer: int
    kind: str
    causal_mode: str
    verdict: str
    structure: Structure
    leak: float
    response: float
    floor: float
    relative_leak: float
    floor_ratio: float
    lengths: list[int]
    leak_by_offset: np.ndarray
    worst_offset: int
    source: str

    @property
    def causal(self) -> bool:
        """True when this layer's verdict is causal."""
        return self.verdict == CAUSAL

    @property
    def relative_threshold(self) -> float:
        """The change above which this block leaks, relative to its response (the units of
        relative_leak and leak_by_offset / response): FLOOR_FACTOR floors; NaN without a response."""
        return FLOOR_FACTOR * self.floor / self.response if self.response > 0 else float("nan")


@dataclass
class CausalityReport:
    """The certificate of one checkpoint.

    verdict:        "causal", "leaks" or "cannot certify"; `causal` is verdict == "causal".
    precision:      "float32" or "bf16"; precision_text says what runs in which dtype.
    device:         where it ran ("cpu", "cuda:0").
    model_leak:     max |change of an earlier logit| over every perturbation (NaN when not finite).
    model_response: max |change of a logit at or after the change|.
    floor:          the largest rounding floor of the logits measured (see floor_by_length).
    floor_ratio:    the largest leak / floor over the perturbations (FLOOR_FACTOR and below: rounding).
    relative_leak:  model_leak / model_response.
    floor_factor:   FLOOR_FACTOR.
    lengths:        the perturbed sequence lengths; trials: random sequences at each length.
    perturbations:  how many perturbed copies of the model were run.
    max_length:     the app's maximum text length: the structure is checked up to it.
    leak_by_length: {L: model leak at L}; floor_by_length: {L: floor at L, or None where every
                    leak was exactly 0 and no floor was needed}.
    per_layer:      one LayerLeak per block.
    nonfinite:      None, or where NaN/Inf first appeared ("block 3", "the weights of block 1: ...").
    config_causal:  what the config claims (ModelConfig.is_causal).
    coverage:       one line: what the perturbations and the structure covered.
    summary:        one line: the verdict and its main evidence.
    seconds:        wall time of the certificate.
    """

    verdict: str
    precision: str
    precision_text: str
    device: str
    model_leak: float
    model_response: float
    floor: float
    floor_ratio: float
    relative_leak: float
    floor_factor: float
    lengths: list[int]
    trials: dict[int, int]
    perturbations: int
    max_length: int
    leak_by_length: dict[int, float]
    floor_by_length: dict[int, float | None]
    per_layer: list[LayerLeak]
    nonfinite: str | None
    config_causal: bool
    coverage: str
    summary: str
    seconds: float = 0.0
    rule: str = field(default=RULE)

    @property
    def causal(self) -> bool:
        """True when the whole certificate's verdict is causal."""
        return self.verdict == CAUSAL

    @property
    def headline(self) -> str:
        """The verdict in a few words: "Causal", "Causal up to bf16 rounding (floor 0.25)", "Leaks",
        "Cannot certify: NaN/Inf from block 2"."""
        if self.verdict == CANNOT:
            return f"Cannot certify: NaN/Inf from {self.nonfinite}"
        if self.verdict == LEAKS:
            return "Leaks"
        if self.model_leak > 0:
            return f"Causal up to {self.precision} rounding (floor {self.floor:.2g})"
        return "Causal"

    @property
    def leaking_layers(self) -> list[LayerLeak]:
        """The blocks that leak and moved at all (response > 0), whose leak by offset can be read
        relative to their response; in block order."""
        return [p for p in self.per_layer if p.verdict == LEAKS and p.response > 0]

    @property
    def leak_curves(self) -> list[tuple[str, np.ndarray]]:
        """For each of `leaking_layers`: ("layer k", (Lmax,) leak_by_offset / response)."""
        return [(f"layer {p.layer}", p.leak_by_offset / p.response) for p in self.leaking_layers]

    @property
    def leak_tolerance(self) -> float | None:
        """The largest relative_threshold of `leaking_layers` (the rounding tolerance drawn with
        `leak_curves`: above it every one of those blocks' changes is a leak), None without one."""
        return max((p.relative_threshold for p in self.leaking_layers if p.relative_threshold > 0), default=None)

    @property
    def leak_text(self) -> str:
        """The largest change of an earlier logit, in words (no verdict): "changing a token moves
        earlier logits by up to 22.1 (rounding floor 1.5e-05, float32)", or what was seen when nothing
        moved or nothing could be measured."""
        if self.verdict == CANNOT:
            return "nothing can be measured where the activations are not numbers"
        if self.model_leak == 0:
            return ("no earlier logit moved in the perturbed runs, but the structure of a block leaks"
                    if self.verdict == LEAKS else "changing a token moved no earlier logit at all") + f" ({self.precision})"
        return (f"changing a token moves earlier logits by up to {self.model_leak:.3g} "
                f"(rounding floor {self.floor:.2g}, {self.precision})")


# ---- the certificate ------------------------------------------------------------------------------
def causality_report(ck: Checkpoint, *, precision: str = "float32", lengths=None, trials: int | None = None,
                     seed: int = 0) -> CausalityReport:
    """The causality certificate of `ck` (see the module docstring for the rule).

    precision: "float32" (default; the MHF FFT products in float64) or "bf16" (autocast, CUDA only;
               the FFT products in float32, as training runs).
    lengths:   sequence lengths to perturb, each 2..max_text_bytes(); default the device's plan:
               16, the training context and the maximum text length on the CPU (capped at
               PERTURB_CAP), more lengths on CUDA.
    trials:    random sequences per length (default 3 up to length 64, then 1 on the CPU; 2 on CUDA).
    seed:      makes the sequences and positions reproducible (same arguments, same numbers).
    Raises ValueError for bad arguments. Never raises for NaN/Inf: that is the "cannot certify" verdict."""
    start = time.perf_counter()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and ck.device.type != "cuda":
        raise ValueError("bf16 autocast is offered on CUDA only: load the checkpoint on a GPU, or use float32")
    max_len = max_text_bytes(ck.device)
    plan = _plan(ck, lengths, trials, max_len)
    rng = np.random.default_rng(seed)
    model = ck.model
    with torch.no_grad(), fft_options():
        weights_bad = _nonfinite_weights(model)
        structures = [_structure(b.mixer, ck.config.layer_kind(i), max_len) for i, b in enumerate(model.blocks)]
        run = _Runner(model, precision)
        model_parts, layer_parts, nonfinite = [], [[] for _ in model.blocks], weights_bad
        for L, n_seq, singles, last in plan:
            for k in range(n_seq):
                seq = rng.integers(0, 256, size=L)
                measured, cache, bad = _model_perturbations(run, seq, singles, last, rng, always_floor=not model_parts)
                model_parts.append((L, measured))
                nonfinite = nonfinite or bad
                if k == 0:
                    for i, s in enumerate(structures):
                        if _needs_perturbation(s, L, ck.config.context):
                            layer_parts[i].append((L, _layer_perturbations(run, i, cache, singles, rng)))
        per_layer = [_layer_summary(ck, i, structures[i], layer_parts[i], plan[-1][0], precision)
                     for i in range(len(model.blocks))]
    return _report(ck, precision, plan, model_parts, per_layer, nonfinite, max_len, time.perf_counter() - start)


def _plan(ck: Checkpoint, lengths, trials, max_len: int) -> list[tuple[int, int, int, bool]]:
    """[(L, random sequences, random single-token perturbations, whether the last token is changed too)]."""
    if trials is not None:
        int_arg("trials", trials, 1, expect="a positive integer")
    gpu = ck.device.type == "cuda"
    if lengths is None:
        C = ck.config.context
        cap = min(max_len, PERTURB_CAP["cuda" if gpu else "cpu"])
        wanted = {16, 64, 256, C, C + 1, 2 * C, cap} if gpu else {16, C, cap}
        out = sorted({min(L, cap) for L in wanted if L >= 2})
    else:
        if isinstance(lengths, (str, bytes)):
            raise ValueError(f"lengths must be a list of integers, got {lengths!r}")
        try:
            out = sorted({int(L) for L in lengths})
        except (TypeError, ValueError):
            raise ValueError(f"lengths must be a list of integers, got {lengths!r}") from None
        if not out or out[0] < 2 or out[-1] > max_len:
            raise ValueError(f"every length must be in 2..{max_len} (a token needs a later one to leak from; "
                             f"{max_len} is the maximum text length, CARACAL_MAX_TEXT_BYTES), got {lengths!r}")
    plan = []
    for L in out:
        n_seq = trials or (2 if gpu else (3 if L <= 64 else 1))
        # single-token perturbations besides the last token; past 1024 on the CPU the suffix alone
        # (one copy covers every pair of positions across its cut, near and far)
        singles = min(L - 2, 3 if gpu else (2 if L <= 64 else 0))
        plan.append((L, n_seq, max(singles, 0), gpu or L <= 1024))
    return plan


def _nonfinite_weights(model) -> str | None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            where = f"block {name.split('.')[1]}" if name.startswith("blocks.") else name.split(".")[0]
            return f"the weights of {where} ({name})"
    return None


# ---- structure ------------------------------------------------------------------------------------
_FFT_SIZES: dict[tuple, np.ndarray] = {}
_FFT_LOCK = threading.Lock()


def _fft_sizes(mixer: MultiHeadFourier, max_len: int) -> np.ndarray:
    """(max_len + 1,) mixer.fft_size(L) for every L (index L; 0 and 1 unused), once per config."""
    cfg = mixer.cfg
    key = (type(mixer), cfg.causal_mode, cfg.context, cfg.spectral_filter, max_len)
    with _FFT_LOCK:
        sizes = _FFT_SIZES.get(key)
        if sizes is None:
            sizes = np.zeros(max_len + 1, dtype=np.int64)
            for L in range(2, max_len + 1):
                sizes[L] = mixer.fft_size(L)
            _FFT_SIZES[key] = sizes
    return sizes


def _structure(mixer, kind: str, max_len: int) -> Structure:
    """The structural reading of one block's mixer (see the module docstring)."""
    if kind != "mhf" or not isinstance(mixer, MultiHeadFourier):
        what = {"fftnet": "FFTNet mixes through a global mean and modReLU on the whole spectrum",
                "swa": "sliding-window attention", "attention": "attention"}.get(kind, f"a {kind} block")
        return Structure("none", f"{what}: no structural proof, perturbation evidence only", max_len)
    if not mixer.fast:
        return Structure("none", "the plain reference path: no structural reading, perturbation evidence only",
                         max_len)
    C = mixer.context
    sizes = _fft_sizes(mixer, max_len)
    if mixer.cfg.spectral_filter:
        kernel = mixer.kernel_two_sided().detach().double().cpu().numpy()  # (H, 2C) irfft layout
        if not np.isfinite(kernel).all():
            return Structure("nonfinite", "NaN/Inf in the learned kernel: nothing can be proved", max_len)
        nz = (kernel != 0).any(axis=0)
        past = np.flatnonzero(nz[:C])  # lags 0..C-1 with weight
        future = np.flatnonzero(nz[C:][::-1]) + 1  # m in 1..C with weight on lag -m
        two_sided = mixer.cfg.causal_mode == "two_sided"
    else:
        past, future, two_sided = np.array([0]), np.array([], dtype=np.int64), False
    Ls = np.arange(max_len + 1)
    # j_max(L): the highest buffer index with weight at length L, as kernel_buffer lays it out:
    # lags 0..min(L, C)-1 at their own index; for "two_sided" lag -m (m <= min(L-1, C)) at N - m
    top_past = np.full(max_len + 1, -1)
    if past.size:
        idx = np.searchsorted(past, Ls, side="left") - 1  # the largest lag < L
        top_past = np.where(idx >= 0, past[np.clip(idx, 0, None)], -1)
    nearest_future = np.full(max_len + 1, 0)
    if two_sided and future.size:
        nearest_future = np.where(future[0] <= np.minimum(Ls - 1, C), future[0], 0)
    j_max = np.where(nearest_future > 0, sizes - nearest_future, top_past)
    ok = sizes[2:] >= 2 * Ls[2:] - 1 + np.maximum(j_max[2:], 0)
    mismatch = _check_layout(mixer, sizes, j_max, max_len)
    if mismatch:
        return Structure("none", f"the kernel's layout is not the one expected ({mismatch}): perturbation "
                                 "evidence only", max_len)
    if ok.all():
        margin = int(np.min(sizes[2:] - (2 * Ls[2:] - 1 + np.maximum(j_max[2:], 0))))
        reach = int(past.max()) if past.size else 0
        return Structure("proved", f"proved causal for every length 2..{max_len}: no weight on a future lag, and the "
                                   f"FFT size N(L) >= 2L - 1 + the kernel's last lag ({reach}) at every L "
                                   f"(smallest spare {margin})", max_len)
    first = int(np.flatnonzero(~ok)[0]) + 2
    if nearest_future[first] > 0:
        applied = future[future <= min(max_len - 1, C)]
        weights = np.abs(kernel[:, 2 * C - applied]).max(axis=0)
        m = int(applied[np.argmax(weights)])
        return Structure("leaks", f"weight on future lags: the largest, {float(weights.max()):.3g}, on lag -{m} (outputs "
                                  f"read the token {m} ahead from length {m + 1} on); {applied.size} future lag(s) "
                                  f"with weight, the nearest -{int(applied[0])} (from length {first})",
                         max_len, first, m)
    n = int(sizes[first])
    return Structure("leaks", f"wrap-around: at length {first} the FFT size N = {n} is below 2L - 1 + "
                              f"{int(max(j_max[first], 0))} = {2 * first - 1 + int(max(j_max[first], 0))}, so "
                              "late terms of the product wrap onto early outputs"
                     + (" (no zero padding: N = L)" if mixer.cfg.causal_mode == "circular" else ""),
                     max_len, first)


def _check_layout(mixer: MultiHeadFourier, sizes: np.ndarray, j_max: np.ndarray, max_len: int) -> str:
    """Compare the expected highest weighted index with `kernel_buffer` itself at telling lengths:
    the structural reading must describe the kernel the mixer applies. "" when they agree."""
    C = mixer.context
    for L in sorted({2, 3, min(C - 1, max_len), min(C, max_len), min(C + 1, max_len), max_len} - {0, 1}):
        buf, _ = mixer.kernel_buffer(L, int(sizes[L]))
        nz = np.flatnonzero((buf.detach() != 0).any(dim=0).cpu().numpy())
        got = int(nz.max()) if nz.size else -1
        if got != int(j_max[L]):
            return f"highest weighted index {got} at L = {L}, expected {int(j_max[L])}"
    return ""


def _needs_perturbation(s: Structure, L: int, context: int) -> bool:
    """A proved block is perturbed at the shorter lengths only (as a check that the structural
    reading matches what runs); every other block at every length."""
    return s.status != "proved" or L <= max(16, min(context, 1024))


# ---- running the model ------------------------------------------------------------------------------
class _Runner:
    """Runs the model (and, for floors, a higher-precision copy) one sequence at a time, through
    its hook points (models/hooks.py): the whole model with a cache of each block's residual
    stream and mixer input and output, and one block from its cached input with a perturbed mixer
    input (forward(start_at_layer=k, stop_at_layer=k + 1)).

    Each row runs alone, so a perturbed copy and the base round identically wherever the arithmetic
    does not depend on the future (batched matrix products may round a row differently by where it
    sits in the batch)."""

    def __init__(self, model, precision: str):
        self.model, self.precision = model, precision
        self.device = next(model.parameters()).device
        self._ref = None
        n = len(model.blocks)
        self.names = [f"blocks.{k}.{h}" for k in range(n) for h in ("hook_resid_pre", "hook_mixer_in",
                                                                   "hook_mixer_out", "hook_resid_post")]

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    @property
    def ref(self):
        """The higher-precision model: a float64 copy for float32, the model itself without autocast for bf16."""
        if self._ref is None:
            self._ref = self.model if self.precision == "bf16" else copy.deepcopy(self.model).double()
        return self._ref

    @property
    def ref_dtype(self) -> torch.dtype:
        return torch.float32 if self.precision == "bf16" else torch.float64

    def logits(self, ids: torch.Tensor, capture: bool = False):
        """logits (L, V) as float64 for one sequence (L,); with capture also the run's cache (block
        hook points) and the first block whose output is not finite (or None)."""
        with self.autocast():
            if not capture:
                return self.model(ids[None])[0].double(), None, None
            out, cache = self.model.run_with_cache(ids[None], names_filter=self.names)
        bad = next((k for k in range(len(self.model.blocks))
                    if not bool(torch.isfinite(cache[f"blocks.{k}.hook_resid_post"]).all())), None)
        return out[0].double(), cache, bad

    def ref_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.ref(ids[None])[0].double()

    def mixer(self, k: int, resid_pre: torch.Tensor, mixer_in: torch.Tensor | None = None) -> torch.Tensor:
        """Block k's mixer output (L, D) as float64, run from the residual stream entering the block
        (1, L, D), with its mixer input replaced by `mixer_in` when given."""
        point = f"blocks.{k}.hook_mixer_out"
        fwd = [] if mixer_in is None else [(f"blocks.{k}.hook_mixer_in", lambda u, hook: mixer_in)]
        with self.autocast(), self.model.hooks(fwd):
            _, cache = self.model.run_with_cache(resid_pre, start_at_layer=k, stop_at_layer=k + 1, names_filter=point)
        return cache[point][0].double()

    def ref_mixer(self, k: int, resid_pre: torch.Tensor) -> torch.Tensor:
        point = f"blocks.{k}.hook_mixer_out"
        _, cache = self.ref.run_with_cache(resid_pre.to(self.ref_dtype), start_at_layer=k, stop_at_layer=k + 1,
                                           names_filter=point)
        return cache[point][0].double()


@dataclass
class _Measured:
    """One perturbation: the change before the first changed position, at and after it, the
    floor of its length (None until needed), and for single tokens the position."""

    first: int
    leak: float
    response: float
    single: bool
    by_offset: np.ndarray | None = None  # (L,) for single-token perturbations: change at s = t - d


def _single_positions(L: int, singles: int, last: bool, rng) -> list[int]:
    """The last position (when `last`) and `singles` distinct random ones in 1..L-2."""
    chosen = list(rng.choice(np.arange(1, L - 1), size=singles, replace=False)) if singles else []
    return ([L - 1] if last else []) + [int(t) for t in chosen]


def _perturbed_copies(seq: np.ndarray, singles: int, last: bool, rng) -> list[tuple[np.ndarray, int, bool]]:
    """(copy, first changed position, single token?) for: the last token, `singles` random tokens and
    a random suffix (every token from a random cut on replaced)."""
    L = seq.size
    out = []
    positions = _single_positions(L, singles, last, rng)
    for t in positions:
        c = seq.copy()
        c[t] = (c[t] + rng.integers(1, 256)) % 256
        out.append((c, int(t), True))
    if L > 2:
        cut = int(rng.integers(1, L - 1))
        c = seq.copy()
        c[cut:] = (c[cut:] + rng.integers(1, 256, size=L - cut)) % 256
        out.append((c, cut, False))
    return out


def _change(a: torch.Tensor, b: torch.Tensor, first: int) -> tuple[float, float, np.ndarray]:
    """(leak before `first`, response from `first` on, per-position change (L,)) of two (L, ...) outputs."""
    d = (a - b).abs().flatten(1).amax(dim=1)
    return float(d[:first].max()) if first > 0 else 0.0, float(d[first:].max()), d.cpu().numpy()


def _model_perturbations(run: _Runner, seq: np.ndarray, singles: int, last: bool, rng, always_floor: bool = False):
    """The model-level perturbations of one random sequence: (list of _Measured, floor or None,
    finite), the base run's cache of block hook points, and where NaN/Inf first appeared (None if
    nowhere)."""
    dev = run.device
    base_ids = torch.as_tensor(seq, device=dev)
    base, cache, bad_block = run.logits(base_ids, capture=True)
    if bad_block is not None or not torch.isfinite(base).all():
        where = f"block {bad_block}" if bad_block is not None else "the final LayerNorm and head"
        return ([], None, False), cache, where
    measured = []
    for c, first, single in _perturbed_copies(seq, singles, last, rng):
        out, _, _ = run.logits(torch.as_tensor(c, device=dev))
        if not torch.isfinite(out).all():
            return (measured, None, False), cache, f"a perturbed copy at length {seq.size}"
        leak, resp, d = _change(out, base, first)
        measured.append(_Measured(first, leak, resp, single, d[:first][::-1] if single else None))
    floor = None
    if always_floor or any(m.leak > 0 for m in measured):
        ref = run.ref_logits(base_ids)
        floor = float((base - ref).abs().max()) if torch.isfinite(ref).all() else float("inf")
    return (measured, floor, True), cache, None


def _layer_perturbations(run: _Runner, i: int, cache: dict, singles: int, rng):
    """Block i's mixer alone on its real input u (1, L, D) from the base run's cache, perturbed at
    single positions by a random vector as large as the input there: (list of _Measured, floor or
    None, finite)."""
    p = f"blocks.{i}."
    resid, u, base = cache[p + "hook_resid_pre"], cache[p + "hook_mixer_in"], cache[p + "hook_mixer_out"]
    L = u.shape[1]
    if not (torch.isfinite(u).all() and torch.isfinite(base).all()):
        return [], None, False
    base = base[0].double()
    measured = []
    for t in _single_positions(L, singles, True, rng):
        pert = u.clone()
        direction = torch.as_tensor(rng.standard_normal(u.shape[-1]), dtype=u.dtype, device=u.device)
        pert[0, t] += direction * (u[0, t].norm() / direction.norm())
        out = run.mixer(i, resid, pert)
        if not torch.isfinite(out).all():
            return measured, None, False
        leak, resp, d = _change(out, base, int(t))
        measured.append(_Measured(int(t), leak, resp, True, d[:t][::-1]))
    floor = None
    if any(m.leak > 0 for m in measured):
        ref = run.ref_mixer(i, resid)
        floor = float((base - ref).abs().max()) if torch.isfinite(ref).all() else float("inf")
    return measured, floor, True


# ---- verdicts -------------------------------------------------------------------------------------
def _leaks(m: _Measured, floor: float | None, precision: str) -> bool:
    """The rule: more than FLOOR_FACTOR rounding floors and more than one unit roundoff of the response."""
    return m.leak > FLOOR_FACTOR * (floor or 0.0) and m.leak > ROUNDOFF[precision] * m.response


def _ratio(leak: float, floor: float) -> float:
    if leak == 0:
        return 0.0
    return leak / floor if floor > 0 else float("inf")


def _layer_summary(ck: Checkpoint, i: int, s: Structure, parts: list, L_max: int, precision: str) -> LayerLeak:
    cfg = ck.config
    kind = cfg.layer_kind(i)
    # the block's own mode: a copy may run one block differently (interventions.circular_copy)
    mixer_cfg = getattr(ck.model.blocks[i].mixer, "cfg", cfg)
    mode = {"mhf": mixer_cfg.causal_mode, "fftnet": "global"}.get(kind, "causal")
    finite = all(p[1][2] for p in parts)
    measured = [(m, p[1][1]) for p in parts for m in p[1][0]]
    by_offset = np.zeros(L_max, dtype=np.float64)
    for m, _ in measured:
        by_offset[1:m.by_offset.size + 1] = np.maximum(by_offset[1:m.by_offset.size + 1], m.by_offset)
    leak = max((m.leak for m, _ in measured), default=0.0) if finite else float("nan")
    response = max((m.response for m, _ in measured), default=0.0)
    floors = [f for _, f in measured if f is not None]
    floor = max(floors, default=0.0)
    ratio = max((_ratio(m.leak, f or 0.0) for m, f in measured), default=0.0) if finite else float("nan")
    pert_leaks = any(_leaks(m, f, precision) for m, f in measured)
    if s.status == "leaks" or pert_leaks:
        verdict = LEAKS
    elif not finite or s.status == "nonfinite":
        verdict = CANNOT
    else:
        verdict = CAUSAL
    relative = leak / response if response > 0 else (0.0 if leak == 0 else float("inf"))
    worst = int(np.argmax(by_offset)) if verdict == LEAKS and by_offset.max() > 0 else 0
    return LayerLeak(layer=i, kind=kind, causal_mode=mode, verdict=verdict, structure=s, leak=leak, response=response,
                     floor=floor, relative_leak=relative, floor_ratio=ratio, lengths=[p[0] for p in parts],
                     leak_by_offset=by_offset, worst_offset=worst,
                     source=_source(kind, mode, verdict, s, finite, pert_leaks, worst, by_offset, ratio, relative))


def _source(kind, mode, verdict, s: Structure, finite, pert_leaks, worst, by_offset, ratio, relative) -> str:
    """One line: the block's evidence and, for a leak, its mechanism."""
    if verdict == CANNOT:
        return ("NaN/Inf in the learned kernel" if s.status == "nonfinite"
                else "NaN/Inf in the mixer's input or output: the leak cannot be measured")
    measured = (f"perturbation: earlier outputs move by {relative:.2g} of the response, {ratio:.3g} floors"
                if np.isfinite(ratio) else "perturbation: earlier outputs move over a zero rounding floor")
    if verdict == CAUSAL:
        if s.status == "proved":
            return f"{s.text}; perturbation agrees (no earlier output moved beyond rounding)"
        return f"{s.text}; no earlier output moved beyond {FLOOR_FACTOR:g} rounding floors"
    reach = ""
    if by_offset.max() > 0:
        reach = (f"; outputs hear tokens up to {int(np.flatnonzero(by_offset > 0).max())} ahead, "
                 f"most from {worst} ahead")
    if s.status == "leaks":
        return f"{s.text}" + (f"; {measured}{reach}" if pert_leaks else
                              "; the perturbed lengths show it only within rounding")
    if kind == "fftnet":
        return ("global mixing: the mean-over-tokens context that adapts the filter, the unpadded (circular) FFT "
                f"and modReLU on the whole-sequence spectrum let every output read every token; {measured}{reach} "
                "(no structural proof for FFTNet: perturbation evidence only)")
    return f"{s.text}; but {measured}{reach}: a leak the structure did not predict"


def _report(ck, precision, plan, model_parts, per_layer, nonfinite, max_len, seconds) -> CausalityReport:
    leak_by_length: dict[int, float] = {}
    floor_by_length: dict[int, float | None] = {}
    leaks, ratios, responses, n = [], [], [], 0
    finite = nonfinite is None
    for L, (measured, floor, ok) in model_parts:
        finite = finite and ok
        n += len(measured)
        leak_by_length[L] = max([leak_by_length.get(L, 0.0)] + [m.leak for m in measured])
        if floor is not None:
            floor_by_length[L] = max(floor, floor_by_length.get(L) or 0.0)
        else:
            floor_by_length.setdefault(L, None)
        for m in measured:
            leaks.append(_leaks(m, floor, precision))
            ratios.append(_ratio(m.leak, floor or 0.0))
            responses.append(m.response)
    model_leak = max(leak_by_length.values(), default=0.0) if finite else float("nan")
    model_response = max(responses, default=0.0)
    floor = max((f for f in floor_by_length.values() if f is not None), default=0.0)
    ratio = max(ratios, default=0.0) if finite else float("nan")
    layer_leaks = [p for p in per_layer if p.verdict == LEAKS]
    if layer_leaks or any(leaks):
        verdict = LEAKS
    elif not finite or any(p.verdict == CANNOT for p in per_layer):
        verdict = CANNOT
        if nonfinite is None:
            bad = next(p for p in per_layer if p.verdict == CANNOT)
            nonfinite = f"block {bad.layer}"
    else:
        verdict = CAUSAL
    lengths = [L for L, *_ in plan]
    report = CausalityReport(
        verdict=verdict, precision=precision, precision_text=PRECISIONS[precision], device=str(ck.device),
        model_leak=model_leak, model_response=model_response, floor=floor, floor_ratio=ratio,
        relative_leak=(model_leak / model_response if model_response > 0 else 0.0) if finite else float("nan"),
        floor_factor=FLOOR_FACTOR, lengths=lengths, trials={L: k for L, k, *_ in plan}, perturbations=n,
        max_length=max_len, leak_by_length=leak_by_length, floor_by_length=floor_by_length, per_layer=per_layer,
        nonfinite=nonfinite, config_causal=ck.config.is_causal,
        coverage=_coverage(plan, n, per_layer, max_len, precision), summary="", seconds=round(seconds, 3))
    report.summary = _summary(ck, report, any(leaks))
    return report


def _coverage(plan, n: int, per_layer: list[LayerLeak], max_len: int, precision: str) -> str:
    lengths = ", ".join(str(L) for L, *_ in plan)
    proved = [p.layer for p in per_layer if p.structure.status in ("proved", "leaks")]
    text = (f"{n} perturbed copies of the model in {precision} at lengths {lengths} (the last token, random tokens "
            f"and a random suffix of each sequence: changes up to {max(L for L, *_ in plan) - 1} tokens ahead)")
    if proved:
        text += (f"; the structure of block{'s' if len(proved) > 1 else ''} {', '.join(map(str, proved))} read "
                 f"from the weights for every length 2..{max_len}")
    return text


def _summary(ck: Checkpoint, r: CausalityReport, model_leaks: bool) -> str:
    name = ck.name
    if r.verdict == CANNOT:
        return (f"{name}: cannot certify: NaN/Inf from {r.nonfinite}; the leak cannot be measured "
                "(the checkpoint's weights or activations overflow float32)")
    floor_words = f"{r.precision} rounding floor {r.floor:.2g}"
    if r.verdict == CAUSAL:
        proved = [p for p in r.per_layer if p.structure.status == "proved"]
        how = ("proved from the weights for every block and every length up to "
               f"{r.max_length}" if len(proved) == len(r.per_layer) else
               (f"blocks {', '.join(str(p.layer) for p in proved)} proved from the weights, the others by "
                "perturbation" if proved else "by perturbation"))
        moved = ("no earlier logit moved at all" if r.model_leak == 0 else
                 f"earlier logits move by up to {r.model_leak:.2g}, within {FLOOR_FACTOR:g} x the {floor_words}")
        head = "causal" if r.model_leak == 0 else f"causal up to {r.precision} rounding (floor {r.floor:.2g})"
        return f"{name}: {head}: {how}; {moved}"
    leaky = [p for p in r.per_layer if p.verdict == LEAKS]
    if r.model_leak > 0:
        head = f"{name}: LEAKS: changing a token moves earlier logits by up to {r.model_leak:.3g}"
        if not model_leaks:
            head += f" (within {FLOOR_FACTOR:g} x the {floor_words} at the logits, but a block leaks)"
    else:
        head = f"{name}: LEAKS: no earlier logit moved in the perturbed runs, but a block leaks"
    if not leaky:
        return head + " (no single mixer leaks on its own: look at the blocks' interaction)"
    first = leaky[0]
    more = f" and {len(leaky) - 1} more block(s)" if len(leaky) > 1 else ""
    return f"{head}; from block {first.layer} ({first.kind} {first.causal_mode}){more}: {first.source}"
