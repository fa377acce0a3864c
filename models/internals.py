"""The one documented interface through which analysis code reads a mixer's spectral internals.

`ByteLM.forward(..., return_internals=True)` returns, next to the logits, one `MixerInternals`
per block (None for attention blocks). It is a view of the model's hook points (models/hooks.py,
the list in models/lm.py): `run_with_cache` with `ByteLM.internal_hook` as the names filter, then
each mixer's `internals(x, out, cache)` (fft_input is hook_v, gate_kernel hook_g, fft_output
hook_mixed, gated_spectrum hook_spectrum, kernel hook_kernel, ...), detached and cast to float32
on the model's device, so asking for it never changes the output, and hooks attached around the
call show in it.

Conventions for every field:
- B batch, L sequence length, D width, H heads, dh = D / H head width.
- Spectra are one-sided (`rfft`), "backward" normalisation (none forward, 1/N inverse).
- Kernels are indexed by lag: kernel[..., m] multiplies the input m steps in the past.
- "Two-sided" kernels use the irfft layout of size 2C: index m < C is lag m, index 2C - m is
  lag -m (the future).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The fields with a leading batch dimension B (the others describe the mixer, not the input).
BATCHED = ("mixer_input", "fft_input", "fft_output", "mixer_output", "gate_kernel", "combined_kernel",
           "adapted_filter", "data_gate_open")


@dataclass
class MixerInternals:
    """One mixer's view of one forward pass.

    kind:              "mhf" or "fftnet".
    causal_mode:       "pad", "circular" or "two_sided" (mhf); "global" for fftnet.
    fft_size:          N, the FFT size used for this input length.
    mixer_input:       (B, L, D) the mixer's input (after the block's pre-norm).
    fft_input:         (B, L, D) the signal that goes through the FFT (mhf: value stream v).
    fft_output:        (B, L, D) the signal after the inverse FFT and truncation, before the
                       output projection.
    mixer_output:      (B, L, D) the mixer's output (after the output projection).
    spectrum:          (H, F) complex, the learned per-head spectrum (mhf: S_h on an rfft grid
                       of size 2C, F = C + 1; fftnet: the base filter on F = C // 2 + 1 bins of
                       normalised frequency 0..0.5), or None when the mixer has none.
    gate_bias:         (H, F) modReLU bias b, or None when modReLU is off.
    gated_spectrum:    (H, F) complex, the spectrum after modReLU (equal to `spectrum` when off).
    gate_open:         (H, F) bool, |S| + b > 0, or None when modReLU is off.
    kernel_two_sided:  (H, 2C) mhf: irfft(gated_spectrum, 2C) before the causal mask.
    kernel:            (H, L) mhf: the learned kernel's first L lags as applied (after the causal
                       mask in "pad"/"circular" mode, zero past lag C - 1).
    gate_kernel:       (B, L, D) mhf: the data-dependent gate stream g, used as a kernel.
    combined_kernel:   (B, L, D) mhf: (g * k) truncated to L lags: the causal kernel that
                       actually mixes the value stream (g alone when the filter is off).
    adapted_filter:    (B, H, F) complex fftnet: base filter + input-dependent modulation, on
                       the rfft grid of this input (F = L // 2 + 1).
    data_gate_open:    (B, F, D) bool fftnet: which bins of the filtered data spectrum modReLU
                       kept.
    """

    kind: str
    causal_mode: str
    fft_size: int
    mixer_input: torch.Tensor
    fft_input: torch.Tensor
    fft_output: torch.Tensor
    mixer_output: torch.Tensor
    spectrum: torch.Tensor | None = None
    gate_bias: torch.Tensor | None = None
    gated_spectrum: torch.Tensor | None = None
    gate_open: torch.Tensor | None = None
    kernel_two_sided: torch.Tensor | None = None
    kernel: torch.Tensor | None = None
    gate_kernel: torch.Tensor | None = None
    combined_kernel: torch.Tensor | None = None
    adapted_filter: torch.Tensor | None = None
    data_gate_open: torch.Tensor | None = None


def detach32(t: torch.Tensor | None) -> torch.Tensor | None:
    """Detach a tensor for the record; real tensors become float32, complex ones complex64."""
    if t is None:
        return None
    t = t.detach()
    if t.is_complex():
        return t.to(torch.complex64)
    if t.is_floating_point():
        return t.float()
    return t
