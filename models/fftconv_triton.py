"""The MHF FFT convolution on Hopper GPUs: a Monarch (four-step) real FFT convolution on tensor cores.

y[:, :L] = irfft(rfft(v, N) * rfft(g, N) * K, N)[:L] per channel, the product that
`models.fourier.fft_conv` computes, here in three Triton passes instead of cuFFT's multi-pass
transforms. N = N1 * N2 with N2 = P * Q (P, Q powers of two), time t = N2 n1 + n2, frequency
k = k1 + N1 (k2a + P k2b):

  pass 1 (columns)  A[k1, n2] = sum_n1 x[N2 n1 + n2] W_N1^(n1 k1) for v and g, one real DFT
                    along n1 as a matrix product; v and g are real, so only k1 = 0..N1/2 is kept
                    (R = N1/2 + 1 rows: A[N1 - k1] = conj(A[k1]))
  pass 2 (rows)     per row k1: twiddle W_N^(n2 k1), a length-N2 DFT as two matrix products
                    (P, then Q, with the twiddle W_N2 between them), the product V G K, the
                    inverse the same way back, the conjugate twiddle: T[k1, n2]
  pass 3 (columns)  y[N2 n1 + n2] = Re sum_k1 w_k1 T[k1, n2] W_N1^(-n1 k1) (w = 1 at k1 = 0 and
                    N1/2, else 2: the rows left out are the conjugates), only n1 < L / N2

The DFTs are tl.dot products in tf32 with float32 accumulation; the intermediates A and T go
through device memory in `store_dtype` (bfloat16 by default: 30 bytes per sample of L against the
floor's 6; float32 moves 54). The frequencies come out in the permuted order above, so K is laid
out the same way once (`_kernel_layout`). Every channel has its own v and g: nothing is shared
across the batch except the per-head K. The 1/N of the inverse is folded into K by the caller.

With ENABLED set, `fourier.fft_conv` takes it automatically on compute capability 9.x when the
result is rounded to bf16 anyway (`plan`); elsewhere, and by default (ENABLED is off: it is still
slower than the cuFFT pipeline on the H200), the cuFFT pipeline and the torch paths run as before.
`fourier.fft_conv(..., method="hopper")` runs it explicitly.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch

try:  # Triton ships with CUDA builds of torch; the CPU paths never need it
    import triton
    import triton.language as tl
except ImportError:
    triton = None

# Whether fourier.fft_conv's automatic choice (and the mixer's FFT sizes) may take this kernel, a
# process-wide switch. Off: on the H200 the kernel is correct but 2.3-2.8x slower than the cuFFT
# pipeline at every measured size (benchmarks/FFTCONV_NOTES.md), so it is opt-in until it is faster.
ENABLED = False
# Shortest sequence the kernel takes: below it cuFFT's few launches cost less (BENCHMARKS.md, question 2).
MIN_LENGTH = 4096
# Row length N2 = P * Q, by sequence length: N1 (the column DFT, done as a dense matrix product)
# stays between ~64 and ~256.
_ROW_SPLITS = {256: (16, 16), 512: (16, 32), 1024: (32, 32)}
# Elements of one intermediate plane (Cchunk * R * N2): bounds scratch memory and keeps offsets in int32.
PLANE_ELEMENTS = 1 << 28
# Channel tile of pass 1 and 3 (BC) and of pass 2 (CI, the innermost dimension of the intermediates).
BC = 16
CI = 4


@dataclass(frozen=True)
class Plan:
    """How an FFT of size n splits: n = N1 * N2, N2 = P * Q; R = N1 // 2 + 1 kept rows of the
    column DFT; rows_in = ceil(L / N2) non-zero input rows (and output rows kept)."""
    n: int
    N1: int
    N2: int
    P: int
    Q: int
    R: int
    rows_in: int


def row_length(L: int) -> int:
    """N2 for length L: the power of two in 256..1024 nearest L / 64."""
    return min(1024, max(256, 1 << max(0, round(math.log2(max(1, L) / 64)))))


def _smooth_even(m: int) -> int:
    from .fourier import smooth_fft_size
    m = max(2, m + (m % 2))
    while True:
        s = smooth_fft_size(m)
        if s % 2 == 0:
            return s
        m = s + 1


def fft_size(L: int, kernel_lags: int, N2: int | None = None) -> int:
    """Smallest N = N1 * N2 >= 2L + kernel_lags - 2 (exact causal convolution, as
    `fourier.exact_conv_fft_size`) with N1 even and 2,3,5-smooth (so the cuFFT backward at the
    same N stays fast); N2 defaults to row_length(L)."""
    N2 = N2 or row_length(L)
    need = 2 * L + max(1, kernel_lags) - 2
    return _smooth_even(-(-need // N2)) * N2


def split(n: int, L: int, N2: int | None = None) -> Plan | None:
    """The Plan for an FFT of size n at length L (row length N2, default row_length(L) and then
    the others), or None if n does not split as the kernel needs."""
    first = N2 or row_length(L)
    candidates = (first,) + (() if N2 else tuple(s for s in _ROW_SPLITS if s != first))
    for N2 in candidates:
        if n % N2 or (n // N2) % 2 or n < L:
            continue
        N1 = n // N2
        rows_in = -(-L // N2)
        if rows_in > 256 or N1 // 2 + 1 > 1024:
            continue
        P, Q = _ROW_SPLITS[N2]
        return Plan(n, N1, N2, P, Q, N1 // 2 + 1, rows_in)
    return None


def plan(*, device_type: str, capability: tuple[int, int] | None, have_triton: bool, L: int, n: int,
         channels: int, heads: int, dtype: torch.dtype, out_dtype: torch.dtype, needs_grad: bool) -> Plan | None:
    """The dispatch rule, a pure function of its arguments (tested on the CPU): a Plan where the
    Hopper kernel applies, None where the existing paths run. It applies on a CUDA device of
    compute capability 9.x with Triton (and ENABLED), for a float32 product whose result is rounded
    to bfloat16 (tf32 matrix products and bf16 intermediates stay inside that rounding), with
    no gradient through it, L >= MIN_LENGTH, head width a multiple of CI and D a multiple of BC,
    and n splitting as N1 * N2."""
    if device_type != "cuda" or capability is None or capability[0] != 9 or not have_triton:
        return None
    if not ENABLED or dtype != torch.float32 or out_dtype != torch.bfloat16 or needs_grad:
        return None
    if L < MIN_LENGTH or channels % BC or (channels // heads) % CI:
        return None
    return split(n, L)


def wants_size(device: torch.device | str | None) -> bool:
    """Whether FFT sizes on this device should be chosen with `fft_size` (a Hopper GPU with Triton)."""
    if device is None or triton is None or not ENABLED:
        return False
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


# ---- host side --------------------------------------------------------------------------------

_TABLES: dict = {}
_KERNEL_LAYOUTS: dict = {}


def _tables(p: Plan, BK: int, BN1: int, device, tf32: bool) -> tuple[torch.Tensor, ...]:
    """Pass 1's forward column DFT (cos, -sin) as (R_pad, BN1) and pass 3's weighted inverse
    (w cos, w sin) as (BN1, R_pad), float32 (rounded to tf32 if `tf32`), zero outside rows < R
    and columns < rows_in."""
    key = (p, BK, BN1, str(device), tf32)
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    R_pad = -(-p.R // BK) * BK
    k1 = torch.arange(R_pad, dtype=torch.float64)[:, None]
    n1 = torch.arange(BN1, dtype=torch.float64)[None, :]
    idx = (k1 * n1) % p.N1
    ang = 2 * math.pi * idx / p.N1
    live = (k1 < p.R) & (n1 < p.rows_in)
    cf = torch.where(live, torch.cos(ang), 0.0)
    sf = torch.where(live, -torch.sin(ang), 0.0)
    w = torch.where((k1 == 0) | (k1 == p.N1 // 2), 1.0, 2.0)
    ci = torch.where(live, w * torch.cos(ang), 0.0).T
    si = torch.where(live, w * torch.sin(ang), 0.0).T
    out = tuple(t.to(device=device, dtype=torch.float32) for t in (cf, sf, ci, si))
    out = tuple((_round_tf32(t) if tf32 else t).contiguous() for t in out)
    _TABLES[key] = out
    return out


def _round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to the nearest tf32 (10 mantissa bits, ties away from zero): the tensor
    cores truncate the 13 low bits of a tf32 operand, a bias of -2^-11 relative per operand that
    would add up coherently over the DFT stages; a rounded operand passes exactly."""
    u = x.view(torch.int32)
    return ((u + 0x1000) & -0x2000).view(torch.float32)


def _kernel_layout(K: torch.Tensor, p: Plan) -> torch.Tensor:
    """K (H, n//2 + 1) complex, rfft layout -> (2, H, R, P, Q) float32 planes at the frequencies
    k1 + N1 (k2a + P k2b). Cached per K tensor object and version (the mixer's spectrum cache
    hands the same K to every no-grad call)."""
    key = id(K)
    hit = _KERNEL_LAYOUTS.get(key)
    if hit is not None and hit[0]() is K and hit[1] == K._version and hit[2] == p:
        return hit[3]
    n, H = p.n, K.shape[0]
    k1 = torch.arange(p.R, device=K.device)[:, None, None]
    k2a = torch.arange(p.P, device=K.device)[None, :, None]
    k2b = torch.arange(p.Q, device=K.device)[None, None, :]
    f = (k1 + p.N1 * (k2a + p.P * k2b)).reshape(-1)
    upper = f > n // 2
    Kc = K.to(torch.complex64)
    vals = Kc[:, torch.where(upper, n - f, f)]
    vals = torch.where(upper, vals.conj(), vals)
    out = torch.stack([vals.real, vals.imag]).reshape(2, H, p.R, p.P, p.Q).contiguous()
    if len(_KERNEL_LAYOUTS) > 16:
        _KERNEL_LAYOUTS.clear()
    _KERNEL_LAYOUTS[key] = (weakref.ref(K), K._version, p, out)
    return out


def fft_conv(v: torch.Tensor, g: torch.Tensor, K: torch.Tensor, p: Plan, *, out_dtype: torch.dtype,
             out: torch.Tensor | None = None, **options) -> torch.Tensor:
    """y = irfft(rfft(v, n) rfft(g, n) K_head, n)[:L] per channel on the GPU (see the module doc).

    v, g: (B, L, D) float (bf16 under autocast), last dimension contiguous; K: (H, n//2 + 1)
    complex with the 1/n folded in; p: `split(n, L)`. Returns (B, L, D) in out_dtype, written
    into `out` when given. options: see `passes`."""
    if out is None:
        out = torch.empty(v.shape, device=v.device, dtype=out_dtype)
    for _, launch, _ in passes(v, g, K, p, out, **options):
        launch()
    return out


def passes(v, g, K, p: Plan, out: torch.Tensor, *, store_dtype: torch.dtype = torch.bfloat16,
           precision: str = "tf32", block_k: int = 32, warps: tuple[int, int, int] | None = None,
           gauss: bool = False) -> list:
    """The kernel launches of fft_conv, in order, as (name, launch(), bytes it must move) triples
    (what benchmarks/fft_floor.py times one by one). store_dtype: the intermediates' dtype
    (torch.bfloat16 or torch.float32); precision: tl.dot's input_precision ("tf32", "tf32x3" or
    "ieee"); block_k: rows of the column DFT per matrix product; warps: per pass (default 4, 4 for
    N2 = 256 else 8, 4); gauss: the row
    pass's complex products as three real matrix products instead of four."""
    v, g = (t if t.stride(-1) == 1 else t.contiguous() for t in (v, g))
    B, L, D = v.shape
    H = K.shape[0]
    dh = D // H
    C = B * D
    Kl = _kernel_layout(K, p)
    BN1 = max(16, triton.next_power_of_2(p.rows_in))
    BK = block_k
    cf, sf, cinv, sinv = _tables(p, BK, BN1, v.device, precision == "tf32")
    BT = max(1, min(p.N2, (64 if BN1 >= 128 else 128) // BC))
    per_ch = p.R * p.N2
    chunk = max(BC, min(C, (PLANE_ELEMENTS // per_ch) // BC * BC))
    A = torch.empty((4, chunk * per_ch), device=v.device, dtype=store_dtype)
    T = torch.empty((2, chunk * per_ch), device=v.device, dtype=store_dtype)
    sz = A.element_size()
    warps = warps or (4, 4 if p.N2 <= 256 else 8, 4)
    steps = []
    for c0 in range(0, C, chunk):
        cc = min(chunk, C - c0)

        def columns(c0=c0, cc=cc):
            _columns_forward[(cc // BC, p.N2 // BT, 2)](
                v, g, A, cf, sf, L, D, c0, v.stride(0), v.stride(1), g.stride(0), g.stride(1),
                A.stride(0), p.R, N2=p.N2, CI=CI, BN1=BN1, BK=BK, BT=BT, BC=BC, PREC=precision,
                num_warps=warps[0])

        def rows(c0=c0, cc=cc):
            _rows[(p.R, cc // CI)](
                A, T, Kl, c0, D, dh, p.n, A.stride(0), T.stride(0), Kl.stride(0), Kl.stride(1), Kl.stride(2),
                P=p.P, Q=p.Q, CI=CI, PREC=precision, GAUSS=gauss, num_warps=warps[1])

        def inverse(c0=c0, cc=cc):
            _columns_inverse[(cc // BC, p.N2 // BT)](
                T, out, cinv, sinv, L, D, c0, T.stride(0), out.stride(0), out.stride(1), p.R, cinv.stride(0),
                N2=p.N2, CI=CI, BN1=BN1, BK=BK, BT=BT, BC=BC, PREC=precision, num_warps=warps[2])
        steps += [("columns", columns, cc * L * 2 * v.element_size() + 4 * cc * per_ch * sz),
                  ("rows", rows, 6 * cc * per_ch * sz),
                  ("inverse", inverse, 2 * cc * per_ch * sz + cc * L * out.element_size())]
    return steps


# ---- kernels ----------------------------------------------------------------------------------

if triton is not None:
    @triton.jit
    def _tile_index(pid_t, pid_c, BT: tl.constexpr, BC: tl.constexpr, CI: tl.constexpr):
        # column j of a (rows, BT * BC) tile -> (n2 offset in the tile, channel offset in the tile),
        # ordered (channel block, n2, channel in block) so that stores of CI channels x BT times are contiguous
        j = tl.arange(0, BT * BC)
        cb = j // (BT * CI)
        n2 = pid_t * BT + (j // CI) % BT
        cl = pid_c * BC + cb * CI + j % CI
        return n2, cl

    @triton.jit
    def _columns_forward(v_ptr, g_ptr, a_ptr, cf_ptr, sf_ptr, L, D, c0, svb, svt, sgb, sgt, s_plane, R,
                         N2: tl.constexpr, CI: tl.constexpr, BN1: tl.constexpr, BK: tl.constexpr,
                         BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
        # A[stream][cb][k1][n2][ci] = sum_n1 x[N2 n1 + n2] (cos - i sin)(2 pi n1 k1 / N1), k1 < R
        pid_c, pid_t, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        n2, cl = _tile_index(pid_t, pid_c, BT, BC, CI)
        c = (c0 + cl).to(tl.int64)
        b = c // D
        d = c % D
        n1 = tl.arange(0, BN1)
        t = n1[:, None] * N2 + n2[None, :]
        live = t < L
        if s == 0:
            x = tl.load(v_ptr + b[None, :] * svb + t.to(tl.int64) * svt + d[None, :], mask=live, other=0.0)
        else:
            x = tl.load(g_ptr + b[None, :] * sgb + t.to(tl.int64) * sgt + d[None, :], mask=live, other=0.0)
        x = x.to(tl.float32)
        out_re = a_ptr + (2 * s) * s_plane
        out_im = out_re + s_plane
        col = ((cl // CI) * R * N2 + n2) * CI + cl % CI  # plane offset of (k1 = 0, n2, channel)
        kk = tl.arange(0, BK)
        for k0 in range(0, R, BK):
            rows = k0 + kk
            tab = rows[:, None] * BN1 + n1[None, :]
            re = tl.dot(tl.load(cf_ptr + tab), x, input_precision=PREC)
            im = tl.dot(tl.load(sf_ptr + tab), x, input_precision=PREC)
            o = col[None, :] + rows[:, None] * (N2 * CI)
            m = (rows < R)[:, None]
            tl.store(out_re + o, re.to(a_ptr.dtype.element_ty), mask=m)
            tl.store(out_im + o, im.to(a_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _dft(n: tl.constexpr, inverse: tl.constexpr):
        # (n, n) DFT matrix exp(-+2 pi i j k / n) as (re, im)
        j = tl.arange(0, n)
        ang = ((j[:, None] * j[None, :]) % n).to(tl.float32) * (6.283185307179586 / n)
        if inverse:
            return tl.cos(ang), tl.sin(ang)
        return tl.cos(ang), -tl.sin(ang)

    @triton.jit
    def _tf32(x, PREC: tl.constexpr):
        # round to the nearest tf32 before a tf32 product (see _round_tf32)
        if PREC == "tf32":
            u = x.to(tl.uint32, bitcast=True)
            x = ((u + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)
        return x

    @triton.jit
    def _cdot(ar, ai, br, bi, PREC: tl.constexpr, GAUSS: tl.constexpr):
        # complex (ar + i ai) @ (br + i bi); GAUSS: three real products instead of four
        ar = _tf32(ar, PREC)
        ai = _tf32(ai, PREC)
        br = _tf32(br, PREC)
        bi = _tf32(bi, PREC)
        if GAUSS:
            t1 = tl.dot(ar + ai, br, input_precision=PREC)
            return (t1 - tl.dot(ai, br + bi, input_precision=PREC),
                    t1 + tl.dot(ar, bi - br, input_precision=PREC))
        return (tl.dot(ar, br, input_precision=PREC) - tl.dot(ai, bi, input_precision=PREC),
                tl.dot(ar, bi, input_precision=PREC) + tl.dot(ai, br, input_precision=PREC))

    @triton.jit
    def _row_forward(xr, xi, twr, twi, P: tl.constexpr, Q: tl.constexpr, CI: tl.constexpr, PREC: tl.constexpr,
                     GAUSS: tl.constexpr):
        # x (N2, CI), n2 = Q p + q -> X (P * CI, Q) at (k2a, ci, k2b): the length-N2 DFT of each column
        xr, xi = xr * twr - xi * twi, xr * twi + xi * twr
        xr = tl.reshape(tl.permute(tl.reshape(xr, (P, Q, CI)), (1, 2, 0)), (Q * CI, P))
        xi = tl.reshape(tl.permute(tl.reshape(xi, (P, Q, CI)), (1, 2, 0)), (Q * CI, P))
        fr, fi = _dft(P, False)
        yr, yi = _cdot(xr, xi, fr, fi, PREC, GAUSS)  # (q, ci, k2a)
        yr, yi = _twiddle_turn(yr, yi, Q, P, CI, False)  # (k2a, ci, q)
        fr, fi = _dft(Q, False)
        return _cdot(yr, yi, fr, fi, PREC, GAUSS)

    @triton.jit
    def _twiddle_turn(yr, yi, A: tl.constexpr, B: tl.constexpr, CI: tl.constexpr, inverse: tl.constexpr):
        # y (A * CI, B) at (a, ci, b) times exp(-+2 pi i a b / (A B)), returned as (B * CI, A) at (b, ci, a)
        a = tl.arange(0, A)
        b = tl.arange(0, B)
        ang = ((a[:, None] * b[None, :]) % (A * B)).to(tl.float32) * (6.283185307179586 / (A * B))
        wr = tl.reshape(tl.cos(ang), (A, 1, B))
        if inverse:
            wi = tl.reshape(tl.sin(ang), (A, 1, B))
        else:
            wi = tl.reshape(-tl.sin(ang), (A, 1, B))
        yr = tl.reshape(yr, (A, CI, B))
        yi = tl.reshape(yi, (A, CI, B))
        yr, yi = yr * wr - yi * wi, yr * wi + yi * wr
        return (tl.reshape(tl.permute(yr, (2, 1, 0)), (B * CI, A)),
                tl.reshape(tl.permute(yi, (2, 1, 0)), (B * CI, A)))

    @triton.jit
    def _rows(a_ptr, t_ptr, k_ptr, c0, D, dh, n, sa, st, sk0, sk1, sk2,
              P: tl.constexpr, Q: tl.constexpr, CI: tl.constexpr, PREC: tl.constexpr, GAUSS: tl.constexpr):
        # one row k1 of CI channels: T = conj(tw) * IDFT_N2(DFT_N2(tw * A_v) * DFT_N2(tw * A_g) * K)
        k1 = tl.program_id(0)
        cb = tl.program_id(1)
        R = tl.num_programs(0)
        N2: tl.constexpr = P * Q
        n2 = tl.arange(0, N2)
        off = (cb * R + k1) * (N2 * CI) + n2[:, None] * CI + tl.arange(0, CI)[None, :]
        ang = ((n2 * k1) % n).to(tl.float32) * (6.283185307179586 / n)
        twr = tl.cos(ang)[:, None]
        twi = -tl.sin(ang)[:, None]
        vr, vi = _row_forward(tl.load(a_ptr + off).to(tl.float32), tl.load(a_ptr + sa + off).to(tl.float32),
                              twr, twi, P, Q, CI, PREC, GAUSS)
        gr, gi = _row_forward(tl.load(a_ptr + 2 * sa + off).to(tl.float32),
                              tl.load(a_ptr + 3 * sa + off).to(tl.float32), twr, twi, P, Q, CI, PREC, GAUSS)
        h = ((c0 + cb * CI) % D) // dh
        ka = tl.arange(0, P)
        kb = tl.arange(0, Q)
        ko = h * sk1 + k1 * sk2 + ka[:, None] * Q + kb[None, :]
        kr = tl.reshape(tl.broadcast_to(tl.reshape(tl.load(k_ptr + ko), (P, 1, Q)), (P, CI, Q)), (P * CI, Q))
        ki = tl.reshape(tl.broadcast_to(tl.reshape(tl.load(k_ptr + sk0 + ko), (P, 1, Q)), (P, CI, Q)), (P * CI, Q))
        pr = vr * gr - vi * gi
        pi = vr * gi + vi * gr
        pr, pi = pr * kr - pi * ki, pr * ki + pi * kr  # (k2a, ci, k2b)
        # inverse: over k2b, conjugate twiddle, over k2a
        fr, fi = _dft(Q, True)
        yr, yi = _cdot(pr, pi, fr, fi, PREC, GAUSS)  # (k2a, ci, q)
        yr, yi = _twiddle_turn(yr, yi, P, Q, CI, True)  # (q, ci, k2a)
        fr, fi = _dft(P, True)
        zr, zi = _cdot(yr, yi, fr, fi, PREC, GAUSS)  # (q, ci, p)
        zr = tl.reshape(tl.permute(tl.reshape(zr, (Q, CI, P)), (2, 0, 1)), (N2, CI))
        zi = tl.reshape(tl.permute(tl.reshape(zi, (Q, CI, P)), (2, 0, 1)), (N2, CI))
        zr, zi = zr * twr + zi * twi, zi * twr - zr * twi  # times conj(tw)
        tl.store(t_ptr + off, zr.to(t_ptr.dtype.element_ty))
        tl.store(t_ptr + st + off, zi.to(t_ptr.dtype.element_ty))

    @triton.jit
    def _columns_inverse(t_ptr, y_ptr, ci_ptr, si_ptr, L, D, c0, st, syb, syt, R, s_tab,
                         N2: tl.constexpr, CI: tl.constexpr, BN1: tl.constexpr, BK: tl.constexpr,
                         BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
        # y[N2 n1 + n2] = sum_k1 (Tr w cos - Ti w sin)(2 pi n1 k1 / N1), for N2 n1 + n2 < L
        pid_c, pid_t = tl.program_id(0), tl.program_id(1)
        n2, cl = _tile_index(pid_t, pid_c, BT, BC, CI)
        col = ((cl // CI) * R * N2 + n2) * CI + cl % CI
        n1 = tl.arange(0, BN1)
        kk = tl.arange(0, BK)
        acc = tl.zeros((BN1, BT * BC), dtype=tl.float32)
        for k0 in range(0, R, BK):
            rows = k0 + kk
            o = col[None, :] + rows[:, None] * (N2 * CI)
            m = (rows < R)[:, None]
            tr = tl.load(t_ptr + o, mask=m, other=0.0).to(tl.float32)
            ti = tl.load(t_ptr + st + o, mask=m, other=0.0).to(tl.float32)
            tab = n1[:, None] * s_tab + rows[None, :]
            acc += tl.dot(tl.load(ci_ptr + tab), tr, input_precision=PREC)
            acc -= tl.dot(tl.load(si_ptr + tab), ti, input_precision=PREC)
        c = (c0 + cl).to(tl.int64)
        b = c // D
        d = c % D
        t = n1[:, None] * N2 + n2[None, :]
        tl.store(y_ptr + b[None, :] * syb + t.to(tl.int64) * syt + d[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=t < L)
