"""FFTNet adaptive spectral filtering (arXiv 2502.18394, "The FFT Strikes Back"), multi-head.

  X = FFT(v) along the sequence (no padding)
  W = W_base + MLP(mean_t x_t)            per head and frequency bin: input-adapted filter
  Z = modReLU(X * W; b)                   per bin, on the filtered data spectrum
  y = Re(iFFT(Z))

An encoder by construction: the mean context, the circular FFT and modReLU (a non-linearity on
a spectrum that every position contributes to) all let each output read the whole sequence,
future included. It is shipped so that the app's leak tools have something to catch.

The base filter is defined on C // 2 + 1 bins of normalised frequency 0..0.5 cycles/token and
resampled linearly to the rfft grid of the actual length, so any length can be filtered.

Hook points (models/hooks.py; shapes in ByteLM's docstring): hook_v, hook_filter (the adapted
filter W), hook_gate (modReLU's factor on X * W), hook_spectrum (the gated data spectrum Z),
hook_mixed (y, before the output projection).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .fourier import modrelu_scale
from .hooks import HookPoint, run_with_cache
from .internals import MixerInternals, detach32


def resample_bins(z: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Linear interpolation of (..., F0) over normalised frequency 0..0.5 onto n_bins points."""
    if z.shape[-1] == n_bins:
        return z
    flat = z.reshape(-1, 1, z.shape[-1])
    out = F.interpolate(flat, size=n_bins, mode="linear", align_corners=True)
    return out.reshape(z.shape[:-1] + (n_bins,))


class FFTNetMixer(nn.Module):
    """FFTNet's adaptive spectral filter as a mixer on (B, L, D), multi-head (see the module
    docstring): base filter (H, C//2+1) plus an MLP modulation of the mean context, modReLU with
    a learned bias per bin, inverse FFT. Not causal.
    """
    INTERNAL_HOOKS = ("hook_v", "hook_filter", "hook_gate", "hook_mixed")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, H = cfg.d_model, cfg.n_heads
        self.n_heads, self.head_dim = H, D // H
        self.n_bins = cfg.context // 2 + 1
        base = torch.zeros(H, self.n_bins, 2)
        base[..., 0] = 1.0
        self.base_filter = nn.Parameter(base)
        self.gate_bias = nn.Parameter(torch.zeros(H, self.n_bins))
        self.w_v = nn.Linear(D, D)
        self.modulation = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, H * self.n_bins * 2))
        nn.init.zeros_(self.modulation[2].weight)  # start from the base filter alone
        nn.init.zeros_(self.modulation[2].bias)
        self.w_o = nn.Linear(D, D)
        self.hook_v = HookPoint()  # (B, L, H, dh)
        self.hook_filter = HookPoint()  # (B, H, L//2+1) complex W
        self.hook_gate = HookPoint()  # (B, L//2+1, H, dh) real modReLU factor
        self.hook_spectrum = HookPoint()  # (B, L//2+1, H, dh) complex Z
        self.hook_mixed = HookPoint()  # (B, L, H, dh)

    def base_spectrum(self) -> torch.Tensor:
        """(H, F0) complex base filter."""
        return torch.view_as_complex(self.base_filter.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): X = rfft(v), Z = modReLU(X * W; b), y = irfft(Z), Linear_O."""
        B, L, D = x.shape
        H, dh = self.n_heads, self.head_dim
        context = x.mean(dim=1)  # (B, D): the global context, which reads the future
        v = self.hook_v(self.w_v(x).unflatten(-1, (H, dh))).flatten(-2)
        delta = self.modulation(context).float().view(B, H, self.n_bins, 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            W0 = self.base_filter.float()[None] + delta  # (B, H, F0, 2)
            n_out = L // 2 + 1
            W = torch.view_as_complex(resample_bins(W0.movedim(-1, -2), n_out).movedim(-2, -1).contiguous())
            W = self.hook_filter(W)  # (B, H, F)
            bias = resample_bins(self.gate_bias.float(), n_out)  # (H, F)
            X = torch.fft.rfft(v.float(), n=L, dim=1)  # (B, F, D)
            Wc = W.repeat_interleave(dh, dim=1).transpose(1, 2)  # (B, F, D)
            bias_c = bias.repeat_interleave(dh, dim=0).T  # (F, D)
            P = X * Wc
            scale = self.hook_gate(modrelu_scale(P, bias_c).unflatten(-1, (H, dh))).flatten(-2)
            Z = self.hook_spectrum((P * scale).unflatten(-1, (H, dh))).flatten(-2)  # = modrelu(P, b)
            y = torch.fft.irfft(Z, n=L, dim=1)
        y = self.hook_mixed(y.unflatten(-1, (H, dh))).flatten(-2)
        return self.w_o(y.to(x.dtype))

    def forward_with_internals(self, x: torch.Tensor) -> tuple[torch.Tensor, MixerInternals]:
        """forward(x) and its MixerInternals (read through the hook points, INTERNAL_HOOKS)."""
        out, cache = run_with_cache(self, x, names_filter=self.INTERNAL_HOOKS)
        return out, self.internals(x, out, cache)

    def internals(self, x: torch.Tensor, out: torch.Tensor, cache: dict) -> MixerInternals:
        """The MixerInternals of a forward pass from its input, output and INTERNAL_HOOKS cache."""
        with torch.no_grad():
            base = self.base_spectrum()
            return MixerInternals(
                kind="fftnet", causal_mode="global", fft_size=x.shape[1],
                mixer_input=detach32(x), fft_input=detach32(cache["hook_v"].flatten(-2)),
                fft_output=detach32(cache["hook_mixed"].flatten(-2)), mixer_output=detach32(out),
                spectrum=detach32(base), gate_bias=detach32(self.gate_bias), gated_spectrum=detach32(base),
                gate_open=(base.abs() + self.gate_bias.float()) > 0, adapted_filter=detach32(cache["hook_filter"]),
                data_gate_open=cache["hook_gate"].flatten(-2) > 0,
            )
