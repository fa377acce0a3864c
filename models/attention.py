"""Causal self-attention through PyTorch SDPA: the Transformer baseline (with rotary positions)
and Caracal's hybrid sliding-window layers (no positional encoding, as the paper describes)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def rotary(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding on (B, H, L, dh) for positions offset..offset+L-1."""
    L, dh = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh)
    ang = torch.arange(offset, offset + L, device=x.device, dtype=torch.float32)[:, None] * inv
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (PyTorch SDPA) on (B, L, D): the Transformer baseline
    (rope=True: rotary positions) or Caracal's hybrid sliding-window layer (window: each position
    attends to itself and the window - 1 before it; no positional encoding). Incremental decoding
    (init_state, step) caches keys and values (the last `window` of them).
    """
    def __init__(self, cfg: ModelConfig, window: int | None = None, rope: bool = False):
        super().__init__()
        self.n_heads, self.window, self.rope = cfg.n_heads, window, rope
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.w_o = nn.Linear(cfg.d_model, cfg.d_model)

    def _heads(self, x: torch.Tensor, offset: int):
        # (B, L, D) -> three (B, H, L, dh)
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, -1)).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = rotary(q, offset), rotary(k, offset)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): every position attends to itself and earlier ones (within the window)."""
        L = x.shape[1]
        q, k, v = self._heads(x, 0)
        if self.window is None or self.window >= L:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            i = torch.arange(L, device=x.device)
            allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < self.window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.w_o(y.transpose(1, 2).flatten(-2))

    def init_state(self, batch: int, device) -> dict:
        """An empty decoding state for `step`: no cached keys or values, position 0."""
        return {"k": None, "v": None, "t": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One new position: x_t (B, D) -> (B, D), attending to the cached keys and values (updates state)."""
        # x_t: (B, D) -> (B, D), attending to the cached keys and values
        q, k, v = self._heads(x_t[:, None], state["t"])
        state["t"] += 1
        state["k"] = k if state["k"] is None else torch.cat([state["k"], k], dim=2)
        state["v"] = v if state["v"] is None else torch.cat([state["v"], v], dim=2)
        if self.window is not None:
            state["k"], state["v"] = state["k"][:, :, -self.window:], state["v"][:, :, -self.window:]
        y = F.scaled_dot_product_attention(q, state["k"], state["v"])
        return self.w_o(y.transpose(1, 2).flatten(-2)[:, 0])
