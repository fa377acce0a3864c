"""Caracal's Multi-Head Fourier (MHF) mixer, as described in the public summary of arXiv 2605.00292,
plus an FFTNet-style learned per-head spectrum with modReLU gates (see shared design notes).

Reading order follows the paper's description:
  1. causal depthwise conv, kernel 3 (left-padded by 2): local inductive bias, no positions
  2. LayerNorm, value stream v = Linear_V(u), gate stream g = Conv_G2(SiLU(Linear_G1(u)))
  3. the frequency-domain causal trick: pad right, FFT, multiply, inverse FFT, keep the first L
       y_t = sum_{j<=t} v_j * h_{t-j},   h = (g * k)[:L]
     where k is the head's learned kernel irfft(modReLU(S_h)) with negative lags zeroed
  4. Linear_O
The class reads in that order: the learned filter, the streams, the plain path of step 3
(`mix_reference`, the paper's padding to 3L - 2) and `forward`; after them the fast path (the
same function: `fft_size`, the cached kernel spectrum, `mix`), the internals record, and the
incremental-decoding state (`step`, `prefill`).

Hook points (models/hooks.py; shapes in ByteLM's docstring), in the order the forward meets them:
hook_v, hook_g (the streams, head as its own axis), hook_gate (the modReLU factor), hook_spectrum
(S'_h after modReLU), hook_kernel (the causal kernel as applied), hook_product (the FFT product,
plain path only), hook_mixed (after the inverse FFT and truncation, before Linear_O).

The FFT product's dtype and least size can be chosen for a block of code with
`models.precision.fft_options` (re-exported here); the model itself holds no such setting.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import BoundedCache
from .config import ModelConfig
from .fourier import (FFTConvFunction, causal_fft_size, causal_kernel_lags, exact_conv_fft_size, fft_conv, modrelu,
                      modrelu_scale, place_two_sided)
from .hooks import HookPoint, run_with_cache
from .internals import MixerInternals, detach32
from .precision import fft_options, fft_options_in_effect

__all__ = ["MultiHeadFourier", "fft_options", "fft_options_in_effect"]

_CACHE_ENTRIES = 8  # kernel spectra kept per mixer: (length, FFT size, dtype, device) combinations


class MultiHeadFourier(nn.Module):
    """Caracal's MHF mixer on (B, L, D) with H heads (see the module docstring): local causal
    conv, LayerNorm, value and gate streams, their frequency-domain causal product with the
    head's learned kernel, Linear_O. `mix_reference` is the paper's plain path; `mix` the same
    function computed faster (the default); `step`/`prefill` decode incrementally without FFTs."""

    fast = True  # False (on an instance) runs the plain reference path `mix_reference`
    # the hook points that MixerInternals is a view of (hook_product is left out: caching it
    # would move the pass onto the plain path)
    INTERNAL_HOOKS = ("hook_v", "hook_g", "hook_gate", "hook_spectrum", "hook_kernel", "hook_mixed")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self._spectrum_cache = BoundedCache(_CACHE_ENTRIES)
        D, H, C = cfg.d_model, cfg.n_heads, cfg.context
        self.cfg = cfg
        self.n_heads, self.head_dim, self.context = H, D // H, C
        self.conv_weight = nn.Parameter(torch.zeros(D, 1, 3))
        self.conv_bias = nn.Parameter(torch.zeros(D))
        self.ln = nn.LayerNorm(D)
        self.w_v = nn.Linear(D, D)
        self.w_g1 = nn.Linear(D, D)
        # Conv_G2: a grouped 1x1 projection, one group per head, mixing channels within a head only.
        self.g2_weight = nn.Parameter(torch.randn(H, D // H, D // H) * (D // H) ** -0.5)
        self.g2_bias = nn.Parameter(torch.zeros(D))
        self.w_o = nn.Linear(D, D)
        if cfg.spectral_filter:
            # S_h on the rfft grid of size 2C (C + 1 bins); all ones is a unit impulse, so an
            # untrained filter leaves the data-dependent mixing v * g unchanged.
            spectrum = torch.zeros(H, C + 1, 2)
            spectrum[..., 0] = 1.0
            self.spectrum = nn.Parameter(spectrum)
            self.gate_bias = nn.Parameter(torch.zeros(H, C + 1)) if cfg.modrelu else None
        with torch.no_grad():
            self.conv_weight[:, 0, 2] = 1.0  # start as identity: the conv adds locality as it learns
        self.hook_v, self.hook_g = HookPoint(), HookPoint()  # (B, L, H, dh)
        self.hook_gate = HookPoint()  # (H, C+1) real modReLU factor
        self.hook_spectrum = HookPoint()  # (H, C+1) complex S'_h
        self.hook_kernel = HookPoint()  # (H, L) causal kernel as applied
        self.hook_product = HookPoint()  # (B, N//2+1, H, dh) complex, plain path only
        self.hook_mixed = HookPoint()  # (B, L, H, dh)

    # ---- the learned spectral filter (no input needed) ------------------------------------
    def learned_spectrum(self) -> torch.Tensor:
        """(H, C+1) complex S_h."""
        return torch.view_as_complex(self.spectrum.float().contiguous())

    def gated_spectrum(self) -> torch.Tensor:
        """(H, C+1) complex S'_h = modReLU(S_h; b_h), or S_h when modReLU is off."""
        S = self.learned_spectrum()
        return modrelu(S, self.gate_bias.float()) if self.gate_bias is not None else S

    def kernel_two_sided(self) -> torch.Tensor:
        """(H, 2C) irfft(S'_h, 2C): lags 0..C-1 then -C..-1 (irfft layout)."""
        return torch.fft.irfft(self.gated_spectrum(), n=2 * self.context, dim=-1)

    def causal_kernel(self) -> torch.Tensor:
        """(H, C) the causal-mask impulse response: the two-sided kernel with negative lags zeroed."""
        return self.kernel_two_sided()[:, : self.context]

    # ---- streams -------------------------------------------------------------------------
    def local_conv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): u_t = w_0 x_{t-2} + w_1 x_{t-1} + w_2 x_t + b per channel, the
        depthwise conv of kernel 3 left-padded by 2 (causal)."""
        # shifted products in the (B, L, D) layout: conv1d wants (B, D, L), and its two transposes
        # cost more than the arithmetic (fwd+bwd 2x faster on the CPU at B=16, L=1024, D=160)
        L = x.shape[1]
        w = self.conv_weight[:, 0].to(x.dtype)  # (D, 3)
        xp = F.pad(x, (0, 0, 2, 0))  # (B, L + 2, D): two zero positions before t = 0
        u = torch.addcmul(self.conv_bias.to(x.dtype), xp[:, :L], w[:, 0])
        u = torch.addcmul(u, xp[:, 1:L + 1], w[:, 1])
        return torch.addcmul(u, x, w[:, 2])

    def gate(self, u: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D): the gate stream g = Conv_G2(SiLU(Linear_G1(u))), Conv_G2 a grouped
        projection with one group per head."""
        a = F.silu(self.w_g1(u))
        a = a.unflatten(-1, (self.n_heads, self.head_dim))
        g = torch.einsum("...hd,hde->...he", a, self.g2_weight.to(a.dtype))
        return g.flatten(-2) + self.g2_bias.to(g.dtype)

    def _per_channel(self, per_head: torch.Tensor) -> torch.Tensor:
        # (H, ...) -> (..., D): every channel of a head shares that head's filter
        return per_head.repeat_interleave(self.head_dim, dim=0).movedim(0, -1)

    # ---- the frequency-domain causal trick, as the paper describes it (the plain path) --------
    def plain_fft_size(self, L: int) -> int:
        """N of the plain path `mix_reference`: L in "circular" mode, else N >= 3L - 2 (2L - 1
        without the learned filter), as the paper pads."""
        if self.cfg.causal_mode == "circular":
            return L
        return causal_fft_size(L, 3 if self.cfg.spectral_filter else 2)

    def kernel_buffer(self, L: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The learned kernel laid out for an FFT of size n at length L: (H, K) float32 time
        kernel (lags 0..L-1; for "two_sided" the whole size-n circular buffer, future lags at the
        end; a unit impulse (H, 1) without the filter), and the kernel as applied (H, L) or None.
        Built through hook_gate, hook_spectrum and hook_kernel (the same steps as causal_kernel);
        in "two_sided" mode hook_kernel's lags 0..L-1 replace the buffer's, its future lags
        follow hook_spectrum."""
        if not self.cfg.spectral_filter:
            return torch.ones(self.n_heads, 1, device=self.w_v.weight.device), None
        S = self.learned_spectrum()
        if self.gate_bias is not None:
            S = S * self.hook_gate(modrelu_scale(S, self.gate_bias.float()))  # = modrelu(S, b)
        two = torch.fft.irfft(self.hook_spectrum(S), n=2 * self.context, dim=-1)  # (H, 2C) irfft layout
        k_applied = self.hook_kernel(causal_kernel_lags(two[:, : self.context], L))  # (H, L): the causal mask
        if self.cfg.causal_mode == "two_sided":
            return torch.cat([k_applied, place_two_sided(two, L, n)[:, L:]], dim=-1), k_applied
        return k_applied, k_applied

    def mix_reference(self, v: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """The plain path, as the paper describes it, in v's dtype: pad both streams to
        N >= 3L - 2 (`plain_fft_size`; circular: N = L, so late tokens wrap into early outputs),
        FFT, multiply with the learned kernel's spectrum, hook_product, inverse FFT, keep L."""
        B, L, D = v.shape
        n = self.plain_fft_size(L)
        P = torch.fft.rfft(v, n=n, dim=1) * torch.fft.rfft(g, n=n, dim=1)  # (B, n//2+1, D)
        k_applied = None
        if self.cfg.spectral_filter:
            k_buf, k_applied = self.kernel_buffer(L, n)  # two_sided: future lags at the buffer's end
            P = P * self._per_channel(torch.fft.rfft(k_buf.to(v.dtype), n=n, dim=-1))
        P = self.hook_product(P.unflatten(-1, (self.n_heads, self.head_dim))).flatten(-2)
        y = torch.fft.irfft(P, n=n, dim=1)[:, :L]
        return y, n, k_applied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): steps 1-4 of the module docstring, through the hook points."""
        H, dh = self.n_heads, self.head_dim
        u = self.ln(self.local_conv(x))
        v = self.hook_v(self.w_v(u).unflatten(-1, (H, dh))).flatten(-2)  # (B, L, D)
        g = self.hook_g(self.gate(u).unflatten(-1, (H, dh))).flatten(-2)  # (B, L, D)
        # The FFT product runs in float32 under autocast (training, benchmarks) and in float64
        # otherwise (inference, analysis): float32 FFT rounding spreads ~1e-7 of every position,
        # future ones included, onto every output; through six layers that reaches ~4e-5 in the
        # logits and would blur the causality certificate. float64 keeps it at ~1e-12.
        autocast = torch.is_autocast_enabled(x.device.type)
        fft_dtype = fft_options_in_effect().dtype or (torch.float32 if autocast else torch.float64)
        # y goes straight to the dtype Linear_O computes in; a hook on it sees x's precision
        out_dtype = torch.get_autocast_dtype(x.device.type) if autocast and not self.hook_mixed.active else x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.fast and not self.hook_product.active:  # the fast paths never form the product
                y, _, _ = self.mix(v, g, dtype=fft_dtype, out_dtype=out_dtype)
            else:
                y, _, _ = self.mix_reference(v.to(fft_dtype), g.to(fft_dtype))
        y = self.hook_mixed(y.unflatten(-1, (H, dh))).flatten(-2)
        return self.w_o(y.to(out_dtype))

    # ---- the fast path: the same product, computed faster (cached kernel spectra, Triton) ------
    def fft_size(self, L: int) -> int:
        """N for length L: L in "circular" mode (no padding); otherwise the smallest fast size that
        keeps v * g * k exact on outputs 0..L-1. k has min(C, L) non-zero lags, so N >= 2L + min(C, L) - 2
        (N >= 2L - 1 without the learned filter); at least fft_options' min_size."""
        if self.cfg.causal_mode == "circular":
            return L
        n = exact_conv_fft_size(L, min(self.context, L) if self.cfg.spectral_filter else 1,
                                device=self.w_v.weight.device)
        return max(n, fft_options_in_effect().min_size)

    def _kernel_hooked(self) -> bool:
        return self.hook_gate.active or self.hook_spectrum.active or self.hook_kernel.active

    def kernel_spectrum(self, L: int, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The learned kernel's spectrum as the FFT product applies it, for length L and FFT size n.

        Returns K (H, n//2 + 1) complex in dtype's complex type, divided by n (the inverse FFT's
        normalisation, so the inverse runs unnormalised), and the kernel as applied (H, L) float32
        (None without the learned filter: K is then 1/n). It does not depend on the input, so
        under torch.no_grad it is cached per (L, n, dtype, device) and keyed on the parameters'
        storage and version counters: any in-place update or reload of the parameters misses."""
        cacheable = not torch.is_grad_enabled() and not self._kernel_hooked()
        key = None
        if cacheable:
            params = [p for p in (getattr(self, "spectrum", None), getattr(self, "gate_bias", None)) if p is not None]
            key = (L, n, dtype, str(self.w_v.weight.device), self.cfg.causal_mode,
                   tuple((p.data_ptr(), p._version) for p in params))
            hit = self._spectrum_cache.get(key)
            if hit is not None:
                return hit
        k_buf, k_applied = self.kernel_buffer(L, n)
        K = torch.fft.rfft(k_buf.to(dtype), n=n, dim=-1) / n
        if cacheable:
            self._spectrum_cache.put(key, (K, k_applied))
        return K, k_applied

    def mix(self, v: torch.Tensor, g: torch.Tensor, dtype: torch.dtype | None = None,
            out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """FFT mixing of v (B, L, D) with the kernel g (B, L, D) and the learned k.

        The FFTs run in `dtype` (default v's), y comes back in `out_dtype` (default dtype).
        Returns y (B, L, D), the FFT size N, and the learned kernel as applied (H, L) or None.
        The same function as `mix_reference` (equal within the FFT dtype's rounding), computed
        faster: an FFT size with min(C, L) kernel lags instead of L, the 1/N folded into the
        kernel's spectrum, which is cached when no gradient is needed and no hook sits on the
        kernel (hook_gate, hook_spectrum, hook_kernel: then it is rebuilt through them); on the GPU then a fused
        Triton pipeline (models.fourier.fft_conv); with gradients an explicit FFT backward
        (models.fourier.FFTConvFunction).
        """
        dtype = dtype or v.dtype
        out_dtype = out_dtype or dtype
        L = v.shape[1]
        n = self.fft_size(L)
        if torch.is_grad_enabled() and (v.requires_grad or g.requires_grad
                                        or any(p.requires_grad for p in self.parameters())):
            k_buf, k_applied = self.kernel_buffer(L, n)
            y = FFTConvFunction.apply(v, g, k_buf, n, dtype, out_dtype)
        else:
            K, k_applied = self.kernel_spectrum(L, n, dtype)
            y = fft_conv(v, g, K, n, dtype=dtype, out_dtype=out_dtype)
        return y, n, k_applied

    # ---- the internals as one record (a view of the hook points) ----------------------------
    def forward_with_internals(self, x: torch.Tensor) -> tuple[torch.Tensor, MixerInternals]:
        """forward(x) and its MixerInternals (read through the hook points, INTERNAL_HOOKS)."""
        out, cache = run_with_cache(self, x, names_filter=self.INTERNAL_HOOKS)
        return out, self.internals(x, out, cache)

    def internals(self, x: torch.Tensor, out: torch.Tensor, cache: dict) -> MixerInternals:
        """The MixerInternals of a forward pass from its input x, output out and the cache of
        its INTERNAL_HOOKS (names relative to this mixer), as models/internals.py describes."""
        L = x.shape[1]
        plain = not self.fast or self.hook_product.active
        v, g = cache["hook_v"].flatten(-2), cache["hook_g"].flatten(-2)
        rec = MixerInternals(
            kind="mhf", causal_mode=self.cfg.causal_mode, fft_size=self.plain_fft_size(L) if plain else self.fft_size(L),
            mixer_input=detach32(x), fft_input=detach32(v), fft_output=detach32(cache["hook_mixed"].flatten(-2)),
            mixer_output=detach32(out), gate_kernel=detach32(g),
        )
        with torch.no_grad():
            if self.cfg.spectral_filter:
                rec.spectrum = detach32(self.learned_spectrum())
                rec.gated_spectrum = detach32(cache["hook_spectrum"])
                if self.gate_bias is not None:
                    rec.gate_bias = detach32(self.gate_bias)
                    rec.gate_open = cache["hook_gate"] > 0
                rec.kernel_two_sided = detach32(torch.fft.irfft(cache["hook_spectrum"], n=2 * self.context, dim=-1))
                rec.kernel = detach32(cache["hook_kernel"])
            rec.combined_kernel = self.combined_kernel(g, rec.kernel)
        return rec

    def combined_kernel(self, g: torch.Tensor, k_applied: torch.Tensor | None) -> torch.Tensor:
        """(B, L, D) float32 (g * k)[:L] per channel: the causal kernel that mixes the value
        stream, from g (B, L, D) and the kernel as applied k (H, L) (g alone without a filter)."""
        g32 = g.detach().float()
        if k_applied is None:
            return g32
        L = g.shape[1]
        m = causal_fft_size(L, 2)
        K = self._per_channel(torch.fft.rfft(k_applied.float(), n=m, dim=-1))
        return torch.fft.irfft(torch.fft.rfft(g32, n=m, dim=1) * K, n=m, dim=1)[:, :L]

    # ---- incremental decoding: no FFT, two dot products per step ---------------------------
    def init_state(self, batch: int, device) -> dict:
        """An empty decoding state for `step`/`prefill`: no past inputs of the local conv, position 0."""
        D = self.cfg.d_model
        return {"hist": torch.zeros(batch, 2, D, device=device), "t": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One new position. x_t: (B, D) -> (B, D). Exactly the full forward's output at t
        (only for causal_mode "pad": the other modes read the future and cannot be streamed)."""
        window = torch.cat([state["hist"].to(x_t.dtype), x_t[:, None]], dim=1)  # x_{t-2}, x_{t-1}, x_t
        state["hist"] = window[:, 1:]
        u = torch.einsum("bkd,dk->bd", window, self.conv_weight[:, 0].to(x_t.dtype)) + self.conv_bias.to(x_t.dtype)
        u = self.ln(u)
        v_t, g_t = self.w_v(u), self.gate(u)
        t = state["t"]
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            v = _append(state, "v", v_t.float(), t)  # (B, t+1, D): v_0 .. v_t
            g = _append(state, "g", g_t.float(), t)
            if self.cfg.spectral_filter:
                # h_t = sum_i g_i k_{t-i}; k has only C non-zero lags
                if "k_rev" not in state:  # the learned kernel does not depend on the input: once per stream
                    state["k_rev"] = self._per_channel(self.causal_kernel().flip(-1))  # (C, D): row j is lag C-1-j
                C = self.context
                lo = max(0, t - C + 1)
                h_t = _dot_over_time(g[:, lo:], state["k_rev"][C - 1 - (t - lo):], state)
            else:
                h_t = g_t.float()
            h_rev = _prepend(state, "h_rev", h_t, t)  # (B, t+1, D): h_t .. h_0
            # y_t = sum_j v_j h_{t-j}: the cached values against the reversed combined kernel
            y_t = _dot_over_time(v, h_rev, state)
        state["t"] = t + 1
        return self.w_o(y_t.to(x_t.dtype))

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """The full forward over a prompt x (B, L, D), leaving `state` as L calls of `step` from
        a fresh state would (up to float32 rounding): one FFT pass instead of L steps."""
        out, cache = run_with_cache(self, x, names_filter=("hook_v", "hook_g", "hook_kernel"))
        v, g = (cache[k].flatten(-2).float() for k in ("hook_v", "hook_g"))
        combined = self.combined_kernel(g, cache.get("hook_kernel"))
        L = x.shape[1]
        state["hist"] = torch.cat([state["hist"], x.detach().float()], dim=1)[:, -2:]
        for key, seq in (("v", v), ("g", g)):
            state.pop(key, None)
            _append(state, key, seq[:, -1], L - 1)  # sizes the buffer for L entries
            state[key][:, :L] = seq
        state.pop("h_rev", None)
        _prepend(state, "h_rev", combined[:, -1], L - 1)
        cap = state["h_rev"].shape[1]
        state["h_rev"][:, cap - L:] = combined.flip(1)
        state["t"] = L
        return out


def _dot_over_time(a: torch.Tensor, b: torch.Tensor, state: dict) -> torch.Tensor:
    """sum_j a[:, j] * b[:, j] for (B, n, D) tensors -> (B, D). The product goes to a scratch
    buffer kept in the state: a fresh (B, t, D) temporary every step costs more than the
    arithmetic once it is large enough for the allocator to map and unmap it each time."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return (a * b).sum(1)
    n = a.shape[1]
    buf = state.get("scratch")
    if buf is None or buf.shape[1] < n or buf.shape[0] != a.shape[0] or buf.dtype != a.dtype:
        buf = state["scratch"] = a.new_empty(a.shape[0], max(64, 2 * n), a.shape[-1])
    prod = torch.mul(a, b, out=buf[:, :n])
    return prod.sum(1)


def _append(state: dict, key: str, value: torch.Tensor, t: int) -> torch.Tensor:
    """Write value (B, D) at position t of a growing (B, capacity, D) buffer (doubling);
    returns the filled part (B, t+1, D)."""
    buf = state.get(key)
    if buf is None or buf.shape[1] <= t:
        cap = max(64, 2 * t)
        new = value.new_zeros(value.shape[0], cap, value.shape[-1])
        if buf is not None:
            new[:, : buf.shape[1]] = buf
        state[key] = buf = new
    buf[:, t] = value
    return buf[:, : t + 1]


def _prepend(state: dict, key: str, value: torch.Tensor, t: int) -> torch.Tensor:
    """Like _append, but the buffer fills from its end: position t sits at capacity-1-t, so the
    filled part (B, t+1, D) reads value_t .. value_0 (a reversed sequence without a copy)."""
    buf = state.get(key)
    if buf is None or buf.shape[1] <= t:
        cap = max(64, 2 * t)
        new = value.new_zeros(value.shape[0], cap, value.shape[-1])
        if buf is not None:
            new[:, cap - buf.shape[1]:] = buf
        state[key] = buf = new
    cap = buf.shape[1]
    buf[:, cap - 1 - t] = value
    return buf[:, cap - 1 - t:]
