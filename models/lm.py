"""A byte-level language model with pre-norm GPT-2 blocks and no positional encoding (the
Transformer baseline alone uses rotary positions). The mixer of each block comes from the config.

Calling convention follows Hugging Face: `model(input_ids)` or `model(inputs_embeds=...)`
returns logits (B, L, 256); `model(input_ids, return_internals=True)` returns
(logits, [MixerInternals | None per block]) -- see models/internals.py, a view of the hook
points below.

Hook points, in TransformerLens's conventions (models/hooks.py): `model.run_with_cache(ids)`,
`model.run_with_hooks(ids, fwd_hooks=[(name or predicate, fn(tensor, hook))])`,
`with model.hooks(fwd_hooks): ...`, `model(x, start_at_layer=k, stop_at_layer=m)`.
B batch, L length, D width, H heads, dh = D / H, C the training context, F bins:

  hook_embed                      (B, L, D)  token embeddings (or inputs_embeds), before dropout
  blocks.{k}.hook_resid_pre       (B, L, D)  the residual stream entering block k
  blocks.{k}.hook_mixer_in        (B, L, D)  ln1 of it: the mixer's input
  blocks.{k}.hook_mixer_out       (B, L, D)  the mixer's output (after its output projection)
  blocks.{k}.hook_resid_mid       (B, L, D)  resid_pre + mixer_out
  blocks.{k}.hook_mlp_out         (B, L, D)  the MLP's output
  blocks.{k}.hook_resid_post      (B, L, D)  the residual stream leaving block k
 MHF mixers (blocks.{k}.mixer.*), in forward order:
  hook_v, hook_g                  (B, L, H, dh)  value and gate streams; head h is [..., h, :]
  hook_gate                       (H, C+1)  real modReLU factor ReLU(|S|+b)/|S| (0: shut); modrelu only
  hook_spectrum                   (H, C+1)  complex S'_h = S_h * gate, the learned spectrum after
                                            modReLU, rfft grid of size 2C: bin f is f / (2C) cycles/token
  hook_kernel                     (H, L)    causal kernel as applied, by lag (the two-sided irfft of
                                            hook_spectrum with negative lags masked, zero past lag C-1)
  hook_product                    (B, N//2+1, H, dh)  complex rfft(v) rfft(g) rfft(k) on the plain
                                            path's grid N = plain_fft_size(L) (see below)
  hook_mixed                      (B, L, H, dh)  after the inverse FFT and truncation, before Linear_O
 FFTNet mixers (blocks.{k}.mixer.*):
  hook_v                          (B, L, H, dh)  value stream
  hook_filter                     (B, H, L//2+1)  complex adapted filter W = base + modulation
  hook_gate                       (B, L//2+1, H, dh)  real modReLU factor on X * W
  hook_spectrum                   (B, L//2+1, H, dh)  complex gated data spectrum Z
  hook_mixed                      (B, L, H, dh)  irfft(Z), before the output projection
 Spectra are one-sided rfft, "backward" normalisation; kernels indexed by lag.

Hooks on hook_gate, hook_spectrum or hook_kernel do not change the path: the learned kernel is then
rebuilt through them on each call (not taken from the kernel-spectrum cache) and the fast FFT
product runs as usual. A hook on hook_product (the fast paths never form the product: Triton packs
v + i g into one FFT) moves that mixer onto the plain path `mix_reference` (the same function,
equal to float rounding; tests/test_hooks.py). Incremental decoding (stream_logits, step) runs no
hooks and refuses to run while any are attached.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import ModelConfig
from . import decoding as _decoding
from . import hooks as _hooks
from .fftnet import FFTNetMixer
from .hooks import HookPoint
from .mhf import MultiHeadFourier


def make_mixer(cfg: ModelConfig, kind: str) -> nn.Module:
    """The mixer of one block: "mhf" MultiHeadFourier, "fftnet" FFTNetMixer, "swa" sliding-window
    attention (no positions), anything else the baseline's causal attention with rotary positions."""
    if kind == "mhf":
        return MultiHeadFourier(cfg)
    if kind == "fftnet":
        return FFTNetMixer(cfg)
    if kind == "swa":
        return CausalSelfAttention(cfg, window=cfg.swa_window)
    return CausalSelfAttention(cfg, rope=True)


class MLP(nn.Module):
    """GPT-2's feed-forward layer: (..., D) -> Linear(D, mlp_ratio D), GELU, Linear(mlp_ratio D, D)."""
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.w_o = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return self.w_o(F.gelu(self.fc(x)))


class Block(nn.Module):
    """One pre-norm GPT-2 block with the mixer of `kind` in place of attention:
    x + mixer(ln1(x)), then + mlp(ln2(x)), with hook points on the residual stream."""
    def __init__(self, cfg: ModelConfig, kind: str):
        super().__init__()
        self.kind = kind
        self.hook_resid_pre, self.hook_mixer_in, self.hook_mixer_out = HookPoint(), HookPoint(), HookPoint()
        self.hook_resid_mid, self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.mixer = make_mixer(cfg, kind)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream (B, L, D) entering the block -> the stream leaving it."""
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.drop(self.hook_mixer_out(self.mixer(self.hook_mixer_in(self.ln1(x))))))
        return self.hook_resid_post(x + self.drop(self.hook_mlp_out(self.mlp(self.ln2(x)))))

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """forward() over a prompt (B, L, D) that also fills the decoding state, as L calls of
        step() would: MHF mixers in one FFT pass, attention by its own steps."""
        h = self.ln1(x)
        if hasattr(self.mixer, "prefill"):
            y = self.mixer.prefill(h, state)
        else:
            y = torch.stack([self.mixer.step(h[:, t], state) for t in range(x.shape[1])], dim=1)
        x = x + y
        return x + self.mlp(self.ln2(x))

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One new position: the residual stream x_t (B, D) -> the block's output at it (updates state)."""
        x_t = x_t + self.mixer.step(self.ln1(x_t), state)
        return x_t + self.mlp(self.ln2(x_t))


class ByteLM(nn.Module):
    """The byte-level language model of the module docstring: token embedding (tied to the output
    head, as in GPT-2), n_layers Blocks, final LayerNorm, logits over 256 bytes; no positional
    encoding. Hook points, start/stop_at_layer, MixerInternals and streamed generation as above."""
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.hook_embed = HookPoint()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, cfg.layer_kind(i)) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied, as in GPT-2
        _hooks.name_hook_points(self)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("w_o.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (256, D), as Hugging Face models name it (gradient-based attribution uses it)."""
        return self.tok_emb

    def num_parameters(self) -> int:
        """Number of parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def supports_incremental(self) -> bool:
        """Streaming decoding reproduces the full forward only for causal models."""
        return self.config.is_causal

    def forward(self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                return_internals: bool = False, start_at_layer: int | None = None,
                stop_at_layer: int | None = None):
        """Logits (B, L, 256) of input_ids (B, L) or inputs_embeds (B, L, D).

        start_at_layer=k: the first argument (or inputs_embeds) is the residual stream (B, L, D)
        entering block k (what blocks.{k}.hook_resid_pre sees); the embedding is skipped.
        stop_at_layer=m: return the residual stream entering block m (B, L, D) instead of the
        logits (m = n_layers returns the stream before the final LayerNorm). 0 <= k <= m <= n_layers.
        return_internals=True: (logits, one MixerInternals per block, None for attention), read
        through the hook points (models/internals.py); full forward only."""
        n = len(self.blocks)
        start = 0 if start_at_layer is None else _layer_index("start_at_layer", start_at_layer, 0, n)
        stop = None if stop_at_layer is None else _layer_index("stop_at_layer", stop_at_layer, start, n)
        if return_internals:
            if start_at_layer is not None or stop_at_layer is not None:
                raise ValueError("return_internals needs the full forward: use run_with_cache with start/stop_at_layer")
            logits, cache = self.run_with_cache(input_ids, inputs_embeds=inputs_embeds, names_filter=self.internal_hook)
            return logits, self.mixer_internals(cache)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (B, L) or inputs_embeds (B, L, D)")
        if start_at_layer is None:
            x = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, D)
            x = self.drop(self.hook_embed(x))
        else:
            x = input_ids if inputs_embeds is None else inputs_embeds
            if not (x.is_floating_point() and x.dim() == 3 and x.shape[-1] == self.config.d_model):
                raise ValueError(f"with start_at_layer the input is the residual stream (B, L, {self.config.d_model}) "
                                 f"as hook_resid_pre caches it, got {x.dtype} {tuple(x.shape)}")
        for block in self.blocks[start:stop]:
            x = block(x)
        if stop is not None:
            return x
        return self.head(self.ln_f(x))  # (B, L, 256)

    # ---- hook points (models/hooks.py) -------------------------------------------------------
    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        """Every hook point by name, in the order of the module tree."""
        return _hooks.hook_dict(self)

    def hooks(self, fwd_hooks=()):
        """Context manager: `fwd_hooks` [(name or predicate(name), fn(tensor, hook))] attached for
        the block, in this thread only; removed on leaving it, also on an exception."""
        return _hooks.hooks(self, fwd_hooks)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        """forward(*args, **kwargs) with `fwd_hooks` attached for this call (fn returns a
        replacement of the same shape, or None to keep the tensor)."""
        return _hooks.run_with_hooks(self, *args, fwd_hooks=fwd_hooks, **kwargs)

    def run_with_cache(self, *args, names_filter=None, **kwargs):
        """(forward(*args, **kwargs), cache): cache[name] the detached tensor at each hook point
        names_filter selects (None: all; a name, a list of names or a predicate). Note that
        caching hook_product runs the plain path (see the module docstring)."""
        return _hooks.run_with_cache(self, *args, names_filter=names_filter, **kwargs)

    @staticmethod
    def internal_hook(name: str) -> bool:
        """The names_filter of the hook points that MixerInternals is a view of."""
        head, _, leaf = name.rpartition(".")
        if head.endswith(".mixer"):
            return leaf in set(MultiHeadFourier.INTERNAL_HOOKS) | set(FFTNetMixer.INTERNAL_HOOKS)
        return leaf in ("hook_mixer_in", "hook_mixer_out")

    def mixer_internals(self, cache: dict[str, torch.Tensor]) -> list:
        """One MixerInternals per block (None for attention) from a run_with_cache cache holding
        at least the `internal_hook` names."""
        out = []
        for i, block in enumerate(self.blocks):
            if not hasattr(block.mixer, "internals"):
                out.append(None)
                continue
            p = f"blocks.{i}."
            sub = {k[len(p) + 6:]: v for k, v in cache.items() if k.startswith(p + "mixer.")}
            out.append(block.mixer.internals(cache[p + "hook_mixer_in"], cache[p + "hook_mixer_out"], sub))
        return out

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def stream_logits(self, prompt_ids: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Run a prompt (B, L) through the model; returns the last logits (B, 256) and the
        per-block decoding state for `step`. MHF blocks take the prompt in one FFT pass and keep
        its v, g and combined kernel; attention blocks step through it, caching keys and values.
        Each later step then costs O(t) dot products, no FFT."""
        if not self.supports_incremental:
            raise ValueError("incremental decoding needs a causal model (mhf with causal_mode 'pad', or attention)")
        if _hooks.any_active():
            raise ValueError("incremental decoding runs no hooks: call the model (forward) while hooks are attached")
        if prompt_ids.shape[1] == 0:
            raise ValueError("stream_logits needs a prompt of at least one token")
        states = [b.mixer.init_state(prompt_ids.shape[0], prompt_ids.device) for b in self.blocks]
        x = self.tok_emb(prompt_ids)
        for block, state in zip(self.blocks, states):
            x = block.prefill(x, state)
        return self.head(self.ln_f(x[:, -1])), states

    @torch.no_grad()
    def step(self, token: torch.Tensor, states: list[dict]) -> torch.Tensor:
        """Advance every block by one token (B,) and return next-token logits (B, 256)."""
        x = self.tok_emb(token)
        for block, state in zip(self.blocks, states):
            x = block.step(x, state)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate_stream(self, prompt_ids: list[int], max_new_tokens: int, *, temperature: float = 1.0,
                        top_k: int | None = None, generator: torch.Generator | None = None) -> Iterator[int]:
        """Yield new byte ids one at a time. temperature 0 is greedy. Causal models decode
        incrementally (cached v, g and kernels; all-MHF models on the static, graph-captured fast
        path of models/decoding.py, the same logits); non-causal ones re-run the whole sequence.
        Sampling is inverse-CDF sampling of one uniform draw from `generator` per byte."""
        if self.supports_incremental and _decoding.supports(self):
            yield from _decoding.generate(self, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                          generator=generator)
            return
        device = self.tok_emb.weight.device
        ids = list(prompt_ids) or [ord("\n")]
        if self.supports_incremental:
            logits, states = self.stream_logits(torch.tensor([ids], device=device))
        else:
            states = None
            logits = self(torch.tensor([ids], device=device))[:, -1]
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[0], temperature, top_k, generator)
            yield nxt
            ids.append(nxt)
            if states is not None:
                logits = self.step(torch.tensor([nxt], device=device), states)
            else:
                logits = self(torch.tensor([ids], device=device))[:, -1]


def _layer_index(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None = None) -> int:
    """Pick the next byte from logits (256,): argmax when temperature <= 0, else sample
    (`decoding.sample_tokens` at one uniform draw from `generator`)."""
    if temperature <= 0:
        return int(logits.argmax())
    u = torch.rand(1, generator=generator, dtype=torch.float64).to(logits.device)
    params = _decoding.sampling_params(temperature, top_k, logits.numel(), logits.device)
    return int(_decoding.sample_tokens(logits[None], u, *params)[0])
