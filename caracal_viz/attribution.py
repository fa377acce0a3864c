"""Attribution methods side by side for one prediction, and how faithful each one is.

The prediction: the model reads the text x (L bytes) and at position i scores the byte that
follows, f(x) = log p(x_{i+1} | x) in nats (natural log, float64 log-softmax of the logits at
output i). The model always runs on the whole text, whatever its config claims, so a model that
reads the future shows it. Every method scores each input byte j = 0..L-1:

- "grad_norm": || d f / d e_j ||_2, the gradient's size w.r.t. byte j's input embedding e_j (the
  token influence map's row i: `influence.token_influence`). A norm: it has no sign.
- "grad_x_input": (d f / d e_j) . e_j, gradient times input (the first-order term of f around a
  zero embedding), summed over the D embedding coordinates.
- "integrated_gradients": Captum's IntegratedGradients on the input embeddings, summed over the D
  coordinates. Baseline: the text with every byte replaced by the baseline byte (default b' ', so
  the path runs from a text of spaces to this text); Gauss-Legendre quadrature with `ig_steps`
  points. Completeness: the scores sum to f(x) - f(baseline text) up to Captum's reported
  convergence delta (`Attribution.delta`).
- "occlusion": f(x) - f(x with byte j replaced by the baseline byte), exactly, one forward pass per
  byte (batched). Bytes equal to the baseline byte score exactly 0 (nothing is replaced).
- "linear_path": the exact linear path of the first block when it is an MHF mixer: the weight
  w_c[i - j] of the FFT stage's input v_j in its output y_i (the combined kernel h = (g * k)[:L] of
  `influence.mixing_matrix`, with the gate kernel g of this text), over the D channels: signed, the
  mean over channels; absolute, the RMS (the mixing matrices' head RMS over all channels). Not
  computed when block 0 is not an MHF mixer.

Per method: `signed` scores (positive: the byte raises f; for grad_norm the norm itself),
`absolute` scores |signed| (grad_norm: the norm; linear_path: the RMS), and `normalised`, the
absolute scores divided by their sum over the row (this prediction's L bytes), so each method's
row sums to 1 ("per row" normalisation; units cancel). Raw scores keep their units: nats for
grad_x_input, integrated_gradients and occlusion, nats per unit of embedding for grad_norm, a
kernel weight for linear_path.

Faithfulness (`AttributionReport`): deletion and insertion curves. Each method orders the bytes
by its ranking score, highest first (the signed score; grad_norm and linear_path, which have no
meaningful sign, by their absolute score; ties by position). Deletion replaces the first k bytes
of that order by the baseline byte in x and measures f; insertion starts from the baseline text
and puts back the first k original bytes. k runs over `curve_points(L)` (0, then steps of about
sqrt(2), then L), so both curves of every method share their end points f(x) and f(baseline).
AOPC (area over the perturbation curve, Samek et al. 2017), in nats, averaged over those points:
deletion, mean_k [f(x) - f(x_del^(k))]; insertion, mean_k [f(x_ins^(k)) - f(baseline)]. Higher
is more faithful on both. A random-order baseline (`n_random` seeded permutations) gives the
AOPC that an uninformative order reaches. Rank correlation: Spearman's rho between the methods'
absolute scores over the bytes a causal prediction may read (j <= i) for a causal config, over
every byte otherwise.

Every forward pass of occlusion and the curves runs in batches of edited texts of one shape,
each batch holding the unedited text as its first row: occlusion differences are taken inside
one batch, so a byte the prediction cannot read scores exactly 0 (the MHF's float64 FFT rounding
stays below the float32 activations' resolution), while the gradient methods, whose backward
pass goes through the FFTs, give rounding-level values there (`Attribution.future_max`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.fourier import grid_fft_size
from models.mhf import MultiHeadFourier

from .checkpoint import Checkpoint
from .checks import int_arg
from .mixing import mhf_lag_kernels
from .resources import influence_limit, memory_budget
from .text import TextError, encode_text
from .trace import forward_pass

METHODS = ("grad_norm", "grad_x_input", "integrated_gradients", "occlusion", "linear_path")
METHOD_NAMES = {"grad_norm": "gradient norm", "grad_x_input": "gradient × input",
                "integrated_gradients": "integrated gradients", "occlusion": "occlusion",
                "linear_path": "first block's linear path", "random": "random order"}
UNITS = {"grad_norm": "nats per unit embedding", "grad_x_input": "nats", "integrated_gradients": "nats",
         "occlusion": "nats", "linear_path": "kernel weight"}
UNSIGNED = ("grad_norm", "linear_path")  # ranked by their absolute score
DEFAULT_BASELINE_BYTE = 0x20  # b" ": a blank in text; NUL is never in the training data
DEFAULT_IG_STEPS = 32
MAX_IG_STEPS = 256
IG_TOLERANCE = 0.01  # |delta| / |f(x) - f(baseline)| at which the doubling stops
DEFAULT_RANDOM = 4
NORMALISATION = ("per row: each method's absolute scores divided by their sum over this prediction's bytes "
                 "(the row sums to 1)")

# Memory of one row of a batched forward pass without gradients, in bytes per token and unit of
# width: the float64 FFT buffers of an MHF block (size N ~ 2L + C, complex128) dominate. Measured
# 2026-12-02 on the CPU (peak RSS, caracal-shakespeare, L = 1024, 4 and 8 rows): 220-240.
_FORWARD_BYTES = 320
_MAX_ROWS = {"cpu": 8}
_MAX_ROWS_GPU = 128
# Per token, block and unit of width, of one IG step's autograd graph (float64 FFTs): measured 150-160
# (same run as above, 2 and 4 rows).
_GRAPH_BYTES = 320
# Quadrature points per batched IG pass on the CPU: a wider batch's graph outgrows the caches.
# Measured 2026-12-03 (caracal-shakespeare, 1,024 bytes, 16 points): 4 a pass 3.9 s CPU, 16 or
# 32 a pass 6.0-7.9 s (1 and 2 threads), the convergence delta equal to 1e-6.
_MAX_IG_ROWS = {"cpu": 4}


@dataclass
class Attribution:
    """One method's scores for one prediction (see the module docstring for each method).

    signed:     (L,) float64 per input byte j (grad_norm: the norm).
    absolute:   (L,) float64, |signed| (grad_norm: the norm; linear_path: the RMS over channels).
    normalised: (L,) float64, absolute / absolute.sum() (all 0 when the sum is 0).
    ranking:    (L,) float64, what the faithfulness curves order the bytes by (highest first).
    unit:       the raw scores' unit.
    future_max: max |signed| over j > position (0 in exact arithmetic for a causal model).
    scale:      max |signed| over j <= position.
    delta:      integrated gradients only: Captum's convergence delta, sum(signed) - (f(x) - f(baseline)).
    steps:      integrated gradients only: the quadrature points used.
    """

    method: str
    signed: np.ndarray
    absolute: np.ndarray
    normalised: np.ndarray
    ranking: np.ndarray
    unit: str
    future_max: float
    scale: float
    delta: float | None = None
    steps: int | None = None

    @property
    def future_rel(self) -> float:
        """future_max / scale: rounding below results.ROUNDING_REL, a leak above it."""
        return self.future_max / self.scale if self.scale > 0 else 0.0


@dataclass
class AttributionReport:
    """Every method and the faithfulness curves for the prediction made after byte `position`.

    ids, labels:     the text's L byte ids and printable labels.
    position:        i, the prediction of byte i+1 (0 <= i <= L-2); target: ids[i+1].
    baseline_byte:   the byte that occlusion, the curves and the IG baseline put in (baseline_label: printable).
    logp, logp_baseline: f(x) and f(baseline text) in nats.
    methods:         name -> Attribution, in METHODS order (those that apply and were asked for).
    ks:              (P,) int, the numbers of bytes removed (deletion) or put back (insertion).
    deletion, insertion: name -> (P,) float64 f at each k; "random" is the mean over the random orders.
    random_deletion, random_insertion: (n_random, P) float64, each random order's curve.
    aopc_deletion, aopc_insertion: name -> AOPC in nats ("random": the mean over the orders).
    correlation:     (M, M) Spearman's rho between the methods' absolute scores (`correlation_over` says where).
    causal:          whether the config claims causality.
    normalisation:   how `normalised` is built.
    """

    ids: np.ndarray
    labels: list[str]
    position: int
    target: int
    baseline_byte: int
    baseline_label: str
    logp: float
    logp_baseline: float
    methods: dict[str, Attribution]
    ks: np.ndarray
    deletion: dict[str, np.ndarray]
    insertion: dict[str, np.ndarray]
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    aopc_deletion: dict[str, float]
    aopc_insertion: dict[str, float]
    correlation: np.ndarray
    correlation_over: str
    causal: bool
    normalisation: str = NORMALISATION
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each part
    passes: dict[str, int] = field(default_factory=dict)  # texts run through the model, per part

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, named "<method>.<field>" and "<curve>.<method>", for an .npz download."""
        out: dict[str, np.ndarray] = {"ids": self.ids, "position": np.asarray(self.position),
                                      "target": np.asarray(self.target), "baseline_byte": np.asarray(self.baseline_byte),
                                      "logp": np.asarray(self.logp), "logp_baseline": np.asarray(self.logp_baseline),
                                      "ks": self.ks, "random_deletion": self.random_deletion,
                                      "random_insertion": self.random_insertion, "correlation": self.correlation,
                                      "correlation_methods": np.array(list(self.methods))}
        for name, a in self.methods.items():
            for f in ("signed", "absolute", "normalised", "ranking"):
                out[f"{name}.{f}"] = getattr(a, f)
            if a.delta is not None:
                out[f"{name}.delta"] = np.asarray(a.delta)
                out[f"{name}.steps"] = np.asarray(a.steps)
        for name in self.deletion:
            out[f"deletion.{name}"] = self.deletion[name]
            out[f"insertion.{name}"] = self.insertion[name]
        return out

    def aopc_rows(self) -> list[dict]:
        """One row per method (and the random baseline): AOPC of both curves, in nats."""
        return [{"method": METHOD_NAMES[n], "deletion AOPC (nats)": self.aopc_deletion[n],
                 "insertion AOPC (nats)": self.aopc_insertion[n]} for n in self.deletion]


def curve_points(n: int) -> np.ndarray:
    """The k of the faithfulness curves for n bytes: 0, the rounded powers of sqrt(2) below n, and n."""
    if n < 1:
        return np.zeros(1, dtype=np.int64)
    steps = np.round(np.sqrt(2.0) ** np.arange(int(np.floor(2 * np.log2(n))) + 1)).astype(np.int64)
    return np.unique(np.concatenate([[0], steps[steps < n], [n]]))


def order_of(ranking: np.ndarray) -> np.ndarray:
    """Byte positions by ranking score, highest first, ties by position."""
    return np.lexsort((np.arange(ranking.size), -np.asarray(ranking)))


# ---- the model as a function of its input ------------------------------------------------------
def _rows_per_batch(ck: Checkpoint, L: int) -> int:
    widest = _MAX_ROWS.get(ck.device.type, _MAX_ROWS_GPU)
    return int(max(2, min(widest, memory_budget(ck) // (_FORWARD_BYTES * L * ck.config.d_model))))


@torch.no_grad()
def _batched_scores(ck: Checkpoint, ids: np.ndarray, texts: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
    """f of each text in texts (n, L) and f(ids) as seen in each of their batches: by
    `_suffix_scores` when `suffix_applies(ck)`, else `_plain_scores`."""
    if suffix_applies(ck):
        return _suffix_scores(ck, ids, texts, position)
    return _plain_scores(ck, ids, texts, position)


@torch.no_grad()
def _plain_scores(ck: Checkpoint, ids: np.ndarray, texts: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
    """f of each text in texts (n, L) and f(ids) as seen in each of their batches, each text run
    whole through the model.

    Batches have one shape (rows per batch, L): the unedited text first, then up to rows-1 edited
    texts (the last batch padded with the unedited text), so a cuFFT plan and a GEMM shape are
    reused and each edited text is compared with the unedited one computed beside it.
    Returns (f of each text (n,), f(ids) of the batch each text was in (n,))."""
    n, L = texts.shape
    rows = _rows_per_batch(ck, L)
    per = rows - 1
    target = int(ids[position + 1])
    model, dev = ck.model, ck.device
    base = torch.as_tensor(ids, device=dev)
    scores, refs = np.empty(n), np.empty(n)
    for s in range(0, n, per):
        m = min(per, n - s)
        batch = base.repeat(rows, 1)
        batch[1:1 + m] = torch.as_tensor(texts[s:s + m], device=dev)
        logp = torch.log_softmax(model(batch)[:, position].double(), dim=-1)[:, target].cpu().numpy()  # (rows,)
        scores[s:s + m] = logp[1:1 + m]
        refs[s:s + m] = logp[0]
    return scores, refs


def suffix_applies(ck: Checkpoint) -> bool:
    """Whether `_suffix_scores` may replace whole-text passes: a causal config (causal_mode "pad")
    whose blocks are all MHF mixers on their fast path, with no hooks attached (a hook would see
    only the recomputed part)."""
    from models.hooks import any_active

    blocks = ck.model.blocks
    return (ck.config.is_causal and all(isinstance(b.mixer, MultiHeadFourier) and b.mixer.fast for b in blocks)
            and not any_active())


def _suffix_need(m: int, lags: int) -> int:
    """The FFT size that `_suffix_mix` needs to update m outputs, for a learned kernel of `lags`
    non-zero lags (1 without one): its products are linear convolutions of two m-sample streams
    and the kernel, 2m + lags - 2 long."""
    return 2 * m + lags - 2


@torch.no_grad()
def _suffix_scores(ck: Checkpoint, ids: np.ndarray, texts: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
    """`_plain_scores` for a model where `suffix_applies`, computing only what an edit changes.

    The prediction at position i of a causal model reads the prefix x_0..x_i only (P = i + 1
    bytes), and an edit whose first changed byte is a leaves every block's stream before a as
    it is. One pass over the unedited prefix caches, per block, the mixer's input, its streams
    v and g, its output y (before Linear_O) and the learned kernel k as applied; each edited
    text then runs only positions a..i (m = P - a of them). The block's position-wise parts run
    on those positions, the local conv reads the two cached inputs before a, and the FFT
    product, bilinear in (v, g), is updated exactly (`_suffix_mix`): with dv, dg the changes
    (zero before a) and v' = v + dv,
        y'_{a+r} = y_{a+r} + ((dv_a.. (*) g_0..) + (v'_0.. (*) dg_a..)) (*) k  at lag r,  r < m,
    linear convolutions of m samples, run in float64. Texts are grouped by their first changed
    byte (rows per batch as `_plain_scores`; the last batch padded), a group's a its earliest;
    the FFT size is the least size of a fixed grid (`models.fourier.grid_fft_size`) holding the update
    (`_suffix_need`). A group whose a lies in the prefix's first half (a < m) runs the prefix whole:
    there the update's transforms are as long as the prefix pass's own and cost more (with it,
    all of `attribute` for caracal-shakespeare at 1,024 bytes took 1.2x the CPU). A text equal to ids up to i
    scores f(ids) without a pass. Returns (f of each text (n,), f(ids) (n,))."""
    n_texts = texts.shape[0]
    P = position + 1
    target = int(ids[position + 1])
    model, dev = ck.model, ck.device
    keep = ("hook_mixer_in", "hook_v", "hook_g", "hook_kernel", "hook_mixed")
    logits, cache = model.run_with_cache(torch.as_tensor(ids[:P], device=dev)[None],
                                         names_filter=lambda name: name.rpartition(".")[2] in keep)
    ref = float(torch.log_softmax(logits[0, -1].double(), dim=-1)[target])
    scores, refs = np.full(n_texts, ref), np.full(n_texts, ref)
    changed = texts[:, :P] != ids[None, :P]
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return scores, refs
    first = changed[rows].argmax(axis=1)
    order = np.argsort(first, kind="stable")
    rows, first = rows[order], first[order]
    per = _rows_per_batch(ck, P)
    blocks = []
    for k, block in enumerate(model.blocks):
        p = f"blocks.{k}."
        kern = cache.get(p + "mixer.hook_kernel")
        blocks.append((block, cache[p + "hook_mixer_in"][0], cache[p + "mixer.hook_v"][0].flatten(-2).double(),
                       cache[p + "mixer.hook_g"][0].flatten(-2).double(), cache[p + "mixer.hook_mixed"][0].flatten(-2),
                       None if kern is None else kern.double()))
    lags_max = ck.config.context if ck.config.spectral_filter else 1  # the kernel's non-zero lags
    for s in range(0, rows.size, per):
        group = rows[s:s + per]
        a = int(first[s])
        m = P - a
        padded = texts[np.concatenate([group, np.repeat(group[-1:], per - group.size)])]
        if a < m:  # the update would cost more than the prefix's own pass (see the docstring)
            last = model(torch.as_tensor(padded[:, :P], device=dev))[:, -1]
        else:
            n = grid_fft_size(_suffix_need(m, min(lags_max, m)))
            batch = torch.as_tensor(padded[:, a:P], device=dev)
            x = model.tok_emb(batch)  # (rows, m, D): the residual stream at positions a..i
            for k, (block, mixer_in, v0, g0, y0, kern) in enumerate(blocks):
                spectra = _group_spectra(block.mixer, v0, g0, kern, m, n)
                # the last block's output is read at position i only: Linear_O and the MLP run there alone
                final = k == len(blocks) - 1
                mixed = _suffix_mix(block.mixer, block.ln1(x), mixer_in, v0, g0, y0, spectra, a, n, final)
                x = (x[:, -1:] if final else x) + block.mixer.w_o(mixed)
                x = x + block.mlp(block.ln2(x))
            last = model.head(model.ln_f(x[:, -1]))
        logp = torch.log_softmax(last.double(), dim=-1)[:, target]
        scores[group] = logp[:group.size].cpu().numpy()
    return scores, refs


def _group_spectra(mixer: MultiHeadFourier, v0: torch.Tensor, g0: torch.Tensor, kern: torch.Tensor | None,
                   m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `_suffix_mix` multiplies every row of a group by, from the unedited streams v0, g0
    (P, D) float64 and the kernel as applied (H, P) float64 or None: per channel (D, n//2+1)
    complex128, time along the last axis, A = G0 K and B = V0 K (G0, V0 the spectra of g0, v0 at
    positions 0..m-1, K the kernel's at lags 0..m-1, 1 without one)."""
    G0 = torch.fft.rfft(g0[:m].T, n=n, dim=-1)  # (D, F)
    V0 = torch.fft.rfft(v0[:m].T, n=n, dim=-1)
    if kern is None:
        return G0, V0
    K = torch.fft.rfft(kern[:, :m], n=n, dim=-1).repeat_interleave(mixer.head_dim, dim=0)
    return G0 * K, V0 * K


def _suffix_mix(mixer: MultiHeadFourier, h: torch.Tensor, mixer_in: torch.Tensor, v0: torch.Tensor, g0: torch.Tensor,
                y0: torch.Tensor, spectra: tuple, a: int, n: int, last_only: bool = False) -> torch.Tensor:
    """The MHF mixer's output before Linear_O at positions a..a+m-1 of edited texts (R, m, D), or
    at a+m-1 alone (R, 1, D) with `last_only`, from their mixer input h (R, m, D) there and the
    unedited pass: mixer_in (P, D), v0 and g0 (P, D) float64, y0 (P, D), the group's
    `_group_spectra`; FFT size n >= `_suffix_need`.

    The group's first edit a is at least m, so v' at positions 0..m-1 is v0 there: with DV, DG
    the spectra of the changes dv, dg (R, D, n//2+1) the update's spectrum is DV A + DG B, two
    forward transforms and one inverse per row."""
    R, m, D = h.shape
    before = mixer_in[max(0, a - 2):a]
    before = torch.cat([before.new_zeros(2 - before.shape[0], D), before])  # the conv's zero padding before t = 0
    u = mixer.local_conv(torch.cat([before.expand(R, 2, D), h], dim=1))[:, 2:]
    u = mixer.ln(u)
    v, g = mixer.w_v(u).double(), mixer.gate(u).double()  # (R, m, D)
    # time along the last axis: the CPU's FFT runs 1.5x faster there than along a strided axis
    DV = torch.fft.rfft((v - v0[a:]).transpose(1, 2), n=n, dim=-1)  # (R, D, F)
    DG = torch.fft.rfft((g - g0[a:]).transpose(1, 2), n=n, dim=-1)
    A, B = spectra
    spec = torch.mul(DV, A).addcmul_(DG, B)  # fused: the complex128 products cost as much as the transforms
    dy = torch.fft.irfft(spec, n=n, dim=-1)[..., m - 1:m] if last_only else torch.fft.irfft(spec, n=n, dim=-1)[..., :m]
    return (y0[a + m - 1 if last_only else a:a + m].double() + dy.transpose(1, 2)).to(h.dtype)


def _score_fn(ck: Checkpoint, position: int, target: int):
    """f as a function of the input embeddings (B, L, D) -> (B,) float64."""
    model = ck.model

    def f(embeds: torch.Tensor) -> torch.Tensor:
        logits = model(inputs_embeds=embeds)[:, position]  # (B, 256)
        return torch.log_softmax(logits.double(), dim=-1)[:, target]

    return f


def _gradient_methods(ck: Checkpoint, ids: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
    """(grad_norm (L,), grad_x_input (L,)) from one backward pass."""
    emb = ck.model.tok_emb(torch.as_tensor(ids, device=ck.device))[None].detach()  # (1, L, D)
    f = _score_fn(ck, position, int(ids[position + 1]))
    with torch.enable_grad():
        e = emb.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(e).sum(), e)
    g = grad[0].double()
    return g.norm(dim=-1).cpu().numpy(), (g * emb[0].double()).sum(-1).cpu().numpy()


def _integrated_gradients(ck: Checkpoint, ids: np.ndarray, position: int, baseline_byte: int,
                          steps: int, gap: float | None = None) -> tuple[np.ndarray, float, int]:
    """(IG summed over the embedding coordinates (L,), Captum's convergence delta, steps used).
    With `gap` = f(x) - f(baseline), the steps double from `steps` until |delta| <= IG_TOLERANCE |gap|
    or MAX_IG_STEPS; without, `steps` points once."""
    from captum.attr import IntegratedGradients

    dev, L = ck.device, ids.size
    emb = ck.model.tok_emb(torch.as_tensor(ids, device=dev))[None].detach()
    base = ck.model.tok_emb(torch.full((1, L), baseline_byte, device=dev, dtype=torch.long)).detach()
    graph = _GRAPH_BYTES * L * ck.config.n_layers * ck.config.d_model
    per_pass = int(max(1, min(steps, _MAX_IG_ROWS.get(dev.type, steps), memory_budget(ck) // graph)))
    ig = IntegratedGradients(_score_fn(ck, position, int(ids[position + 1])))
    while True:
        with torch.enable_grad():
            attr, delta = ig.attribute(emb, baselines=base, n_steps=steps, method="gausslegendre",
                                       internal_batch_size=min(per_pass, steps), return_convergence_delta=True)
        d = float(delta.reshape(-1)[0])
        if gap is None or abs(d) <= IG_TOLERANCE * abs(gap) or 2 * steps > MAX_IG_STEPS:
            return attr[0].double().sum(-1).cpu().numpy(), d, steps
        steps *= 2


def _occlusion(ck: Checkpoint, ids: np.ndarray, position: int, baseline_byte: int) -> np.ndarray:
    """f(x) - f(x with byte j replaced by the baseline byte), per j (L,)."""
    L = ids.size
    out = np.zeros(L)
    edit = np.flatnonzero(ids != baseline_byte)
    if edit.size:
        texts = np.repeat(ids[None], edit.size, axis=0)
        texts[np.arange(edit.size), edit] = baseline_byte
        scores, refs = _batched_scores(ck, ids, texts, position)
        out[edit] = refs - scores
    return out


def _linear_path(ck: Checkpoint, text: str, position: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean over channels, RMS over channels) of w_c[position - j] of block 0's FFT stage, or None."""
    if ck.config.layer_kind(0) != "mhf":
        return None
    rec = forward_pass(ck, text).records[0]
    w = mhf_lag_kernels(ck, rec)  # (D, 2L-1), lag d at index d + L - 1
    L = w.shape[1] // 2 + 1
    row = w[:, position - np.arange(L) + L - 1]  # (D, L): lag position - j
    return row.mean(0), np.sqrt((row**2).mean(0))


# ---- the report --------------------------------------------------------------------------------
def check_position(L: int, position) -> int:
    """position as an int in 0..L-2, else a ValueError that says which positions exist."""
    if L < 2:
        raise TextError("the text has a single byte: there is no prediction to explain; give a longer text")
    return int_arg("position", position, 0, L - 2,
                   expect=f"a byte index 0..{L - 2} (the prediction made after that byte)")


def check_methods(methods) -> tuple[str, ...]:
    """The requested methods in METHODS order, else a ValueError naming the known ones."""
    if methods is None:
        return METHODS
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown attribution method {', '.join(map(repr, unknown)) or '(none given)'}: "
                         f"choose from {', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


def _attribution(method: str, signed: np.ndarray, absolute: np.ndarray, position: int,
                 delta: float | None = None) -> Attribution:
    total = absolute.sum()
    normalised = absolute / total if total > 0 else np.zeros_like(absolute)
    mag = np.abs(signed)
    return Attribution(method=method, signed=signed, absolute=absolute, normalised=normalised,
                       ranking=absolute if method in UNSIGNED else signed, unit=UNITS[method],
                       future_max=float(mag[position + 1:].max(initial=0.0)),
                       scale=float(mag[:position + 1].max(initial=0.0)), delta=delta)


def attribute(ck: Checkpoint, text: str, position: int, methods=None, *, baseline_byte: int = DEFAULT_BASELINE_BYTE,
              ig_steps: int = DEFAULT_IG_STEPS, n_random: int = DEFAULT_RANDOM, seed: int = 0) -> AttributionReport:
    """Every method in `methods` (default METHODS) for the prediction made after byte `position`
    of `text`, the deletion and insertion curves of each, a random-order baseline and the rank
    correlations (see the module docstring). Runs on ck.device; results are numpy.

    Raises TextError for empty text, a single byte or text over `influence.influence_limit(ck)`;
    ValueError for a bad position, method, baseline byte or count."""
    import time

    ids = np.asarray(encode_text(text, device=ck.device), dtype=np.int64)
    L = ids.size
    limit = influence_limit(ck)
    if L > limit:
        raise TextError(f"the text is {L} bytes, over the attribution limit of {limit} bytes for this model on "
                        f"{ck.device.type} (a memory bound): shorten the text")
    position = check_position(L, position)
    methods = check_methods(methods)
    baseline_byte = int_arg("baseline_byte", baseline_byte, 0, 255, expect="a byte value 0..255")
    int_arg("ig_steps", ig_steps, 2)
    int_arg("n_random", n_random, 1)
    seconds: dict[str, float] = {}
    passes: dict[str, int] = {"end points": 2}
    found: dict[str, Attribution] = {}
    t0 = time.perf_counter()
    base_text = np.full(L, baseline_byte, dtype=np.int64)
    end, _ = _batched_scores(ck, ids, np.stack([ids, base_text]), position)
    logp, logp_base = float(end[0]), float(end[1])
    if "grad_norm" in methods or "grad_x_input" in methods:
        norm, gxi = _gradient_methods(ck, ids, position)
        if "grad_norm" in methods:
            found["grad_norm"] = _attribution("grad_norm", norm, norm, position)
        if "grad_x_input" in methods:
            found["grad_x_input"] = _attribution("grad_x_input", gxi, np.abs(gxi), position)
        seconds["gradients"] = time.perf_counter() - t0
    if "integrated_gradients" in methods:
        t = time.perf_counter()
        ig, delta, used = _integrated_gradients(ck, ids, position, baseline_byte, int(ig_steps), logp - logp_base)
        found["integrated_gradients"] = _attribution("integrated_gradients", ig, np.abs(ig), position, delta)
        found["integrated_gradients"].steps = used
        seconds["integrated_gradients"] = time.perf_counter() - t
    if "occlusion" in methods:
        t = time.perf_counter()
        occ = _occlusion(ck, ids, position, baseline_byte)
        found["occlusion"] = _attribution("occlusion", occ, np.abs(occ), position)
        passes["occlusion"] = int(np.sum(ids != baseline_byte))
        seconds["occlusion"] = time.perf_counter() - t
    if "linear_path" in methods:
        lin = _linear_path(ck, text, position)
        if lin is not None:
            found["linear_path"] = _attribution("linear_path", lin[0], lin[1], position)

    t = time.perf_counter()
    ks = curve_points(L)
    rng = np.random.default_rng(seed)
    orders = {name: order_of(a.ranking) for name, a in found.items()}
    random_orders = [rng.permutation(L) for _ in range(int(n_random))]
    texts, where = _curve_texts(ids, base_text, ks, [*orders.values(), *random_orders])
    scores, _ = _batched_scores(ck, ids, texts, position)
    passes["curves"] = texts.shape[0]
    values = np.concatenate([[logp, logp_base], scores])
    curves = values[where]  # (orders, 2, P): deletion, insertion
    names = list(orders)
    deletion = {n: curves[k, 0] for k, n in enumerate(names)}
    insertion = {n: curves[k, 1] for k, n in enumerate(names)}
    rand = curves[len(names):]
    deletion["random"], insertion["random"] = rand[:, 0].mean(0), rand[:, 1].mean(0)
    aopc_del = {n: float(np.mean(logp - c)) for n, c in deletion.items()}
    aopc_ins = {n: float(np.mean(c - logp_base)) for n, c in insertion.items()}
    seconds["curves"] = time.perf_counter() - t

    causal = ck.config.is_causal
    over = slice(0, position + 1) if causal else slice(0, L)
    correlation = _spearman([found[n].absolute[over] for n in names])
    seconds["total"] = time.perf_counter() - t0
    return AttributionReport(
        ids=ids, labels=[ck.tokenizer.label(int(i)) for i in ids], position=position, target=int(ids[position + 1]),
        baseline_byte=baseline_byte, baseline_label=ck.tokenizer.label(baseline_byte), logp=logp, logp_baseline=logp_base, methods=found, ks=ks,
        deletion=deletion, insertion=insertion, random_deletion=rand[:, 0], random_insertion=rand[:, 1],
        aopc_deletion=aopc_del, aopc_insertion=aopc_ins, correlation=correlation,
        correlation_over=(f"bytes 0..{position} (those a causal prediction may read)" if causal
                          else f"every byte 0..{L - 1} (the config is not causal)"),
        causal=causal, seconds=seconds, passes=passes)


def _curve_texts(ids: np.ndarray, base_text: np.ndarray, ks: np.ndarray,
                 orders: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct edited texts of every order's deletion and insertion curve, without the two
    end points (the text itself and the baseline text), and where each curve point's value is in
    [f(x), f(baseline), f(texts[0]), f(texts[1]), ...]: an index array (orders, 2, P)."""
    seen: dict[bytes, int] = {}
    texts: list[np.ndarray] = []
    where = np.empty((len(orders), 2, ks.size), dtype=np.int64)
    L = ids.size
    for o, order in enumerate(orders):
        for p, k in enumerate(ks):
            for c in range(2):
                if k == 0 or k == L:
                    where[o, c, p] = 0 if (k == 0) == (c == 0) else 1  # deletion starts at x, insertion at the baseline
                    continue
                t = ids.copy() if c == 0 else base_text.copy()
                t[order[:k]] = base_text[order[:k]] if c == 0 else ids[order[:k]]
                key = t.tobytes()
                if key not in seen:
                    seen[key] = len(texts)
                    texts.append(t)
                where[o, c, p] = 2 + seen[key]
    return (np.stack(texts) if texts else np.zeros((0, L), dtype=np.int64)), where


def _spearman(scores: list[np.ndarray]) -> np.ndarray:
    """(M, M) Spearman's rho; NaN where a method is constant over the bytes compared."""
    import scipy.stats  # here, not at the top: 0.6-1 s of loading the token influence page

    M = len(scores)
    out = np.eye(M)
    for a in range(M):
        for b in range(a + 1, M):
            x, y = scores[a], scores[b]
            if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
                rho = np.nan
            else:
                rho = float(scipy.stats.spearmanr(x, y).statistic)
            out[a, b] = out[b, a] = rho
    return out
