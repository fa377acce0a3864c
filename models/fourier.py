"""Torch FFT primitives used inside the mixers (differentiable, batched, float32).

Conventions: time runs along the last axis unless said otherwise; `torch.fft.rfft` with the
default "backward" normalisation (no scaling forward, 1/N on the inverse), so a spectrum of
all ones is a unit impulse at lag 0. The numpy oracles for the same maths live in
`caracal_viz.spectral` and the tests compare the two.
"""

from __future__ import annotations

import bisect
import functools

import torch

from . import fftconv_triton


def smooth_fft_size(n: int, primes: tuple[int, ...] = (2, 3, 5)) -> int:
    """Smallest integer >= n whose prime factors are all in `primes` (2 must be one of them)."""
    table = _smooth_numbers(tuple(sorted(set(primes))), max(0, n - 1).bit_length())
    return table[bisect.bisect_left(table, n)]


@functools.lru_cache(maxsize=64)
def _smooth_numbers(primes: tuple[int, ...], bits: int) -> tuple[int, ...]:
    """Every integer <= 2**bits whose prime factors are all in `primes`, sorted (2**bits itself is
    one, so `smooth_fft_size` always finds its answer here). Built once per (primes, bits): the
    certificate asks for the size of every length up to the text limit (16,384 lengths), which
    one search per length took 2.8 s of on the 2-core CPU."""
    limit = 1 << bits
    nums = [1]
    for p in primes:
        grown = []
        for x in nums:
            while x <= limit:
                grown.append(x)
                x *= p
        nums = grown
    return tuple(sorted(nums))


def grid_fft_size(n: int) -> int:
    """The least FFT size >= n on the grid 4, 5, 6, 8, 10, 12, 16, ... (2^k times 1, 5/4, 3/2).
    A fixed grid, so texts of any length and position (and every chunk of one text) share cuFFT
    plans (a new plan costs 0.06-0.27 s); its sizes are also fast for the CPU's FFT."""
    k = 0
    while True:
        for c in (4, 5, 6):
            if (c << k) >= n:
                return c << k
        k += 1


def fast_fft_size(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3, 5 and 7 (fast for cuFFT/pocketfft)."""
    return smooth_fft_size(n, (2, 3, 5, 7))


def causal_fft_size(L: int, n_factors: int) -> int:
    """FFT size that makes the product of `n_factors` causal length-L spectra an exact linear
    convolution on outputs 0..L-1: the full convolution is n_factors*(L-1)+1 long, and anything
    past N would alias back onto the first outputs, so N >= n_factors*(L-1)+1."""
    return fast_fft_size(n_factors * (L - 1) + 1)


def modrelu_scale(z: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The real factor modReLU multiplies z by: ReLU(|z| + b) / |z| (0 where the gate is shut)."""
    mag = z.abs()
    return torch.relu(mag + bias) / (mag + eps)


def modrelu(z: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """modReLU(z) = ReLU(|z| + b) * z / |z| for complex z (FFTNet). The gate is open where |z| + b > 0."""
    return z * modrelu_scale(z, bias, eps)


def place_two_sided(kernel: torch.Tensor, n_causal: int, n: int) -> torch.Tensor:
    """Lay a two-sided kernel out circularly in a buffer of size n.

    kernel: (..., 2C) in irfft layout: index m < C is lag m, index 2C - m is lag -m.
    Keeps lags 0..n_causal-1 and -(n_causal-1)..-1 (the rest cannot reach outputs 0..n_causal-1),
    returns (..., n) with lag -m at index n - m.
    """
    two_c = kernel.shape[-1]
    c = two_c // 2
    keep = min(n_causal, c)
    out = kernel.new_zeros(kernel.shape[:-1] + (n,))
    out[..., :keep] = kernel[..., :keep]
    neg = min(n_causal - 1, c)
    if neg > 0:
        out[..., n - neg:] = kernel[..., two_c - neg:]
    return out


def causal_kernel_lags(kernel: torch.Tensor, L: int) -> torch.Tensor:
    """The first L lags of a causal kernel (..., K), zero-padded when K < L. Returns (..., L)."""
    K = kernel.shape[-1]
    if K >= L:
        return kernel[..., :L]
    return torch.nn.functional.pad(kernel, (0, L - K))


# ---- the fast FFT convolution (performance; same maths as the plain path in mhf.py) ---------

# Prime factors allowed in the fast path's FFT sizes (benchmarks/fft_floor.py compares the choices).
FFT_SMOOTH: tuple[int, ...] = (2, 3, 5)


def exact_conv_fft_size(L: int, kernel_lags: int, smooth: tuple[int, ...] | None = None,
                        device: torch.device | str | None = None) -> int:
    """FFT size that makes y = v * g * k exact on outputs 0..L-1, for v and g of L samples and a
    learned kernel k with `kernel_lags` non-zero lags (1 for no kernel): the triple convolution is
    2(L-1) + (kernel_lags-1) + 1 long, so N >= 2L + kernel_lags - 2. The same N also keeps a
    two-sided kernel's negative lags (at most L-1 of them) from wrapping onto outputs 0..L-1.
    `smooth` picks the FFT size's prime factors (default FFT_SMOOTH). On a Hopper `device` from
    fftconv_triton.MIN_LENGTH on (and no `smooth` asked for), a size the Hopper kernel splits
    (fftconv_triton.fft_size: N1 * N2, N1 2,3,5-smooth)."""
    if smooth is None and L >= fftconv_triton.MIN_LENGTH and fftconv_triton.wants_size(device):
        return fftconv_triton.fft_size(L, kernel_lags)
    return smooth_fft_size(2 * L + max(1, kernel_lags) - 2, smooth or FFT_SMOOTH)


# Elements per channel chunk of the GPU path (n * B * channels): bounds its scratch memory to
# ~24 bytes * this, and the chunks are still large enough to fill the GPU.
GPU_CHUNK_ELEMENTS = 1 << 26


def fft_conv(v: torch.Tensor, g: torch.Tensor, K: torch.Tensor, n: int, *, dtype: torch.dtype,
             out_dtype: torch.dtype, method: str = "auto") -> torch.Tensor:
    """y = irfft(rfft(v, n) * rfft(g, n) * K_head, n)[:L], per channel: the MHF mixing product.

    v, g: (B, L, D) any float dtype, cast to `dtype` (float32 or float64) for the FFTs.
    K:    (H, n // 2 + 1) complex, one spectrum per head (channel d uses head d // (D // H)),
          with the inverse FFT's 1/n already folded in (so the inverse runs unnormalised).
    Returns (B, L, D) in out_dtype. Differentiable through the torch methods.

    method: "auto" (`choose_method`), "hopper" (CUDA only: the tensor-core kernel of
    models.fftconv_triton, tf32 products and bf16 intermediates whatever `dtype` says),
    "triton" (CUDA only: pack v + i g into one complex FFT, fused product, pair-packed inverse),
    "torch_bld" (FFTs along dim 1) or "torch_lbd" (time-major layout, FFTs along dim 0).
    """
    if method == "auto":
        needs_grad = torch.is_grad_enabled() and (v.requires_grad or g.requires_grad or K.requires_grad)
        method = choose_method(device_type=v.device.type, capability=_capability(v.device),
                               have_triton=v.is_cuda and _have_triton(), B=v.shape[0], L=v.shape[1], n=n,
                               channels=v.shape[-1], heads=K.shape[0], dtype=dtype, out_dtype=out_dtype,
                               needs_grad=needs_grad)
    if method == "hopper":
        plan = fftconv_triton.split(n, v.shape[1])
        if plan is None:
            raise ValueError(f"the Hopper FFT kernel cannot split N={n}: use fftconv_triton.fft_size for N")
        return fftconv_triton.fft_conv(v, g, K, plan, out_dtype=out_dtype)
    if method == "triton":
        return _fft_conv_triton(v, g, K, n, dtype=dtype, out_dtype=out_dtype)
    B, L, D = v.shape
    H, F = K.shape
    Kc = K.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    if method == "torch_bld":
        P = torch.fft.rfft(v.to(dtype), n=n, dim=1) * torch.fft.rfft(g.to(dtype), n=n, dim=1)  # (B, F, D)
        P = (P.unflatten(-1, (H, D // H)) * Kc.T[None, :, :, None]).flatten(-2)
        y = torch.fft.irfft(P, n=n, dim=1, norm="forward")[:, :L]
        return y.to(out_dtype, memory_format=torch.contiguous_format)
    if method == "torch_lbd":
        # (L, 2, B, D): the batch dimensions collapse into one, so no FFT call copies its input
        vg = torch.stack([v.transpose(0, 1), g.transpose(0, 1)], dim=1).to(dtype)
        S = torch.fft.rfft(vg, n=n, dim=0)  # (F, 2, B, D)
        P = (S[:, 0] * S[:, 1]).unflatten(-1, (H, D // H)) * Kc.T[:, None, :, None]
        y = torch.fft.irfft(P.flatten(-2), n=n, dim=0, norm="forward")[:L]  # (L, B, D)
        return y.transpose(0, 1).to(out_dtype, memory_format=torch.contiguous_format)
    raise ValueError(f"unknown fft_conv method {method!r}: expected auto, triton, torch_bld or torch_lbd")


class FFTConvFunction(torch.autograd.Function):
    """fft_conv with the learned kernel in the time domain, for training and gradients.

    y = irfft(rfft(v, n) * rfft(g, n) * rfft(k_buf, n), n)[:L] per channel (channel d uses head
    d // (D // H) of k_buf (H, K)). The backward is the same product run backwards, three
    circular correlations that are exact for n >= 2L + K - 2 on every index that matters:
        dv = irfft(DY conj(G Kf))[:L],  dg = irfft(DY conj(V Kf))[:L],
        dk = sum over the head's channels of irfft(DY conj(V G))[:K]
    with DY = rfft(dy, n). v and g are saved, their spectra recomputed: no (B, n, D) complex
    tensor is kept between the passes. dk is computed only when k_buf needs a gradient (a
    gradient with respect to the input alone, as the influence map takes, skips a reduction
    over every channel and an inverse FFT). Works under vmap (is_grads_batched)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(v, g, k_buf, n, dtype, out_dtype):
        """y (B, L, D) in out_dtype: fft_conv with the spectrum rfft(k_buf, n) / n (see the class)."""
        K = torch.fft.rfft(k_buf.to(dtype), n=n, dim=-1) / n
        return fft_conv(v, g, K, n, dtype=dtype, out_dtype=out_dtype)  # no grad in here: Triton on CUDA

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Keep v, g and k_buf (not their spectra) and the FFT size and dtype for the backward."""
        v, g, k_buf, n, dtype, out_dtype = inputs
        ctx.save_for_backward(v, g, k_buf)
        ctx.n, ctx.dtype = n, dtype

    @staticmethod
    def backward(ctx, dy):
        """(dv, dg, dk or None) from dy (B, L, D): the three correlations of the class docstring."""
        v, g, k_buf = ctx.saved_tensors
        dv, dg, dk = _FFTConvGrad.apply(dy, v, g, k_buf, ctx.n, ctx.dtype, ctx.needs_input_grad[2])
        return dv, dg, dk, None, None, None


def _fft_conv_grads(dy, v, g, k_buf, n, dtype, need_dk=True):
    """The three correlations of FFTConvFunction.backward; any leading dimensions of dy (or of
    v, g, k_buf) broadcast, so a batch of cotangents is one batched FFT. dk is None unless
    need_dk."""
    L, D = v.shape[-2], v.shape[-1]
    H = k_buf.shape[-2]
    Kf = torch.fft.rfft(k_buf.to(dtype), n=n, dim=-1).transpose(-1, -2)[..., None]  # (F, H, 1)

    def heads(x):  # (..., F, D) -> (..., F, H, dh)
        return x.reshape(*x.shape[:-1], H, D // H)

    def channels(x):
        return x.reshape(*x.shape[:-2], D)
    V = heads(torch.fft.rfft(v.to(dtype), n=n, dim=-2))  # (B, F, H, dh)
    G = heads(torch.fft.rfft(g.to(dtype), n=n, dim=-2))
    DY = heads(torch.fft.rfft(dy.to(dtype), n=n, dim=-2))  # (..., B, F, H, dh)
    # conj_physical and slices only where they cut: legacy vmap (is_grads_batched) has no rule
    # for the alias ops that a lazy conj or a full-range slice produce
    dv = torch.fft.irfft(channels(DY * torch.conj_physical(G * Kf)), n=n, dim=-2)
    dg = torch.fft.irfft(channels(DY * torch.conj_physical(V * Kf)), n=n, dim=-2)
    if n > L:
        dv, dg = dv[..., :L, :], dg[..., :L, :]
    dk = None
    if need_dk:
        dK = (DY * torch.conj_physical(V * G)).sum(dim=(-4, -1))  # (..., F, H): over batch and the head's channels
        dk = torch.fft.irfft(dK.transpose(-1, -2), n=n, dim=-1)
        if n > k_buf.shape[-1]:
            dk = dk[..., : k_buf.shape[-1]]
        dk = dk.to(k_buf.dtype)
    return dv.to(v.dtype), dg.to(g.dtype), dk


class _FFTConvGrad(torch.autograd.Function):
    """The backward as a function of its own, with a vmap rule: under vmap (batched cotangents)
    the batch becomes a leading dimension of one FFT call instead of a loop per cotangent.
    First order only (no backward of the backward)."""

    @staticmethod
    def forward(dy, v, g, k_buf, n, dtype, need_dk):
        return _fft_conv_grads(dy, v, g, k_buf, n, dtype, need_dk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def vmap(info, in_dims, dy, v, g, k_buf, n, dtype, need_dk):
        dy, v, g, k_buf = (x if d is None else x.movedim(d, 0) for x, d in zip((dy, v, g, k_buf), in_dims[:4]))
        out = _fft_conv_grads(dy, v, g, k_buf, n, dtype, need_dk)
        ranks = (v.shape[-3:], g.shape[-3:], k_buf.shape[-2:])
        return out, tuple(0 if o is not None and o.dim() > len(r) else None for o, r in zip(out, ranks))


def choose_method(*, device_type: str, capability: tuple[int, int] | None, have_triton: bool, B: int, L: int,
                  n: int, channels: int, heads: int, dtype: torch.dtype, out_dtype: torch.dtype,
                  needs_grad: bool) -> str:
    """fft_conv's automatic choice, a pure function of its arguments (tested on the CPU):
    "hopper" where fftconv_triton.plan accepts (compute capability 9.x, a float32 product rounded
    to bf16/fp16, no gradient, long enough); else on CUDA "triton" (no gradient, and an even
    channel count per chunk: its inverse transforms two channels at once) or "torch_lbd"; on the
    CPU "torch_bld"."""
    if fftconv_triton.plan(device_type=device_type, capability=capability, have_triton=have_triton, L=L, n=n,
                           channels=channels, heads=heads, dtype=dtype, out_dtype=out_dtype,
                           needs_grad=needs_grad) is not None:
        return "hopper"
    if device_type != "cuda":
        return "torch_bld"
    if have_triton and not needs_grad and (B * (channels // heads)) % 2 == 0:
        return "triton"
    return "torch_lbd"


def _capability(device: torch.device) -> tuple[int, int] | None:
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def _have_triton() -> bool:
    try:
        _triton_kernels()
    except ImportError:
        return False
    return True


def _fft_conv_triton(v, g, K, n, *, dtype, out_dtype, pack_layout: str = "channel") -> torch.Tensor:
    """The GPU pipeline, five passes over memory per channel chunk:
    pack v + i g (cast, zero pad) -> complex FFT -> fused product -> complex inverse FFT of two
    channels at once (Z = P_a + i P_b) -> unpack the first L samples (cast to out_dtype).
    Complex-to-complex transforms avoid the copy torch makes before every complex-to-real one,
    and the folded 1/n avoids a normalisation pass."""
    kern = _triton_kernels()
    v, g = (t if t.stride(-1) == 1 else t.contiguous() for t in (v, g))
    B, L, D = v.shape
    H, F = K.shape
    dh = D // H
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    Kc = K.to(cdtype).contiguous()
    Kr = torch.view_as_real(Kc)  # (H, F, 2)
    out = torch.empty((B, L, D), device=v.device, dtype=out_dtype)
    heads = max(1, min(H, GPU_CHUNK_ELEMENTS // max(1, n * B * dh)))
    for h0 in range(0, H, heads):
        h1 = min(H, h0 + heads)
        d0, dc = h0 * dh, (h1 - h0) * dh
        C = B * dc  # channels of this chunk, c = b * dc + d
        if pack_layout == "channel":
            buf = torch.empty((C, n), device=v.device, dtype=cdtype)
            bs_t, bs_c = 1, n
        else:
            buf = torch.empty((n, C), device=v.device, dtype=cdtype)
            bs_t, bs_c = C, 1
        grid = (triton_cdiv(n, 64), triton_cdiv(C, 64))
        kern["pack"][grid](v[:, :, d0:], g[:, :, d0:], torch.view_as_real(buf), L, n, C, dc,
                           v.stride(0), v.stride(1), g.stride(0), g.stride(1), bs_t, bs_c,
                           BT=64, BC=64)
        X = torch.fft.fft(buf, dim=1 if pack_layout == "channel" else 0)
        del buf
        if pack_layout != "channel":
            X = X.T  # (C, n) view; torch returns each transformed signal contiguous
        Pn = C // 2
        Z = torch.empty((Pn, n), device=v.device, dtype=cdtype)
        grid = (triton_cdiv(F, 128), triton_cdiv(Pn, 16))
        kern["product"][grid](torch.view_as_real(X), Kr[h0:], torch.view_as_real(Z), n, F, Pn, dc, dh,
                              X.stride(0), X.stride(1), Kc.stride(0), Kc.stride(1), 0.25,
                              BF=128, BP=16)
        del X
        y = torch.view_as_real(torch.fft.ifft(Z, dim=1, norm="forward"))  # (Pn, n, 2): channels 2p, 2p+1
        del Z
        grid = (triton_cdiv(L, 64), triton_cdiv(C, 64))
        kern["unpack"][grid](y, out[:, :, d0:], L, n, C, dc, y.stride(0), y.stride(1),
                             out.stride(0), out.stride(1), BT=64, BC=64)
    return out


def triton_cdiv(a: int, b: int) -> int:
    """ceil(a / b) for positive integers: the number of tiles of size b that cover a."""
    return -(-a // b)


try:  # Triton ships with CUDA builds of torch; the CPU path never needs it
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def _triton_kernels() -> dict:
    if triton is None:
        raise ImportError("the Triton FFT path needs triton (it comes with CUDA builds of torch)")
    return {"pack": _pack_kernel, "product": _product_kernel, "unpack": _unpack_kernel}


if triton is not None:
    @triton.jit
    def _pack_kernel(v_ptr, g_ptr, out_ptr, L, n, C, dc, svb, svt, sgb, sgt, sot, soc,
                     BT: tl.constexpr, BC: tl.constexpr):
        # out[t, c] = v[b, t, d] + i g[b, t, d] for t < L, 0 for L <= t < n; c = b * dc + d
        t = (tl.program_id(0) * BT + tl.arange(0, BT)).to(tl.int64)[:, None]
        c = (tl.program_id(1) * BC + tl.arange(0, BC)).to(tl.int64)[None, :]
        b = c // dc
        d = c % dc
        live = (t < L) & (c < C)
        vv = tl.load(v_ptr + b * svb + t * svt + d, mask=live, other=0.0)
        gg = tl.load(g_ptr + b * sgb + t * sgt + d, mask=live, other=0.0)
        ty = out_ptr.dtype.element_ty
        # (re, im) pairs side by side: one store of whole complex numbers, not two at stride 2
        z = tl.join(vv.to(ty), gg.to(ty))  # (BT, BC, 2)
        o = (t * sot + c * soc)[:, :, None] * 2 + tl.arange(0, 2)[None, None, :]
        m = ((t < n) & (c < C))[:, :, None]
        tl.store(out_ptr + o, z, mask=m)

    @triton.jit
    def _channel_product(x_ptr, k_ptr, f, fm, c, m, dc, dh, sxc, sxf, skh, skf, scale):
        # P = V G K for channel c at bins f, from X = FFT(v + i g):
        #   2V = X[f] + conj(X[-f]),  2G = -i (X[f] - conj(X[-f]));  scale holds the 1/4
        xa = x_ptr + (c * sxc + f * sxf) * 2
        xb = x_ptr + (c * sxc + fm * sxf) * 2
        ar = tl.load(xa, mask=m, other=0.0)
        ai = tl.load(xa + 1, mask=m, other=0.0)
        br = tl.load(xb, mask=m, other=0.0)
        bi = tl.load(xb + 1, mask=m, other=0.0)
        vr = ar + br
        vi = ai - bi
        gr = ai + bi
        gi = br - ar
        ko = k_ptr + (((c % dc) // dh) * skh + f * skf) * 2
        kr = tl.load(ko, mask=m, other=0.0) * scale
        ki = tl.load(ko + 1, mask=m, other=0.0) * scale
        qr = vr * gr - vi * gi
        qi = vr * gi + vi * gr
        return qr * kr - qi * ki, qr * ki + qi * kr

    @triton.jit
    def _product_kernel(x_ptr, k_ptr, z_ptr, n, F, Pn, dc, dh, sxc, sxf, skh, skf, scale,
                        BF: tl.constexpr, BP: tl.constexpr):
        # For the channel pair a = 2p, b = 2p + 1 (P is Hermitian, so the inverse of
        # Z = P_a + i P_b is y_a + i y_b):  Z[f] = P_a + i P_b,  Z[-f] = conj(P_a) + i conj(P_b)
        f = (tl.program_id(0) * BF + tl.arange(0, BF)).to(tl.int64)[:, None]
        p = (tl.program_id(1) * BP + tl.arange(0, BP)).to(tl.int64)[None, :]
        m = (f < F) & (p < Pn)
        fm = (n - f) % n
        ar, ai = _channel_product(x_ptr, k_ptr, f, fm, 2 * p, m, dc, dh, sxc, sxf, skh, skf, scale)
        br, bi = _channel_product(x_ptr, k_ptr, f, fm, 2 * p + 1, m, dc, dh, sxc, sxf, skh, skf, scale)
        zo = z_ptr + (p * n + f) * 2
        tl.store(zo, ar - bi, mask=m)
        tl.store(zo + 1, ai + br, mask=m)
        zo = z_ptr + (p * n + fm) * 2
        mirror = m & (f != fm)  # DC and (n even) Nyquist are their own mirror
        tl.store(zo, ar + bi, mask=mirror)
        tl.store(zo + 1, br - ai, mask=mirror)

    @triton.jit
    def _unpack_kernel(y_ptr, out_ptr, L, n, C, dc, syp, syt, sob, sot, BT: tl.constexpr, BC: tl.constexpr):
        # out[b, t, d] = y[c // 2, t, c % 2] for t < L: the real samples of the pair-packed inverse
        t = (tl.program_id(0) * BT + tl.arange(0, BT)).to(tl.int64)[:, None]
        c = (tl.program_id(1) * BC + tl.arange(0, BC)).to(tl.int64)[None, :]
        m = (t < L) & (c < C)
        val = tl.load(y_ptr + (c // 2) * syp + t * syt + (c % 2), mask=m, other=0.0)
        b = c // dc
        d = c % dc
        tl.store(out_ptr + b * sob + t * sot + d, val.to(out_ptr.dtype.element_ty), mask=m)
