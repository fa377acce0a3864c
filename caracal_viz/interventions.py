"""Interventions: change a head, a frequency band or a gate and see what the prediction does.

Every intervention is a set of hooks on the model's hook points (models/hooks.py; names and
shapes in models/lm.py), attached in the calling thread only, so the shared model is never
modified; switching a block to "circular" runs a copy of the model. Each function returns an
`InterventionResult`: per-byte loss before and after (bits), the top-k next bytes before and
after at one position, the bits/byte change, and the causality certificate of the intervened
model where the intervention can break causality.

Conventions.
- Positions: row i is the prediction after bytes 0..i for byte i + 1 (caracal_viz.predict);
  losses in bits; the last position has no next byte (NaN).
- Frequencies in cycles/token, 0 .. 0.5. A band is the closed interval [lo, hi]; `period_band`
  turns a period range in tokens into one. MHF learned spectra live on the rfft grid of size 2C
  (bin f is f / (2C) cycles/token, f = 0..C); the gate stream's spectrum (and FFTNet's adapted
  filter) on the text's own grid (bin f is f / L, f = 0..L//2; FFTNet's filter: f / (2 (F - 1))).
- Heads: head h of a mixer is channels h*dh .. (h+1)*dh - 1 of its streams (the hooks' head axis).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from models.mhf import MultiHeadFourier

from .checkpoint import Checkpoint
from .checks import int_arg
from .predict import NextTokenView, next_token_view
from .text import TextError, encode_text
from .trace import forward_pass

TOP_K = 5
SWEEP_BANDS = 8
CERT_TRIALS = 2  # random sequences per length for the intervened model's certificate
CERT_MAX_LENGTH = 512
_SWEEP_ELEMENTS = 1 << 27  # floats of the widest activation (B * L * mlp width) per sweep batch


@dataclass
class InterventionResult:
    """What one intervention did to the model's predictions on one text.

    description:   one line saying what was changed.
    labels:        L printable byte labels.
    loss_before, loss_after: (L,) float64 bits, -log2 p(x_{i+1} | x_<=i); NaN at i = L-1.
    bits_before, bits_after: mean bits/byte over the L-1 scored positions.
    position:      the position of the top-k lists (default: where the loss changed most).
    topk_before, topk_after: k (label, probability) pairs, most likely first, at `position`.
    topk_ids_before, topk_ids_after: (k,) int64; topk_probs_*: (k,) float64.
    certificate:   caracal_viz.causality.CausalityReport of the intervened model, or None when it
                   was not measured (the intervention keeps the model's causality, or the model
                   was not causal to begin with).
    before, after: the whole predict.NextTokenView without and with the intervention (top-k at
                   every position: `topk_change(i)`).
    """

    description: str
    labels: list[str]
    loss_before: np.ndarray
    loss_after: np.ndarray
    bits_before: float
    bits_after: float
    position: int
    topk_ids_before: np.ndarray
    topk_probs_before: np.ndarray
    topk_ids_after: np.ndarray
    topk_probs_after: np.ndarray
    topk_before: list[tuple[str, float]]
    topk_after: list[tuple[str, float]]
    certificate: object | None = None
    before: NextTokenView | None = None
    after: NextTokenView | None = None

    def topk_change(self, i: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The top-k (label, probability) pairs at position i before and after."""
        i = _check_index("position", i, len(self.labels))
        return _pairs(self.before, i), _pairs(self.after, i)

    @property
    def loss_change(self) -> np.ndarray:
        """(L,) bits added at each position (after - before); NaN at the last."""
        return self.loss_after - self.loss_before

    @property
    def delta_bits(self) -> float:
        """Bits/byte added by the intervention (after - before)."""
        return self.bits_after - self.bits_before


@dataclass
class PatchingResult:
    """Activation patching: the corrupted text run with one activation taken from the clean run.

    hook:          the patched point ("resid_pre", "mixer_out" or "mlp_out" of each block).
    position:      the scored position: the loss of the clean text's byte position + 1.
    clean_bits, corrupted_bits: that loss (bits) on the clean and on the corrupted run.
    loss_bits:     (n_layers, L) float64: the loss at `position` with block k's activation at
                   position t patched from the clean run (NaN where nothing was patched).
    restored:      (n_layers, L) (corrupted - patched) / (corrupted - clean): 1 means the patch
                   restores the clean prediction, 0 means it does nothing (NaN when the texts
                   give the same loss).
    mean_bits:     (n_layers, L) mean bits/byte of the clean text's next bytes over the scored
                   positions, patched run.
    """

    hook: str
    position: int
    clean_labels: list[str]
    corrupted_labels: list[str]
    clean_bits: float
    corrupted_bits: float
    loss_bits: np.ndarray
    restored: np.ndarray
    mean_bits: np.ndarray


@dataclass
class SweepResult:
    """Which heads and frequency bands a text needs: bits/byte added by each ablation.

    bits_clean:  mean bits/byte of the unmodified model on the text.
    head_delta:  (n_layers, H) bits/byte added by zero-ablating head h of block k (NaN for
                 attention blocks).
    band_edges:  (n_bands + 1,) cycles/token: band b is [band_edges[b], band_edges[b+1]], on a
                 log-frequency grid from 1/C to 0.5 with the first band reaching down to 0.
    band_delta:  (n_layers, H, n_bands) bits/byte added by stopping band b in head h's learned
                 spectrum (MHF) or adapted filter (FFTNet); NaN where the block has none.
    """

    bits_clean: float
    head_delta: np.ndarray
    band_edges: np.ndarray
    band_delta: np.ndarray

    def rows(self) -> list[dict]:
        """One dict per (layer, head, band or None): the CSV/DataFrame form."""
        out = []
        L, H, nb = self.band_delta.shape
        for k in range(L):
            for h in range(H):
                out.append({"layer": k, "head": h, "band_lo": "", "band_hi": "", "period_lo": "", "period_hi": "",
                            "ablation": "head zeroed", "delta_bits_per_byte": float(self.head_delta[k, h])})
                for b in range(nb):
                    lo, hi = float(self.band_edges[b]), float(self.band_edges[b + 1])
                    out.append({"layer": k, "head": h, "band_lo": lo, "band_hi": hi,
                                "period_lo": 1 / hi, "period_hi": 1 / lo if lo > 0 else math.inf,
                                "ablation": "band stopped", "delta_bits_per_byte": float(self.band_delta[k, h, b])})
        return out


# ---- checks ---------------------------------------------------------------------------------
def _check_text(text: str) -> list[int]:
    ids = encode_text(text)
    if len(ids) < 2:
        raise TextError("the text is one byte long: an intervention is measured on the next bytes, give at least two")
    return ids


def _check_index(name: str, value, n: int) -> int:
    """value as an index 0..n-1 (an integer), else a ValueError naming the range."""
    return int_arg(name, value, 0, n - 1)


def _fourier_mixer(ck: Checkpoint, layer) -> tuple[int, torch.nn.Module]:
    k = _check_index("layer", layer, ck.config.n_layers)
    mixer = ck.model.blocks[k].mixer
    if not hasattr(mixer, "hook_mixed"):
        raise ValueError(f"block {k} is an attention block: pick a Fourier (mhf or fftnet) block")
    return k, mixer


def check_band(band) -> tuple[float, float]:
    """(lo, hi) in cycles/token with 0 <= lo < hi <= 0.5, or ValueError with a one-line message."""
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ValueError(f"a band is two frequencies (lo, hi) in cycles/token, got {band!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 0.5):
        raise ValueError(f"band {lo:g}..{hi:g} cycles/token is outside 0..0.5 or empty: "
                         "give 0 <= lo < hi <= 0.5 (0.5 is the Nyquist frequency)")
    return lo, hi


def period_band(shortest: float, longest: float) -> tuple[float, float]:
    """The band (1/longest, 1/shortest) in cycles/token for periods shortest..longest tokens
    (longest may be inf for a band down to 0). Raises ValueError unless 2 <= shortest < longest."""
    try:
        shortest, longest = float(shortest), float(longest)
    except (TypeError, ValueError):
        raise ValueError(f"periods must be numbers of tokens, got {shortest!r}, {longest!r}") from None
    if not (shortest >= 2 and longest > shortest) or math.isnan(longest):
        raise ValueError(f"periods {shortest:g}..{longest:g} tokens: give 2 <= shortest < longest "
                         "(2 tokens is the Nyquist period)")
    return 1.0 / longest, 1.0 / shortest


def parse_band(text: str) -> tuple[float, float]:
    """A band typed by a user: "LO HI" in cycles/token (e.g. "0.1 0.15"), or "T SHORTEST LONGEST"
    as periods in tokens (e.g. "T 7 9"; "inf" for no longest). Commas and dashes between the
    numbers are allowed. Raises ValueError with a one-line message."""
    raw = str(text).strip()
    periods = raw[:1] in ("T", "t", "p", "P")
    values = [float(x) for x in re.findall(r"inf|\d*\.?\d+(?:e[-+]?\d+)?", raw.lower())]
    if re.search(r"(^|[\s,])-\s*\d", raw):
        raise ValueError(f"{raw[:40]!r}: frequencies and periods cannot be negative")
    if len(values) != 2 or re.search(r"[^\d\s.,\-einfaprodtTP]", raw):
        raise ValueError(f"cannot read a band from {raw[:40]!r}: type two frequencies such as '0.1 0.15' "
                         "(cycles/token) or 'T 7 9' (periods in tokens)")
    return period_band(*values) if periods else check_band(values)


def _bins(freqs: np.ndarray, band: tuple[float, float], what: str) -> np.ndarray:
    sel = (freqs >= band[0]) & (freqs <= band[1])
    if not sel.any():
        step = freqs[1] - freqs[0] if freqs.size > 1 else 0.5
        raise ValueError(f"band {band[0]:.4g}..{band[1]:.4g} cycles/token holds no bin of {what} "
                         f"(bins every {step:.4g}): widen it")
    return sel


def spectrum_freqs(mixer) -> np.ndarray:
    """Cycles/token of the bins of a mixer's learned spectrum: (C+1,) for MHF (grid of size 2C)."""
    return np.arange(mixer.context + 1) / (2 * mixer.context)


def _filter_freqs(F: int) -> np.ndarray:
    """FFTNet's adapted filter (and its gated spectrum) on F bins: 0 .. 0.5 (align_corners)."""
    return np.linspace(0.0, 0.5, F) if F > 1 else np.zeros(1)


# ---- the hooks ------------------------------------------------------------------------------
def head_hooks(ck: Checkpoint, layer: int, head: int, mode: str = "zero", text: str | None = None) -> list:
    """fwd_hooks that ablate `head` of block `layer`'s mixer output (hook_mixed, before the output
    projection): mode "zero", or "mean" (the head's mean over the positions of `text`, a
    constant, so causality is kept)."""
    k, mixer = _fourier_mixer(ck, layer)
    h = _check_index("head", head, ck.config.n_heads)
    if mode not in ("zero", "mean"):
        raise ValueError(f"head ablation mode must be 'zero' or 'mean', got {mode!r}")
    name = f"blocks.{k}.mixer.hook_mixed"
    fill = None
    if mode == "mean":
        if text is None:
            raise ValueError("mean ablation needs the text whose mean replaces the head")
        with torch.no_grad():
            _, cache = ck.model.run_with_cache(torch.tensor([encode_text(text, device=ck.device)], device=ck.device), names_filter=name)
        fill = cache[name][0, :, h].mean(dim=0)  # (dh,)

    def ablate(y, hook):
        y = y.clone()
        y[..., h, :] = 0.0 if fill is None else fill.to(y.dtype)
        return y

    return [(name, ablate)]


def band_hooks(ck: Checkpoint, layer: int, head: int, band, *, stream: str = "spectrum", mode: str = "stop") -> list:
    """fwd_hooks that stop (mode "stop") or keep only (mode "pass") the band [lo, hi] cycles/token
    of head `head` in block `layer`:
    - stream "spectrum": the learned spectrum after modReLU (MHF hook_spectrum; the causal mask
      follows, so causality is kept) or FFTNet's adapted filter (hook_filter);
    - stream "gate": the gate stream g's spectrum on this text's grid (MHF hook_g: g is filtered
      by an FFT over the whole text, which reads the future: the certificate shows the leak)."""
    k, mixer = _fourier_mixer(ck, layer)
    h = _check_index("head", head, ck.config.n_heads)
    band = check_band(band)
    if mode not in ("stop", "pass"):
        raise ValueError(f"band mode must be 'stop' or 'pass', got {mode!r}")
    keep_band = mode == "pass"
    is_mhf = isinstance(mixer, MultiHeadFourier)
    if stream == "spectrum":
        if is_mhf:
            if not mixer.cfg.spectral_filter:
                raise ValueError(f"block {k} has no learned spectrum (spectral_filter off): use the gate stream")
            sel = torch.as_tensor(_bins(spectrum_freqs(mixer), band, "the learned spectrum"), device=ck.device)

            def edit_spectrum(S, hook):
                m = sel if keep_band else ~sel
                S = S.clone()
                S[h] = torch.where(m, S[h], torch.zeros_like(S[h]))
                return S

            return [(f"blocks.{k}.mixer.hook_spectrum", edit_spectrum)]

        def edit_filter(W, hook):  # (B, H, F) complex
            sel = torch.as_tensor(_bins(_filter_freqs(W.shape[-1]), band, "the adapted filter"), device=W.device)
            m = sel if keep_band else ~sel
            W = W.clone()
            W[:, h] = torch.where(m, W[:, h], torch.zeros_like(W[:, h]))
            return W

        return [(f"blocks.{k}.mixer.hook_filter", edit_filter)]
    if stream != "gate":
        raise ValueError(f"stream must be 'spectrum' or 'gate', got {stream!r}")
    if not is_mhf:
        raise ValueError(f"block {k} is an FFTNet mixer: it has no gate stream (use stream 'spectrum')")

    def edit_gate(g, hook):  # (B, L, H, dh)
        L = g.shape[1]
        sel = torch.as_tensor(np.arange(L // 2 + 1) / L, device=g.device)
        sel = (sel >= band[0]) & (sel <= band[1])
        m = sel if keep_band else ~sel
        G = torch.fft.rfft(g[:, :, h].double(), n=L, dim=1)  # (B, F, dh)
        g = g.clone()
        g[:, :, h] = torch.fft.irfft(G * m[:, None], n=L, dim=1).to(g.dtype)
        return g

    return [(f"blocks.{k}.mixer.hook_g", edit_gate)]


def gate_hooks(ck: Checkpoint, layer: int, head: int, band, state: str = "closed") -> list:
    """fwd_hooks that force head `head`'s modReLU gates in block `layer` over the bins in `band`
    (cycles/token) "closed" (factor 0: the bin is removed) or "open" (factor 1: the spectrum
    passes as if modReLU were off there). MHF: the learned spectrum's gates (hook_gate, causality
    kept); FFTNet: the gates on the filtered data spectrum."""
    k, mixer = _fourier_mixer(ck, layer)
    h = _check_index("head", head, ck.config.n_heads)
    band = check_band(band)
    if state not in ("open", "closed"):
        raise ValueError(f"gate state must be 'open' or 'closed', got {state!r}")
    value = 1.0 if state == "open" else 0.0
    if isinstance(mixer, MultiHeadFourier):
        if mixer.gate_bias is None:
            raise ValueError(f"block {k} has no modReLU gates (modrelu off)")
        sel = torch.as_tensor(_bins(spectrum_freqs(mixer), band, "the learned spectrum"), device=ck.device)

        def force(f, hook):  # (H, C+1)
            f = f.clone()
            f[h, sel] = value
            return f
    else:
        def force(f, hook):  # (B, F, H, dh)
            sel = torch.as_tensor(_bins(_filter_freqs(f.shape[1]), band, "the data spectrum"), device=f.device)
            f = f.clone()
            f[:, sel, h] = value
            return f

    return [(f"blocks.{k}.mixer.hook_gate", force)]


def circular_copy(ck: Checkpoint, layer: int) -> Checkpoint:
    """A copy of ck whose block `layer` mixes in causal_mode "circular" (no padding: late tokens
    wrap into early outputs). The shared model is not touched."""
    k, mixer = _fourier_mixer(ck, layer)
    if not isinstance(mixer, MultiHeadFourier):
        raise ValueError(f"block {k} is an FFTNet mixer: only MHF blocks have a causal mode to switch")
    if mixer.cfg.causal_mode == "circular":
        raise ValueError(f"block {k} is already circular")
    model = copy.deepcopy(ck.model)
    m = model.blocks[k].mixer
    m.cfg = dataclasses.replace(m.cfg, causal_mode="circular")  # its kernel-spectrum cache keys on the mode
    return dataclasses.replace(ck, model=model, sha256=f"{ck.sha256}+circular{k}",
                               name=f"{ck.name} (block {k} circular)")


# ---- running one intervention ---------------------------------------------------------------
def run_intervention(ck: Checkpoint, text: str, fwd_hooks: list, description: str, *,
                     position: int | None = None, k: int = TOP_K, certify: bool = False,
                     model_ck: Checkpoint | None = None) -> InterventionResult:
    """The predictions on `text` without and with `fwd_hooks` (on `model_ck`, default ck: a
    modified copy such as `circular_copy`), and with certify the causality certificate of the
    intervened model (caracal_viz.causality.causality_report with the hooks attached)."""
    ids = _check_text(text)
    after_ck = model_ck or ck
    before = next_token_view(ck, forward_pass(ck, text), k)
    with after_ck.model.hooks(fwd_hooks):
        after = next_token_view(after_ck, forward_pass(after_ck, text), k)
        cert = _certificate(after_ck) if certify else None
    if position is None:
        change = np.nan_to_num(np.abs(after.loss_bits - before.loss_bits)[:-1], nan=-1.0)
        position = int(np.argmax(change))
    position = _check_index("position", position, len(ids))
    return InterventionResult(
        description=description, labels=before.labels, loss_before=before.loss_bits, loss_after=after.loss_bits,
        bits_before=before.mean_bits, bits_after=after.mean_bits, position=position,
        topk_ids_before=before.topk_ids[position], topk_probs_before=before.topk_probs[position],
        topk_ids_after=after.topk_ids[position], topk_probs_after=after.topk_probs[position],
        topk_before=_pairs(before, position), topk_after=_pairs(after, position), certificate=cert,
        before=before, after=after)


def _pairs(view: NextTokenView, i: int) -> list[tuple[str, float]]:
    return [(lab, float(p)) for lab, p in zip(view.topk_labels[i], view.topk_probs[i])]


def _certificate(ck: Checkpoint):
    from .causality import causality_report  # cert's module: its public entry point only
    # perturbation at 16 bytes and the training context (the structure of every MHF block is
    # checked at every length either way): the default plan reaches 4,096 bytes on the CPU
    lengths = sorted({16, min(ck.config.context, CERT_MAX_LENGTH)})
    return causality_report(ck, lengths=lengths, trials=CERT_TRIALS)


def _auto_certify(ck: Checkpoint, certify: bool | None, can_break: bool) -> bool:
    return ck.config.is_causal and can_break if certify is None else bool(certify)


def ablate_head(ck: Checkpoint, text: str, layer: int, head: int, mode: str = "zero", *,
                position: int | None = None, k: int = TOP_K, certify: bool | None = None) -> InterventionResult:
    """Head `head` of block `layer` ablated (mode "zero" or "mean", see `head_hooks`).
    certify: None measures the certificate only where causality can break (not here)."""
    hooks = head_hooks(ck, layer, head, mode, text)
    return run_intervention(ck, text, hooks, f"block {layer} head {head} {mode}-ablated", position=position, k=k,
                            certify=_auto_certify(ck, certify, False))


def filter_band(ck: Checkpoint, text: str, layer: int, head: int, band=None, *, periods=None,
                stream: str = "spectrum", mode: str = "stop", position: int | None = None, k: int = TOP_K,
                certify: bool | None = None) -> InterventionResult:
    """A band stopped or passed in one head's learned spectrum or gate stream (see `band_hooks`),
    given as `band` (lo, hi) cycles/token or `periods` (shortest, longest) tokens."""
    if (band is None) == (periods is None):
        raise ValueError("give the band either in cycles/token (band=(lo, hi)) or as periods=(shortest, longest)")
    band = check_band(band) if periods is None else period_band(*periods)
    hooks = band_hooks(ck, layer, head, band, stream=stream, mode=mode)
    what = f"{'band' if mode == 'stop' else 'only band'} {band[0]:.4g}..{band[1]:.4g} cycles/token " \
           f"(periods {_period_text(band)}) {'stopped' if mode == 'stop' else 'passed'}"
    return run_intervention(ck, text, hooks, f"block {layer} head {head} {stream}: {what}", position=position, k=k,
                            certify=_auto_certify(ck, certify, stream == "gate"))


def _period_text(band: tuple[float, float]) -> str:
    hi = "inf" if band[0] == 0 else f"{1 / band[0]:.3g}"
    return f"{1 / band[1]:.3g}..{hi}"


def force_gates(ck: Checkpoint, text: str, layer: int, head: int, band, state: str = "closed", *,
                position: int | None = None, k: int = TOP_K, certify: bool | None = None) -> InterventionResult:
    """Head `head`'s modReLU gates in block `layer` forced open or closed over `band` (see `gate_hooks`)."""
    band = check_band(band)
    hooks = gate_hooks(ck, layer, head, band, state)
    return run_intervention(ck, text, hooks, f"block {layer} head {head} gates {band[0]:.4g}..{band[1]:.4g} "
                            f"cycles/token forced {state}", position=position, k=k,
                            certify=_auto_certify(ck, certify, False))


def switch_to_circular(ck: Checkpoint, text: str, layer: int, *, position: int | None = None, k: int = TOP_K,
                       certify: bool | None = None) -> InterventionResult:
    """Block `layer` run in causal_mode "circular" (a copy of the model): the wrap-around lets
    early outputs read late tokens, and the certificate shows the leak."""
    circ = circular_copy(ck, layer)
    return run_intervention(ck, text, [], f"block {layer} switched to circular", position=position, k=k,
                            certify=_auto_certify(ck, certify, True), model_ck=circ)


# ---- activation patching ----------------------------------------------------------------------
PATCH_HOOKS = ("resid_pre", "mixer_out", "mlp_out")


@torch.no_grad()
def activation_patching(ck: Checkpoint, clean: str, corrupted: str, *, hook: str = "resid_pre",
                        position: int | None = None) -> PatchingResult:
    """Run `corrupted` with block k's activation at position t replaced by the clean run's, for
    every block k and position t, and score the clean text's next byte at `position` (default the
    last scored position). The two texts must have the same length in bytes. Each block's L
    patched copies run from that block on (`start_at_layer`), batched."""
    if hook not in PATCH_HOOKS:
        raise ValueError(f"hook must be one of {', '.join(PATCH_HOOKS)}, got {hook!r}")
    a, b = _check_text(clean), _check_text(corrupted)
    if len(a) != len(b):
        raise TextError(f"the clean text is {len(a)} bytes and the corrupted one {len(b)}: "
                        "patching needs texts of the same length")
    L = len(a)
    pos = L - 2 if position is None else int(position)
    _check_index("position", pos, L - 1)
    model, n = ck.model, ck.config.n_layers
    dev = ck.device
    clean_ids = torch.tensor([a], device=dev)
    bad_ids = torch.tensor([b], device=dev)
    targets = clean_ids[0, 1:]
    names = lambda s: s.endswith("hook_resid_pre") or s.endswith(f"hook_{hook}")  # noqa: E731
    clean_logits, clean_cache = model.run_with_cache(clean_ids, names_filter=names)
    bad_logits, bad_cache = model.run_with_cache(bad_ids, names_filter=names)

    def bits(logits):  # (B, L, 256) -> (B, L-1) bits of the clean next bytes
        logp = torch.log_softmax(logits.double(), dim=-1)[:, :-1]
        return -logp.gather(-1, targets.expand(logits.shape[0], -1)[..., None])[..., 0] / math.log(2)

    clean_bits, bad_bits = float(bits(clean_logits)[0, pos]), float(bits(bad_logits)[0, pos])
    loss = np.full((n, L), np.nan)
    mean = np.full((n, L), np.nan)
    chunk = max(1, _SWEEP_ELEMENTS // (L * ck.config.d_model * ck.config.mlp_ratio))
    for k in range(n):
        name = f"blocks.{k}.hook_{hook}"
        src = clean_cache[name][0]  # (L, D)
        for s in range(0, L, chunk):
            t = torch.arange(s, min(L, s + chunk), device=dev)

            def patch(x, _hook, t=t, src=src):
                x = x.clone()
                x[torch.arange(t.numel(), device=dev), t] = src[t].to(x.dtype)
                return x

            x0 = bad_cache[f"blocks.{k}.hook_resid_pre"].expand(t.numel(), -1, -1)
            with model.hooks([(name, patch)]):
                out = bits(model(x0, start_at_layer=k))  # (chunk, L-1)
            loss[k, s:s + t.numel()] = out[:, pos].cpu().numpy()
            mean[k, s:s + t.numel()] = out.mean(dim=1).cpu().numpy()
    span = bad_bits - clean_bits
    restored = (bad_bits - loss) / span if abs(span) > 1e-12 else np.full_like(loss, np.nan)
    label = ck.tokenizer.label
    return PatchingResult(hook=hook, position=pos, clean_labels=[label(i) for i in a],
                          corrupted_labels=[label(i) for i in b], clean_bits=clean_bits, corrupted_bits=bad_bits,
                          loss_bits=loss, restored=restored, mean_bits=mean)


# ---- the sweep ------------------------------------------------------------------------------
def sweep_band_edges(context: int, n_bands: int = SWEEP_BANDS) -> np.ndarray:
    """(n_bands + 1,) cycles/token: geometric from 1/context to 0.5, the first edge moved to 0."""
    edges = np.geomspace(1.0 / context, 0.5, n_bands + 1)
    edges[0] = 0.0
    return edges


@torch.no_grad()
def sweep(ck: Checkpoint, text: str, n_bands: int = SWEEP_BANDS) -> SweepResult:
    """Bits/byte added by zero-ablating each (layer, head), and by stopping each of n_bands
    log-spaced bands in each head's learned spectrum (MHF; FFTNet: its adapted filter).

    Batched: per block k, every ablated copy runs from block k on in one batch (`start_at_layer`
    from the cached residual stream), with one hook on block k that applies each copy's own edit.
    For MHF the band edit is applied at hook_mixed as y - (v * g * k_band): the mixing is linear
    in the learned kernel, so removing band b's part of the kernel (the band of hook_spectrum,
    through the causal mask) removes exactly that term; `filter_band` (a hook on hook_spectrum)
    gives the same numbers (tests/test_interventions.py)."""
    int_arg("n_bands", n_bands, 1, 64)
    ids = _check_text(text)
    cfg, model, dev = ck.config, ck.model, ck.device
    L, H, n = len(ids), cfg.n_heads, cfg.n_layers
    x = torch.tensor([ids], device=dev)
    targets = x[0, 1:]
    logits, cache = model.run_with_cache(
        x, names_filter=lambda s: s.endswith(("hook_resid_pre", "mixer.hook_v", "mixer.hook_g", "mixer.hook_kernel",
                                               "mixer.hook_spectrum")))

    def mean_bits(lg):  # (B, L, 256) -> (B,)
        logp = torch.log_softmax(lg.double(), dim=-1)[:, :-1]
        return (-logp.gather(-1, targets.expand(lg.shape[0], -1)[..., None])[..., 0]).mean(1) / math.log(2)

    clean = float(mean_bits(logits)[0])
    edges = sweep_band_edges(cfg.context, n_bands)
    head_delta = np.full((n, H), np.nan)
    band_delta = np.full((n, H, n_bands), np.nan)
    chunk = max(1, _SWEEP_ELEMENTS // (L * cfg.d_model * cfg.mlp_ratio))
    for k, block in enumerate(model.blocks):
        mixer = block.mixer
        if not hasattr(mixer, "hook_mixed"):
            continue
        variants = _sweep_variants(mixer, cache, k, L, edges)  # one edit per copy
        x0 = cache[f"blocks.{k}.hook_resid_pre"]
        out = []
        for s in range(0, len(variants), chunk):
            part = variants[s:s + chunk]
            with model.hooks(_batched_edit(mixer, k, part)):
                out.append(mean_bits(model(x0.expand(len(part), -1, -1), start_at_layer=k)))
        added = torch.cat(out).cpu().numpy() - clean
        for (h, b, _), d in zip(variants, added):
            if b is None:
                head_delta[k, h] = d
            else:
                band_delta[k, h, b] = d
    return SweepResult(bits_clean=clean, head_delta=head_delta, band_edges=edges, band_delta=band_delta)


def _sweep_variants(mixer, cache: dict, k: int, L: int, edges: np.ndarray) -> list[tuple]:
    """[(head, band index or None, edit)] for one block: edit is None for a zeroed head; for an
    MHF band the (L, dh) term v * g * k_band to remove from the head's mixed output; for an
    FFTNet band the (F,) bool mask of kept filter bins."""
    H = mixer.n_heads
    nb = edges.size - 1
    out: list[tuple] = [(h, None, None) for h in range(H)]
    p = f"blocks.{k}.mixer."
    if isinstance(mixer, MultiHeadFourier):
        if not mixer.cfg.spectral_filter:
            return out
        freqs = spectrum_freqs(mixer)
        S = cache[p + "hook_spectrum"]  # (H, C+1) complex, after modReLU
        v = cache[p + "hook_v"][0].double()  # (L, H, dh)
        g = cache[p + "hook_g"][0].double()
        N = mixer.fft_size(L)
        VG = torch.fft.rfft(v, n=N, dim=0) * torch.fft.rfft(g, n=N, dim=0)  # (F, H, dh)
        for h in range(H):
            for b in range(nb):
                sel = torch.as_tensor((freqs >= edges[b]) & (freqs <= edges[b + 1]), device=S.device)
                if not bool(sel.any()):
                    continue
                part = torch.where(sel, S[h], torch.zeros_like(S[h]))
                k_band = torch.fft.irfft(part, n=2 * mixer.context)[: mixer.context][:L].double()  # the causal mask
                term = torch.fft.irfft(VG[:, h] * torch.fft.rfft(k_band, n=N)[:, None], n=N, dim=0)[:L]  # (L, dh)
                out.append((h, b, term))
        return out
    F = L // 2 + 1
    freqs = _filter_freqs(F)
    for h in range(H):
        for b in range(nb):
            sel = (freqs >= edges[b]) & (freqs <= edges[b + 1])
            if sel.any():
                out.append((h, b, torch.as_tensor(~sel)))
    return out


def _batched_edit(mixer, k: int, variants: list[tuple]) -> list:
    """fwd_hooks on block k applying variant i's edit to batch row i."""
    p = f"blocks.{k}.mixer."
    mixed_edits = [(i, h, e) for i, (h, b, e) in enumerate(variants) if b is None or isinstance(e, torch.Tensor)
                   and e.dtype != torch.bool]
    filter_edits = [(i, h, e) for i, (h, b, e) in enumerate(variants) if isinstance(e, torch.Tensor)
                    and e.dtype == torch.bool]

    def edit_mixed(y, hook):  # (B, L, H, dh)
        y = y.clone()
        for i, h, e in mixed_edits:
            y[i, :, h] = 0.0 if e is None else y[i, :, h] - e.to(y.dtype)
        return y

    def edit_filter(W, hook):  # (B, H, F)
        W = W.clone()
        for i, h, keep in filter_edits:
            W[i, h] = torch.where(keep.to(W.device), W[i, h], torch.zeros_like(W[i, h]))
        return W

    hooks = [(p + "hook_mixed", edit_mixed)]
    if filter_edits:
        hooks.append((p + "hook_filter", edit_filter))
    return hooks
