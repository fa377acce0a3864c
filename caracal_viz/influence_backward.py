"""The influence map's backward pass written out by hand, for models whose blocks (from the
differentiated layer on) are all MHF mixers: the fast path of `influence.token_influence`.

The map needs one backward pass per output row i (the gradient of log p(x_{i+1}) with respect to
every input position). Autograd under vmap runs them correctly but spends most of its time
moving memory (the FFT backward's layout transposes, unfused LayerNorm backwards; BENCHMARKS.md
question 4). Here the same vector-Jacobian products are written out for a chunk of R rows at a
time, in a channel-major layout (D, R, P) where P is the number of positions the chunk reads:

- every linear layer's backward is one matrix product W^T (D_in, D_out) @ (D_out, R*P);
- the MHF's FFT correlations run along the last, contiguous axis, against the spectra of the
  text's own g*k and v*k, computed once per text and shared by every chunk;
- every per-position factor (LayerNorm's normalised input and 1/std, GELU'(h), SiLU'(a)) is
  computed once by a forward pass over the whole text and broadcast over the rows;
- the last block's MLP, its output projection and the final LayerNorm/head are position-wise, so
  their backward is computed once for all rows on (L, D) and only then scattered into the chunk;
- a causal model's chunk of rows [s, s+R) reads the first s+R positions only (its prefix), so the
  work is ~L^2/2 row-positions instead of L^2.

Two backends compute the same steps: torch operations (any device, the reference) and, on a
CUDA device in float32, Triton kernels (caracal_viz/influence_triton.py: each matrix product
reads its strided input in place and applies GELU'/SiLU' as it writes; each LayerNorm backward,
with the local conv's adjoint and the residual, is one pass). Matrix products run in "fp32"
(the working dtype; the default everywhere), or for measurement as sums of bfloat16 products
with float32 accumulation ("bf16x3", "bf16x6") or, in Triton, "tf32" / "tf32x3". On the H200 at
4,096 bytes (BENCHMARKS.md question 4, `benchmarks/influence_probe.py`) the Triton path in fp32
took 1.62 s for caracal-shakespeare against 3.69 s for autograd, its map within 3.3e-4 of the
float32 autograd map's scale; tests/test_influence_backward.py checks it against plain autograd.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from models.fourier import grid_fft_size
from models.mhf import MultiHeadFourier

GEMM_MODES = ("fp32", "bf16x3", "bf16x6", "tf32", "tf32x3")
# the modes Triton's dot runs in-kernel (CUDA only): TF32 once, or TF32 split into three products
TRITON_MODES = {"tf32": "tf32", "tf32x3": "tf32x3", "fp32": "ieee"}
# (operand piece of W, operand piece of X) kept per bfloat16 mode: pieces a, b with a + b < pieces
_PAIRS = {"bf16x3": (2, ((0, 0), (0, 1), (1, 0))),
          "bf16x6": (3, ((0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)))}


def supported(model, start: int) -> bool:
    """Whether the hand-written backward covers `model` from block `start` on: every such block
    an MHF mixer, the model in eval mode (no dropout to replay)."""
    return (not model.training and len(model.blocks) > start
            and all(isinstance(b.mixer, MultiHeadFourier) for b in model.blocks[start:]))


def _have_triton() -> bool:
    try:
        import triton  # noqa: F401  (ships with CUDA builds of torch)
    except ImportError:
        return False
    return True


def _pieces(x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """k bfloat16 tensors whose float sum is x to ~2^-(8k+1) relative (each the rounding of the
    remainder the previous ones leave)."""
    out, rest = [], x
    for i in range(k):
        p = rest.to(torch.bfloat16)
        out.append(p)
        if i + 1 < k:
            rest = rest - p.to(rest.dtype)
    return out


class _Gemm:
    """Matrix products M @ X for a fixed M (out, in) and X (in, N) in "fp32" (the working dtype)
    or a bfloat16 mode of _PAIRS. M's bfloat16 pieces are made once; X's per call (one product
    with the pieces stacked along the inner dimension, so the kept cross products are summed by
    the tensor cores' float32 accumulator)."""

    def __init__(self, m: torch.Tensor, mode: str):
        self.m, self.mode = m, mode
        if mode != "fp32":
            k, pairs = _PAIRS[mode]
            pm = _pieces(m.float(), k)
            self.pairs, self.k = pairs, k
            self.mcat = torch.cat([pm[a] for a, _ in pairs], dim=1).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fp32":
            return self.m @ x
        px = _pieces(x, self.k)
        xcat = torch.cat([px[b] for _, b in self.pairs], dim=0)
        if x.device.type != "cuda":  # the same sums of bfloat16 products, exactly, where mm has no out_dtype
            return self.mcat.float() @ xcat.float()
        return torch.mm(self.mcat, xcat, out_dtype=torch.float32)


class _TorchOps:
    """The backward's two primitives in torch operations (any device; the reference)."""

    def __init__(self, mode: str):
        self.mode = mode
        self._ops: dict = {}  # the matrices' bfloat16 pieces, made once per call of gradient_norms

    def gemm(self, m: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | None = None,
             x2: torch.Tensor | None = None) -> torch.Tensor:
        """m (M, K) @ x over the channel axis of x (K, R, P) -> (M, R, P); with x2 (K2, R, P), m is
        (M, K + K2) and multiplies x and x2 stacked; times scale (M, >= P) broadcast over R."""
        _, r, p = x.shape
        if x2 is not None:
            x = torch.cat([x, x2], 0)
        key = (m.data_ptr(), tuple(m.shape))
        if key not in self._ops:
            self._ops[key] = _Gemm(m, self.mode)
        out = self._ops[key](x.reshape(x.shape[0], r * p)).view(-1, r, p)
        return out if scale is None else out * scale[:, None, :p]

    def ln_back(self, ln: _LayerNorm, dy: torch.Tensor, conv: torch.Tensor | None = None,
                res: torch.Tensor | None = None) -> torch.Tensor:
        """LayerNorm backward of dy (D, R, P), first through the local conv's adjoint when conv
        (D, 3) is given (a_t = w2 c_t + w1 c_{t+1} + w0 c_{t+2}), plus res."""
        if conv is not None:
            w = conv[:, :, None, None]
            da = dy * w[:, 2]
            da[..., :-1] += dy[..., 1:] * w[:, 1]
            da[..., :-2] += dy[..., 2:] * w[:, 0]
            dy = da
        out = ln.backward(dy)
        return out if res is None else out + res


class _LayerNorm:
    """A LayerNorm's saved forward (normalised input x_hat (D, L), 1/std (L,), weight (D,)) and
    its backward in the channel-major layout."""

    def __init__(self, ln: torch.nn.LayerNorm, x: torch.Tensor, dtype: torch.dtype):
        x = x.to(dtype)  # (L, D)
        mu = x.mean(-1, keepdim=True)
        rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)  # (L, 1)
        xhat = (x - mu) * rstd
        self.out = xhat * ln.weight.to(dtype) + ln.bias.to(dtype)  # (L, D): the forward's output
        self.xhat = xhat.T.contiguous()  # (D, L)
        self.rstd = rstd[:, 0].contiguous()
        self.w = ln.weight.to(dtype).contiguous()

    def backward(self, dy: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangent of the output -> of the input (positions 0..P-1)."""
        P = dy.shape[-1]
        g = dy * self.w[:, None, None]
        xh = self.xhat[:, None, :P]
        return self.rstd[:P] * (g - g.mean(0) - xh * (g * xh).mean(0))


class _Block:
    """One pre-norm block with an MHF mixer: its per-position factors from the forward over the
    text, its weights as matrix operators, and the backward of a chunk of cotangents."""

    def __init__(self, block, x: torch.Tensor, dtype: torch.dtype, ops, prefix: bool):
        """x (L, D): the stream entering the block; ops: _TorchOps or influence_triton.TritonOps;
        prefix: chunks read only their prefix (a causal model, every block in mode \"pad\")."""
        mixer: MultiHeadFourier = block.mixer
        L, D = x.shape
        H, dh = mixer.n_heads, mixer.head_dim
        self.ops = ops
        self.ln1 = _LayerNorm(block.ln1, x, dtype)
        self.conv = mixer.conv_weight[:, 0].to(dtype).contiguous()  # (D, 3): u_t = w0 a_{t-2} + w1 a_{t-1} + w2 a_t + b
        c = mixer.local_conv(self.ln1.out[None])[0]
        self.lnm = _LayerNorm(mixer.ln, c, dtype)
        u = self.lnm.out
        v = F.linear(u, mixer.w_v.weight.to(dtype), mixer.w_v.bias.to(dtype))  # (L, D)
        pre = F.linear(u, mixer.w_g1.weight.to(dtype), mixer.w_g1.bias.to(dtype))
        sig = torch.sigmoid(pre)
        self.dsilu = (sig * (1 + pre * (1 - sig))).T.contiguous()  # (D, L) SiLU'(pre)
        g2 = mixer.g2_weight.to(dtype)  # (H, dh, dh): g_e = sum_d s_d g2[h, d, e] (models.mhf gate)
        g = torch.einsum("lhd,hde->lhe", (pre * sig).view(L, H, dh), g2).flatten(-2) + mixer.g2_bias.to(dtype)
        self.gate_back = torch.block_diag(*g2).contiguous()  # (D, D): ds = blockdiag(g2) dg
        # y = irfft(rfft(v) rfft(g) rfft(k)) at size n: dv = corr(dy, g * k), dg = corr(dy, v * k),
        # the exact adjoints of the forward's circular product
        n = mixer.fft_size(L)
        k_buf, _ = mixer.kernel_buffer(L, n)
        K = mixer._per_channel(torch.fft.rfft(k_buf.to(dtype), n=n, dim=-1))  # (F, D)
        Vs, Gs = torch.fft.rfft(v, n=n, dim=0), torch.fft.rfft(g, n=n, dim=0)  # (F, D)
        y = torch.fft.irfft(Vs * Gs * K, n=n, dim=0)[:L]
        self.prefix = prefix
        if prefix:
            # causal ("pad"): a chunk reading positions 0..P-1 needs the lags 0..P-1 of g * k and
            # v * k only, so it correlates at a grid size >= 2P - 1 instead of n (`_spectra`)
            self.hg = torch.fft.irfft(Gs * K, n=n, dim=0)[:L].T.contiguous()  # (D, L)
            self.hv = torch.fft.irfft(Vs * K, n=n, dim=0)[:L].T.contiguous()
            self._cache = {}
        else:
            self.n = n
            self.spectra = (torch.conj_physical(Gs * K).T.contiguous()[:, None, :],  # (D, 1, F)
                            torch.conj_physical(Vs * K).T.contiguous()[:, None, :])
        self.w_o = mixer.w_o.weight.to(dtype)  # (D, D)
        self.mix_out = self.w_o.T.contiguous()
        self.mix_in = torch.cat([mixer.w_v.weight, mixer.w_g1.weight], 0).T.to(dtype).contiguous()  # (D, 2D)
        mid = x.to(dtype) + F.linear(y, self.w_o, mixer.w_o.bias.to(dtype))
        self.ln2 = _LayerNorm(block.ln2, mid, dtype)
        h = F.linear(self.ln2.out, block.mlp.fc.weight.to(dtype), block.mlp.fc.bias.to(dtype))  # (L, 4D)
        cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
        self.dgelu = (cdf + h * torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)).T.contiguous()  # (4D, L)
        self.fc_back = block.mlp.fc.weight.to(dtype).T.contiguous()  # (D, 4D)
        self.out_back = block.mlp.w_o.weight.to(dtype).T.contiguous()  # (4D, D)
        self.output = mid + F.linear(F.gelu(h), block.mlp.w_o.weight.to(dtype), block.mlp.w_o.bias.to(dtype))

    def _spectra(self, P: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(FFT size, conj spectrum of g * k, of v * k (D, 1, F)) for a chunk reading P positions."""
        if not self.prefix:
            return (self.n, *self.spectra)
        if P not in self._cache:
            n = grid_fft_size(2 * P - 1)
            self._cache[P] = (n, *(torch.conj_physical(torch.fft.rfft(h[:, :P], n=n, dim=-1))[:, None, :]
                                   for h in (self.hg, self.hv)))
        return self._cache[P]

    def mlp_backward(self, dout: torch.Tensor, ops=None) -> torch.Tensor:
        """(D, R, P) cotangent of the block's output -> of the mid stream (residual + MLP branch)."""
        ops = ops or self.ops
        z = ops.gemm(self.out_back, dout, scale=self.dgelu)
        return ops.ln_back(self.ln2, ops.gemm(self.fc_back, z), res=dout)

    def mixer_backward(self, dmid: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangents of the mid stream and of the mixer's FFT output y (before Linear_O)
        -> of the block's input."""
        P = dy.shape[-1]
        n, gk, vk = self._spectra(P)
        spec = torch.fft.rfft(dy, n=n, dim=-1)  # (D, R, F)
        dv = torch.fft.irfft(spec * gk, n=n, dim=-1)[..., :P]
        dg = torch.fft.irfft(spec * vk, n=n, dim=-1)[..., :P]
        ds = self.ops.gemm(self.gate_back, dg, scale=self.dsilu)
        du = self.ops.gemm(self.mix_in, dv, x2=ds)
        dc = self.ops.ln_back(self.lnm, du)
        return self.ops.ln_back(self.ln1, dc, conv=self.conv, res=dmid)

    def backward(self, dout: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangent of the block's output -> of its input."""
        dmid = self.mlp_backward(dout)
        return self.mixer_backward(dmid, self.ops.gemm(self.mix_out, dmid))


@torch.no_grad()
def gradient_norms(model, ids: torch.Tensor, start: int, chunk: int, causal: bool, *,
                   dtype: torch.dtype = torch.float32, gemm: str = "fp32", backend: str = "auto") -> np.ndarray:
    """(L-1, L) float64 || d log p(ids[i+1] | ids[:i+1]) / d x^(start)_j ||_2 (natural log), the
    same array as influence._gradient_norms for a model `supported` from block `start`.

    chunk: rows per pass; causal: the model's config is causal, so rows [s, s+chunk) read the
    first s+chunk positions only (entries past that are exactly 0); dtype: float32 or float64 for
    every step (float64 for tests); gemm: one of GEMM_MODES for the chunks' matrix products (the
    text's own forward and the position-wise top run in `dtype` regardless; "tf32" and "tf32x3"
    in Triton only); backend: "torch" (any device), "triton" (CUDA, float32: the chunks' matrix
    products and LayerNorm backwards as fused kernels, caracal_viz/influence_triton.py) or
    "auto" (Triton where it can run)."""
    if gemm not in GEMM_MODES:
        raise ValueError(f"gemm must be one of {', '.join(GEMM_MODES)}, got {gemm!r}")
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    L = ids.shape[0]
    dev = ids.device
    on_gpu = dev.type == "cuda"
    x = model(ids[None], stop_at_layer=start)[0]  # (L, D): the residual stream entering block `start`
    if backend == "auto":
        backend = "triton" if on_gpu and dtype == torch.float32 and _have_triton() else "torch"
    if backend == "triton":
        from .influence_triton import TritonOps
        ops = TritonOps(gemm)
    elif gemm in TRITON_MODES and gemm != "fp32":
        raise ValueError(f"gemm {gemm!r} runs in Triton's dot: on a CUDA device, in float32, backend 'triton'")
    else:
        ops = _TorchOps(gemm)
    prefix = causal and all(b.mixer.cfg.causal_mode == "pad" for b in model.blocks[start:])
    blocks = []
    for block in model.blocks[start:]:
        blocks.append(_Block(block, x, dtype, ops, prefix))
        x = blocks[-1].output
    # the position-wise top, for every row at once: log p's gradient at its own position through
    # the head (tied embedding, no bias) and ln_f, then the last block's MLP and Linear_O
    lnf = _LayerNorm(model.ln_f, x, dtype)
    wemb = model.head.weight.to(dtype)  # (256, D)
    p = torch.softmax(lnf.out[:-1] @ wemb.T, dim=-1)  # (L-1, 256)
    q = wemb[ids[1:]] - p @ wemb  # (L-1, D): d log p_i / d (ln_f output)_i
    top = lnf.backward(q.T.contiguous()[:, None, :])[:, 0]  # (D, L-1), column i at position i
    last = blocks[-1]
    dmid_top = last.mlp_backward(top[:, None], _TorchOps("fp32"))[:, 0]  # (D, L-1), in `dtype`
    dy_top = (last.w_o.T @ dmid_top)  # (D, L-1)
    rows = L - 1
    chunk = max(1, min(chunk, rows))
    out = np.zeros((rows, L))
    for s in range(0, rows, chunk):
        n_rows = min(chunk, rows - s)
        R = chunk if on_gpu else n_rows  # one FFT plan per text on the GPU: the last chunk padded
        P = min(s + n_rows, rows) if causal else L
        idx = torch.arange(s, s + n_rows, device=dev)
        dmid = torch.zeros(top.shape[0], R, P, device=dev, dtype=dtype)
        dy = torch.zeros_like(dmid)
        r = torch.arange(n_rows, device=dev)
        dmid[:, r, idx] = dmid_top[:, idx]
        dy[:, r, idx] = dy_top[:, idx]
        grad = last.mixer_backward(dmid, dy)
        for block in reversed(blocks[:-1]):
            grad = block.backward(grad)
        out[s:s + n_rows, :P] = torch.linalg.vector_norm(grad[:, :n_rows], dim=0).double().cpu().numpy()
    return out
