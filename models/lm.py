"""A byte-level language model with pre-norm GPT-2 blocks and no positional encoding (the
Transformer baseline alone uses rotary positions). The mixer of each block comes from the config.

Calling convention follows Hugging Face: `model(input_ids)` or `model(inputs_embeds=...)`
returns logits (B, L, 256); `model(input_ids, return_internals=True)` returns
(logits, [MixerInternals | None per block]) -- see models/internals.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import ModelConfig
from .fftnet import FFTNetMixer
from .mhf import MultiHeadFourier


def make_mixer(cfg: ModelConfig, kind: str) -> nn.Module:
    if kind == "mhf":
        return MultiHeadFourier(cfg)
    if kind == "fftnet":
        return FFTNetMixer(cfg)
    if kind == "swa":
        return CausalSelfAttention(cfg, window=cfg.swa_window)
    return CausalSelfAttention(cfg, rope=True)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.w_o = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_o(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, kind: str):
        super().__init__()
        self.kind = kind
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.mixer = make_mixer(cfg, kind)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.ln1(x), record))
        return x + self.drop(self.mlp(self.ln2(x)))

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
        x_t = x_t + self.mixer.step(self.ln1(x_t), state)
        return x_t + self.mlp(self.ln2(x_t))


class ByteLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, cfg.layer_kind(i)) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied, as in GPT-2
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
        return self.tok_emb

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def supports_incremental(self) -> bool:
        """Streaming decoding reproduces the full forward only for causal models."""
        return self.config.is_causal

    def forward(self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
                return_internals: bool = False):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (B, L) or inputs_embeds (B, L, D)")
        x = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, D)
        x = self.drop(x)
        record: list | None = [] if return_internals else None
        for block in self.blocks:
            x = block(x, record)
        logits = self.head(self.ln_f(x))  # (B, L, 256)
        return (logits, record) if return_internals else logits

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def stream_logits(self, prompt_ids: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Run a prompt (B, L) through the model; returns the last logits (B, 256) and the
        per-block decoding state for `step`. MHF blocks take the prompt in one FFT pass and keep
        its v, g and combined kernel; attention blocks step through it, caching keys and values.
        Each later step then costs O(t) dot products, no FFT."""
        if not self.supports_incremental:
            raise ValueError("incremental decoding needs a causal model (mhf with causal_mode 'pad', or attention)")
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
        incrementally (cached v, g and kernels); non-causal ones re-run the whole sequence."""
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


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None = None) -> int:
    """Pick the next byte from logits (256,): argmax when temperature <= 0, else sample."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
