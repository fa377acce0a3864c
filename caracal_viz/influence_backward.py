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

Matrix products can run as sums of bfloat16 products with float32 accumulation ("bf16x3": each
operand split into a high and a low bfloat16 part, the three largest cross products kept;
"bf16x6": three parts each, six products), which runs them on the GPU's tensor cores at close to
float32 accuracy; "fp32" is the plain product in the working dtype. The error of each choice
against the float32 autograd map is measured by `benchmarks/influence_probe.py` (BENCHMARKS.md
question 4); tests/test_influence_backward.py checks the path against plain autograd.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from models.mhf import MultiHeadFourier

GEMM_MODES = ("fp32", "bf16x3", "bf16x6")
# (operand piece of W, operand piece of X) kept per mode: pieces a, b with a + b < pieces
_PAIRS = {"bf16x3": (2, ((0, 0), (0, 1), (1, 0))),
          "bf16x6": (3, ((0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)))}


def supported(model, start: int) -> bool:
    """Whether the hand-written backward covers `model` from block `start` on: every such block
    an MHF mixer, the model in eval mode (no dropout to replay)."""
    return (not model.training and len(model.blocks) > start
            and all(isinstance(b.mixer, MultiHeadFourier) for b in model.blocks[start:]))


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
    """Matrix products M @ X for a fixed M (out, in) and X (in, N), in one of GEMM_MODES.
    M's bfloat16 pieces are made once; X's per call (one product with the pieces stacked along
    the inner dimension, so the kept cross products are summed by the tensor cores' float32
    accumulator)."""

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


class _LayerNorm:
    """A LayerNorm's saved forward (normalised input x_hat (D, L), 1/std (L,), weight (D,)) and
    its backward in the channel-major layout."""

    def __init__(self, ln: torch.nn.LayerNorm, x: torch.Tensor, dtype: torch.dtype):
        x = x.to(dtype)  # (L, D)
        mu = x.mean(-1, keepdim=True)
        self.rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)  # (L, 1)
        xhat = (x - mu) * self.rstd
        self.out = xhat * ln.weight.to(dtype) + ln.bias.to(dtype)  # (L, D): the forward's output
        self.xhat = xhat.T.contiguous()  # (D, L)
        self.rstd = self.rstd[:, 0].contiguous()
        self.weight = ln.weight.to(dtype)[:, None, None]

    def backward(self, dy: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangent of the output -> of the input (positions 0..P-1)."""
        P = dy.shape[-1]
        g = dy * self.weight
        xh = self.xhat[:, None, :P]
        return self.rstd[:P] * (g - g.mean(0) - xh * (g * xh).mean(0))


class _Block:
    """One pre-norm block with an MHF mixer: its per-position factors from the forward over the
    text, its weights as GEMM operators, and the backward of a chunk of cotangents."""

    def __init__(self, block, x: torch.Tensor, dtype: torch.dtype, mode: str):
        mixer: MultiHeadFourier = block.mixer
        L, D = x.shape
        H, dh = mixer.n_heads, mixer.head_dim
        self.H, self.dh = H, dh
        self.ln1 = _LayerNorm(block.ln1, x, dtype)
        a1 = self.ln1.out
        w = mixer.conv_weight[:, 0].to(dtype)  # (D, 3): u_t = w0 a_{t-2} + w1 a_{t-1} + w2 a_t + b
        self.conv = [w[:, i][:, None, None] for i in range(3)]
        c = mixer.local_conv(a1[None])[0]
        self.lnm = _LayerNorm(mixer.ln, c, dtype)
        u = self.lnm.out
        v = F.linear(u, mixer.w_v.weight.to(dtype), mixer.w_v.bias.to(dtype))  # (L, D)
        pre = F.linear(u, mixer.w_g1.weight.to(dtype), mixer.w_g1.bias.to(dtype))
        sig = torch.sigmoid(pre)
        self.dsilu = (sig * (1 + pre * (1 - sig))).T.contiguous()  # (D, L) SiLU'(pre)
        self.g2 = mixer.g2_weight.to(dtype)  # (H, dh, dh): g_e = sum_d s_d g2[h, d, e] (models.mhf gate)
        g = torch.einsum("lhd,hde->lhe", (pre * sig).view(L, H, dh), self.g2).flatten(-2) + mixer.g2_bias.to(dtype)
        # the product's spectra: y = irfft(rfft(v) rfft(g) rfft(k)), so dv = irfft(DY conj(G K)),
        # dg = irfft(DY conj(V K)) (exact adjoints of the forward's circular product at size n)
        self.n = n = mixer.fft_size(L)
        k_buf, _ = mixer.kernel_buffer(L, n)
        K = mixer._per_channel(torch.fft.rfft(k_buf.to(dtype), n=n, dim=-1))  # (F, D)
        Vs, Gs = torch.fft.rfft(v, n=n, dim=0), torch.fft.rfft(g, n=n, dim=0)  # (F, D)
        self.gk = torch.conj_physical(Gs * K).T.contiguous()[:, None, :]  # (D, 1, F)
        self.vk = torch.conj_physical(Vs * K).T.contiguous()[:, None, :]
        y = torch.fft.irfft(Vs * Gs * K, n=n, dim=0)[:L]
        self.w_o = mixer.w_o.weight.to(dtype)  # (D, D)
        self.mix_in = _Gemm(torch.cat([mixer.w_v.weight, mixer.w_g1.weight], 0).T.to(dtype).contiguous(), mode)
        self.mix_out = _Gemm(self.w_o.T.contiguous(), mode)
        mid = x.to(dtype) + F.linear(y, self.w_o, mixer.w_o.bias.to(dtype))
        self.ln2 = _LayerNorm(block.ln2, mid, dtype)
        h = F.linear(self.ln2.out, block.mlp.fc.weight.to(dtype), block.mlp.fc.bias.to(dtype))  # (L, 4D)
        cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
        self.dgelu = (cdf + h * torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)).T.contiguous()  # (4D, L)
        self.fc_back = _Gemm(block.mlp.fc.weight.T.to(dtype).contiguous(), mode)  # (D, 4D)
        self.out_back = _Gemm(block.mlp.w_o.weight.T.to(dtype).contiguous(), mode)  # (4D, D)
        self.output = mid + F.linear(F.gelu(h), block.mlp.w_o.weight.to(dtype), block.mlp.w_o.bias.to(dtype))

    @staticmethod
    def _mm(op: _Gemm, x: torch.Tensor) -> torch.Tensor:
        d, r, p = x.shape
        return op(x.reshape(d, r * p)).view(-1, r, p)

    def mlp_backward(self, dout: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangent of the block's output -> of the mid stream (residual + MLP branch)."""
        z = self._mm(self.out_back, dout) * self.dgelu[:, None, :dout.shape[-1]]
        return dout + self.ln2.backward(self._mm(self.fc_back, z))

    def mixer_backward(self, dmid: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangents of the mid stream and of the mixer's FFT output y (before Linear_O)
        -> of the block's input."""
        D, R, P = dy.shape
        spec = torch.fft.rfft(dy, n=self.n, dim=-1)  # (D, R, F)
        dv = torch.fft.irfft(spec * self.gk, n=self.n, dim=-1)[..., :P]
        dg = torch.fft.irfft(spec * self.vk, n=self.n, dim=-1)[..., :P]
        ds = torch.matmul(self.g2, dg.reshape(self.H, self.dh, R * P)).view(D, R, P) * self.dsilu[:, None, :P]
        du = self._mm(self.mix_in, torch.cat([dv, ds], 0))
        dc = self.lnm.backward(du)
        w0, w1, w2 = self.conv
        da = dc * w2
        da[..., :-1] += dc[..., 1:] * w1
        da[..., :-2] += dc[..., 2:] * w0
        return dmid + self.ln1.backward(da)

    def backward(self, dout: torch.Tensor) -> torch.Tensor:
        """(D, R, P) cotangent of the block's output -> of its input."""
        dmid = self.mlp_backward(dout)
        return self.mixer_backward(dmid, self._mm(self.mix_out, dmid))


@torch.no_grad()
def gradient_norms(model, ids: torch.Tensor, start: int, chunk: int, causal: bool, *,
                   dtype: torch.dtype = torch.float32, gemm: str = "fp32") -> np.ndarray:
    """(L-1, L) float64 || d log p(ids[i+1] | ids[:i+1]) / d x^(start)_j ||_2 (natural log), the
    same array as influence._gradient_norms for a model `supported` from block `start`.

    chunk: rows per pass; causal: the model's config is causal, so rows [s, s+chunk) read the
    first s+chunk positions only (entries past that are exactly 0); dtype: float32 or float64 for
    every step (float64 for tests); gemm: one of GEMM_MODES for the chunks' matrix products (the
    text's own forward and the position-wise top run in `dtype` regardless)."""
    if gemm not in GEMM_MODES:
        raise ValueError(f"gemm must be one of {', '.join(GEMM_MODES)}, got {gemm!r}")
    L = ids.shape[0]
    dev = ids.device
    on_gpu = dev.type == "cuda"
    x = model(ids[None], stop_at_layer=start)[0]  # (L, D): the residual stream entering block `start`
    blocks = []
    for block in model.blocks[start:]:
        blocks.append(_Block(block, x, dtype, gemm))
        x = blocks[-1].output
    # the position-wise top, for every row at once: log p's gradient at its own position through
    # the head (tied embedding, no bias) and ln_f, then the last block's MLP and Linear_O
    lnf = _LayerNorm(model.ln_f, x, dtype)
    wemb = model.head.weight.to(dtype)  # (256, D)
    p = torch.softmax(lnf.out[:-1] @ wemb.T, dim=-1)  # (L-1, 256)
    q = wemb[ids[1:]] - p @ wemb  # (L-1, D): d log p_i / d (ln_f output)_i
    top = lnf.backward(q.T.contiguous()[:, None, :])[:, 0]  # (D, L-1), column i at position i
    last = blocks[-1]
    dmid_top = last.mlp_backward(top[:, None])[:, 0]  # (D, L-1)
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
