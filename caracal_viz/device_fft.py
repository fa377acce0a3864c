"""The float64 FFT the analyses run on activations held as torch tensors, on the device that
holds them, so that on a GPU only the results travel to the host.

Convention as everywhere here: one-sided rfft, "backward" normalisation (none forward).
"""

from __future__ import annotations

import numpy as np
import torch


def rfft64(x: torch.Tensor, n: int, dim: int = -1) -> torch.Tensor:
    """rfft of size n along `dim` of a real tensor x, in float64: complex128, on x's device.

    On the CPU it runs numpy's pocketfft (its result seen as a tensor, not copied), which
    measured faster there than torch's CPU FFT for the analyses' batched, zero-padded transforms
    (data_kernels' twelve at 4,096 bytes: ~85 ms against ~145 ms, one thread). Elsewhere
    torch.fft.rfft."""
    x = x.detach()
    if x.device.type == "cpu":
        # NaN/Inf activations give NaN bins, which the analyses report; torch's FFT does not warn either
        with np.errstate(invalid="ignore"):
            return torch.from_numpy(np.fft.rfft(x.numpy().astype(np.float64, copy=False), n=n, axis=dim))
    return torch.fft.rfft(x.double(), n=n, dim=dim)
