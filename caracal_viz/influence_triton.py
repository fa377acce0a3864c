"""Fused CUDA kernels (Triton) for the influence map's hand-written backward
(caracal_viz/influence_backward.py), float32, channel-major (D, R, P) cotangents.

- `gemm`: m (M, K) @ x (K, R, P) -> (M, R, P) with x any (K, R, P) view whose last axis is
  contiguous (the FFT outputs' [..., :P] slices are read in place, no copy), an optional second
  operand stacked along K, and an optional per-position factor (M, P) applied as the product is
  written (GELU' and SiLU': one pass over the output instead of three). Triton's dot in "tf32"
  (one TF32 product), "tf32x3" (TF32 split into three products, close to float32) or "ieee"
  (float32 FMA): chosen per kernel, so the process-wide TF32 switch stays off.
- `ln_back`: a LayerNorm's backward over the D channels of each (row, position), optionally
  after the local conv's adjoint and plus a residual, in one pass (torch: ~12 passes).

The torch operations in influence_backward._TorchOps compute the same functions and are the
reference (tests/test_influence_backward.py, CUDA only for these kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .influence_backward import _PAIRS, TRITON_MODES, _LayerNorm, _TorchOps


@triton.jit
def _gemm_kernel(a_ptr, b_ptr, b2_ptr, s_ptr, c_ptr, M, K, K2, R, P,
                 sbk, sbr, sb2k, sb2r, ssm,
                 HAS2: tl.constexpr, SCALE: tl.constexpr, PREC: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    # c[m, r, p] = (sum_k a[m, k] b[k, r, p] + sum_k a[m, K + k] b2[k, r, p]) * s[m, p]
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    N = R * P
    rm = (pid_m * BM + tl.arange(0, BM)).to(tl.int64)
    rn = (pid_n * BN + tl.arange(0, BN)).to(tl.int64)
    r = rn // P
    p = rn % P
    nmask = rn < N
    mmask = rm < M
    KA = K + K2
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        a = tl.load(a_ptr + rm[:, None] * KA + rk[None, :], mask=mmask[:, None] & (rk[None, :] < K), other=0.0)
        b = tl.load(b_ptr + rk[:, None].to(tl.int64) * sbk + (r * sbr + p)[None, :],
                    mask=(rk[:, None] < K) & nmask[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PREC)
    if HAS2:
        for k0 in range(0, K2, BK):
            rk = k0 + tl.arange(0, BK)
            a = tl.load(a_ptr + rm[:, None] * KA + K + rk[None, :], mask=mmask[:, None] & (rk[None, :] < K2), other=0.0)
            b = tl.load(b2_ptr + rk[:, None].to(tl.int64) * sb2k + (r * sb2r + p)[None, :],
                        mask=(rk[:, None] < K2) & nmask[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PREC)
    mask = mmask[:, None] & nmask[None, :]
    if SCALE:
        acc = acc * tl.load(s_ptr + rm[:, None] * ssm + p[None, :], mask=mask, other=0.0)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=mask)


@triton.jit
def _ln_back_kernel(dy_ptr, xh_ptr, rstd_ptr, w_ptr, cw_ptr, res_ptr, out_ptr, D, R, P, sxd,
                    CONV: tl.constexpr, RES: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr):
    # out[:, n] = rstd (g - mean(g) - xh mean(g xh)) + res, g = w * (conv adjoint of) dy, per column n = (r, p)
    pid = tl.program_id(0)
    N = R * P
    rn = (pid * BN + tl.arange(0, BN)).to(tl.int64)
    p = rn % P
    nmask = rn < N
    rd = tl.arange(0, BD)
    dmask = rd < D
    m2 = dmask[:, None] & nmask[None, :]
    off = rd[:, None].to(tl.int64) * N + rn[None, :]
    x = tl.load(dy_ptr + off, mask=m2, other=0.0)
    if CONV:  # a_t = w2 c_t + w1 c_{t+1} + w0 c_{t+2}, zero past the chunk's last position
        w0 = tl.load(cw_ptr + rd * 3, mask=dmask, other=0.0)
        w1 = tl.load(cw_ptr + rd * 3 + 1, mask=dmask, other=0.0)
        w2 = tl.load(cw_ptr + rd * 3 + 2, mask=dmask, other=0.0)
        x1 = tl.load(dy_ptr + off + 1, mask=m2 & (p + 1 < P)[None, :], other=0.0)
        x2 = tl.load(dy_ptr + off + 2, mask=m2 & (p + 2 < P)[None, :], other=0.0)
        x = x * w2[:, None] + x1 * w1[:, None] + x2 * w0[:, None]
    g = x * tl.load(w_ptr + rd, mask=dmask, other=0.0)[:, None]
    xh = tl.load(xh_ptr + rd[:, None] * sxd + p[None, :], mask=m2, other=0.0)
    mean1 = tl.sum(g, axis=0) / D
    mean2 = tl.sum(g * xh, axis=0) / D
    rs = tl.load(rstd_ptr + p, mask=nmask, other=0.0)
    out = rs[None, :] * (g - mean1[None, :] - xh * mean2[None, :])
    if RES:
        out += tl.load(res_ptr + off, mask=m2, other=0.0)
    tl.store(out_ptr + off, out, mask=m2)


class TritonOps(_TorchOps):
    """influence_backward's primitives as the kernels above (float32 CUDA tensors). gemm modes
    "tf32", "tf32x3" and "fp32" run in the Triton kernel; the bfloat16 modes keep torch's
    product (with its factor applied after) and the fused LayerNorm backward."""

    def __init__(self, mode: str):
        super().__init__(mode)
        self.prec = TRITON_MODES.get(mode)

    def gemm(self, m, x, scale=None, x2=None):
        if self.prec is None:
            assert self.mode in _PAIRS
            return super().gemm(m, x, scale, x2)
        K, R, P = x.shape
        M = m.shape[0]
        assert x.stride(-1) == 1 and m.is_contiguous() and m.shape[1] == K + (0 if x2 is None else x2.shape[0])
        out = torch.empty((M, R, P), device=x.device, dtype=torch.float32)
        b2 = x if x2 is None else x2
        assert b2.stride(-1) == 1
        s = out if scale is None else scale
        BM, BN, BK = 64, 128, 32
        grid = (triton.cdiv(M, BM), triton.cdiv(R * P, BN))
        _gemm_kernel[grid](m, x, b2, s, out, M, K, 0 if x2 is None else x2.shape[0], R, P,
                           x.stride(0), x.stride(1), b2.stride(0), b2.stride(1), s.stride(0),
                           HAS2=x2 is not None, SCALE=scale is not None, PREC=self.prec,
                           BM=BM, BN=BN, BK=BK, num_warps=4, num_stages=3)
        return out

    def ln_back(self, ln: _LayerNorm, dy, conv=None, res=None):
        D, R, P = dy.shape
        dy = dy.contiguous()
        out = torch.empty_like(dy)
        BN = 32
        _ln_back_kernel[(triton.cdiv(R * P, BN),)](
            dy, ln.xhat, ln.rstd, ln.w, dy if conv is None else conv, dy if res is None else res.contiguous(), out,
            D, R, P, ln.xhat.stride(0), CONV=conv is not None, RES=res is not None,
            BD=triton.next_power_of_2(D), BN=BN, num_warps=4)
        return out
