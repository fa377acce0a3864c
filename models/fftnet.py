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
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .fourier import modrelu
from .internals import MixerInternals, detach32


def resample_bins(z: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Linear interpolation of (..., F0) over normalised frequency 0..0.5 onto n_bins points."""
    if z.shape[-1] == n_bins:
        return z
    flat = z.reshape(-1, 1, z.shape[-1])
    out = F.interpolate(flat, size=n_bins, mode="linear", align_corners=True)
    return out.reshape(z.shape[:-1] + (n_bins,))


class FFTNetMixer(nn.Module):
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

    def base_spectrum(self) -> torch.Tensor:
        """(H, F0) complex base filter."""
        return torch.view_as_complex(self.base_filter.float().contiguous())

    def forward(self, x: torch.Tensor, record: list | None = None) -> torch.Tensor:
        B, L, D = x.shape
        H, dh = self.n_heads, self.head_dim
        context = x.mean(dim=1)  # (B, D): the global context, which reads the future
        v = self.w_v(x)
        delta = self.modulation(context).float().view(B, H, self.n_bins, 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            W0 = self.base_filter.float()[None] + delta  # (B, H, F0, 2)
            n_out = L // 2 + 1
            W = torch.view_as_complex(resample_bins(W0.movedim(-1, -2), n_out).movedim(-2, -1).contiguous())
            bias = resample_bins(self.gate_bias.float(), n_out)  # (H, F)
            X = torch.fft.rfft(v.float(), n=L, dim=1)  # (B, F, D)
            Wc = W.repeat_interleave(dh, dim=1).transpose(1, 2)  # (B, F, D)
            bias_c = bias.repeat_interleave(dh, dim=0).T  # (F, D)
            Z = modrelu(X * Wc, bias_c)
            y = torch.fft.irfft(Z, n=L, dim=1)
        out = self.w_o(y.to(x.dtype))
        if record is not None:
            with torch.no_grad():
                record.append(MixerInternals(
                    kind="fftnet", causal_mode="global", fft_size=L,
                    mixer_input=detach32(x), fft_input=detach32(v), fft_output=detach32(y),
                    mixer_output=detach32(out), spectrum=detach32(self.base_spectrum()),
                    gate_bias=detach32(self.gate_bias), gated_spectrum=detach32(self.base_spectrum()),
                    gate_open=(self.base_spectrum().abs() + self.gate_bias.float()) > 0,
                    adapted_filter=detach32(W), data_gate_open=((X * Wc).abs() + bias_c) > 0,
                ))
        return out
