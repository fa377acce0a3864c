"""Fast incremental decoding for causal MHF language models: a static decoding state, fused
steps and, on CUDA, the whole step (sampling included) as one CUDA graph.

`ByteLM.step` with `MultiHeadFourier.step` is the readable reference; this file computes the same
thing (float32 throughout, as the reference step does) with fewer, larger operations:

- the state is preallocated for a capacity T of positions, channel-major (B, D, T), so a step
  writes one column and reads fixed-size windows: no buffer grows, nothing is allocated;
- Linear_V and Linear_G1 are one matrix product; Conv_G2 is one batched product over heads;
- the two causal dot products of a step are each one batched product over channels:
      h_t = sum_c g_{t-C+1+c} k_{C-1-c}      (G holds C-1 leading zeros, so the window is fixed)
      y_t = sum_j v_j h_{t-j}                 (H holds h_s at index T-1-s, zeros after T-1)
- sampling is inverse-CDF sampling of a uniform draw u from the caller's CPU generator
  (`sample_tokens`), so the same seed gives the same bytes on the CPU and the GPU, and on CUDA it
  runs inside the graph; the host reads each byte a step behind the GPU, which runs ahead.

Only models whose every block is an MHF mixer in causal_mode "pad" decode here (`supports`);
`ByteLM.generate_stream` falls back to the reference step for the others.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from . import hooks as _hooks
from .mhf import MultiHeadFourier

_ROUND = 256  # capacities are rounded up to this, so CUDA graphs are reused across calls
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> StaticDecoder (CUDA)
_CACHE_LOCK = threading.Lock()


def supports(model) -> bool:
    """Whether `model` (a ByteLM) decodes on this fast path: every block an MHF mixer, causal_mode "pad"."""
    return all(isinstance(b.mixer, MultiHeadFourier) and b.mixer.cfg.causal_mode == "pad" for b in model.blocks)


def sample_tokens(logits: torch.Tensor, u: torch.Tensor, inv_temp: torch.Tensor, top_k: torch.Tensor,
                  greedy: torch.Tensor) -> torch.Tensor:
    """Next tokens (B,) int64 from logits (B, V): argmax where `greedy`, else the inverse CDF of
    softmax(logits * inv_temp) restricted to the top_k largest logits, at the uniform draws u (B,)
    in [0, 1). inv_temp, top_k (1..V) and greedy are 0-d tensors on the logits' device (so one
    CUDA graph serves every setting). Ties at the k-th logit are all kept."""
    z = logits.float() * inv_temp
    kth = torch.sort(z, dim=-1, descending=True).values.gather(-1, (top_k - 1).expand(z.shape[0], 1))
    p = torch.softmax(z.masked_fill(z < kth, float("-inf")), dim=-1)
    cdf = torch.cumsum(p, dim=-1)
    pick = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1])[:, None], right=True)[:, 0]
    pick = pick.clamp_(max=logits.shape[-1] - 1)
    return torch.where(greedy, logits.argmax(-1), pick)


def sampling_params(temperature: float, top_k: int | None, vocab: int, device) -> tuple[torch.Tensor, ...]:
    """(inv_temp, top_k, greedy) 0-d tensors for `sample_tokens`."""
    greedy = temperature <= 0
    return (torch.tensor(0.0 if greedy else 1.0 / temperature, device=device),
            torch.tensor(min(top_k or vocab, vocab), device=device, dtype=torch.int64),
            torch.tensor(greedy, device=device))


class _Layer:
    """One block's weights, laid out for the step, and its static state."""

    def __init__(self, block, T: int, B: int):
        m = block.mixer
        D, H, dh, C = m.cfg.d_model, m.n_heads, m.head_dim, m.context
        f32 = dict(dtype=torch.float32)
        self.D, self.H, self.dh, self.C = D, H, dh, C
        self.ln1 = (block.ln1.weight.detach().float(), block.ln1.bias.detach().float(), block.ln1.eps)
        self.ln = (m.ln.weight.detach().float(), m.ln.bias.detach().float(), m.ln.eps)
        self.ln2 = (block.ln2.weight.detach().float(), block.ln2.bias.detach().float(), block.ln2.eps)
        w = m.conv_weight.detach()[:, 0].float()  # (D, 3): taps on a_{t-2}, a_{t-1}, a_t
        self.conv_w = [w[:, i].contiguous() for i in range(3)]
        self.conv_b = m.conv_bias.detach().float()
        self.vg_wT = torch.cat([m.w_v.weight, m.w_g1.weight]).detach().float().T.contiguous()  # (D, 2D)
        self.vg_b = torch.cat([m.w_v.bias, m.w_g1.bias]).detach().float()
        # Conv_G2 as one (D, D) block-diagonal product: cheaper than a batched product over heads
        self.g2_T = torch.block_diag(*m.g2_weight.detach().float())  # [h*dh + d, h*dh + e] = g2[h, d, e]
        self.g2_b = m.g2_bias.detach().float()
        self.o_wT, self.o_b = m.w_o.weight.detach().float().T.contiguous(), m.w_o.bias.detach().float()
        self.fc_wT, self.fc_b = block.mlp.fc.weight.detach().float().T.contiguous(), block.mlp.fc.bias.detach().float()
        self.mo_wT, self.mo_b = block.mlp.w_o.weight.detach().float().T.contiguous(), block.mlp.w_o.bias.detach().float()
        self.filtered = m.cfg.spectral_filter
        dev = self.conv_b.device
        if self.filtered:
            with torch.no_grad():
                k = m.causal_kernel().float()  # (H, C), by lag
            self.k_rev = k.flip(-1).repeat_interleave(dh, 0).contiguous()  # (D, C): column c is lag C-1-c
        # the local conv's partial sums for the coming steps (no history to shift):
        #   s1 = w1 a_{t-1} + w0 a_{t-2} + b  (all of u_t but w2 a_t),  s0 = w0 a_{t-1} + b
        self.s1 = torch.zeros(B, D, device=dev, **f32)
        self.s0 = torch.zeros(B, D, device=dev, **f32)
        self.V = torch.zeros(B, D, T, device=dev, **f32)  # v_j at column j
        self.G = torch.zeros(B, D, T + C - 1, device=dev, **f32)  # g_i at column C-1+i
        self.Hr = torch.zeros(B, D, 2 * T, device=dev, **f32)  # h_s at column T-1-s; zeros past T-1
        self.T = T

    def load(self, state: dict, P: int) -> None:
        """Copy the reference state after a prompt of P positions (MultiHeadFourier.prefill)."""
        T, C = self.T, self.C
        for buf in (self.V, self.G, self.Hr):
            buf.zero_()
        w0, w1, _ = self.conv_w
        a2, a1 = state["hist"].float().unbind(1)  # a_{P-2}, a_{P-1} (zeros before the text)
        self.s0.copy_(torch.addcmul(self.conv_b, a1, w0))
        self.s1.copy_(torch.addcmul(torch.addcmul(self.conv_b, a2, w0), a1, w1))
        self.V[:, :, :P] = state["v"][:, :P].transpose(1, 2)
        self.G[:, :, C - 1:C - 1 + P] = state["g"][:, :P].transpose(1, 2)
        cap = state["h_rev"].shape[1]
        self.Hr[:, :, T - P:T] = state["h_rev"][:, cap - P:].transpose(1, 2)

    def step(self, x: torch.Tensor, t, win) -> torch.Tensor:
        """x (B, D) residual stream at position t -> the block's output. `win(buf, start, n)`
        reads n columns of buf from column `start` (views on the CPU, gathers in a graph);
        `put(buf, col, value)` is in `win.put`."""
        D, C, T = self.D, self.C, self.T
        a = F.layer_norm(x, (D,), *self.ln1[:2], self.ln1[2])
        w0, w1, w2 = self.conv_w
        u = torch.addcmul(self.s1, a, w2)
        torch.addcmul(self.s0, a, w1, out=self.s1)
        torch.addcmul(self.conv_b, a, w0, out=self.s0)
        u = F.layer_norm(u, (D,), *self.ln[:2], self.ln[2])
        vg = torch.addmm(self.vg_b, u, self.vg_wT)  # (B, 2D)
        v, a1 = vg[:, :D], F.silu(vg[:, D:])
        g = torch.addmm(self.g2_b, a1, self.g2_T)
        win.put(self.V, win.col(t, 0), v)
        win.put(self.G, win.col(t, C - 1), g)
        if self.filtered:
            gw = win(self.G, t, C, 1)  # (B, D, C): g_{t-C+1} .. g_t
            h = win.dot(gw, self.k_rev)
        else:
            h = g
        win.put(self.Hr, win.col(t, T - 1, -1), h)
        n = win.span(t)
        hw = win(self.Hr, t, n, -1, T - 1)  # (B, D, n): h_t, h_{t-1}, ...
        y = win.dot(win.head(self.V, n), hw)
        x = torch.addmm(x, y, self.o_wT).add_(self.o_b)
        hid = F.gelu(torch.addmm(self.fc_b, F.layer_norm(x, (D,), *self.ln2[:2], self.ln2[2]), self.fc_wT))
        return torch.addmm(x, hid, self.mo_wT).add_(self.mo_b)


class _HostWindows:
    """Windows by Python slicing (CPU): the dot products run over the t+1 filled positions only."""

    @staticmethod
    def col(t: int, offset: int, sign: int = 1) -> int:
        return offset + sign * t

    @staticmethod
    def put(buf, col, value) -> None:
        buf[:, :, col] = value

    @staticmethod
    def dot(a, b):  # (B, D, n) . (B or 1, D, n) over n -> (B, D); CPU bmm of this shape is ~6x slower
        return torch.linalg.vecdot(a, b)

    @staticmethod
    def span(t: int) -> int:
        return t + 1

    @staticmethod
    def head(buf, n):
        return buf[:, :, :n]

    def __call__(self, buf, t, n, sign, offset=0):
        start = t if sign > 0 else offset - t
        return buf[:, :, start:start + n]


class _DeviceWindows:
    """Windows by index tensors that the step advances itself (CUDA graphs): fixed shapes, the
    y product over all T columns (V is zero past t)."""

    def __init__(self, T: int, C: int, device):
        self.T = T
        ar = torch.arange
        # one counter vector advanced by one add per step: [t, C-1+t, T-1-t, t..t+C-1, T-1-t..2T-2-t]
        self.counters = torch.cat([torch.tensor([0, C - 1, T - 1]), ar(C), T - 1 + ar(T)]).to(device)
        self.inc = torch.cat([torch.tensor([1, 1, -1]), torch.ones(C, dtype=torch.int64),
                              -torch.ones(T, dtype=torch.int64)]).to(device)
        self.C = C
        self.set(0)

    def set(self, t: int) -> None:
        C, T = self.C, self.T
        ar = torch.arange
        self.counters.copy_(torch.cat([torch.tensor([t, C - 1 + t, T - 1 - t]), t + ar(C), T - 1 - t + ar(T)]))

    def advance(self) -> None:
        self.counters.add_(self.inc)

    def col(self, t, offset: int, sign: int = 1):
        i = 0 if offset == 0 else (1 if sign > 0 else 2)
        return self.counters[i:i + 1]

    @staticmethod
    def put(buf, col, value) -> None:
        buf.index_copy_(2, col, value[:, :, None])

    @staticmethod
    def dot(a, b):  # (B, D, n) . (B or 1, D, n) over n -> (B, D): one batched product per channel
        B, D, n = a.shape
        return torch.bmm(a.reshape(B * D, 1, n), b.expand(B, D, n).reshape(B * D, n, 1)).view(B, D)

    def span(self, t) -> int:
        return self.T

    @staticmethod
    def head(buf, n):
        return buf

    def __call__(self, buf, t, n, sign, offset=0):
        idx = self.counters[3:3 + self.C] if sign > 0 else self.counters[3 + self.C:]
        return buf.index_select(2, idx)


class StaticDecoder:
    """Preallocated decoding state for `model` (batch B, up to `capacity` positions) and its step.

    `generate(prompt_ids, n, ...)` yields n new token ids; on CUDA the step is captured once as a
    CUDA graph and replayed. Not thread-safe: one generation at a time per decoder (`decoder_for`
    hands out a private one when the shared one is busy)."""

    def __init__(self, model, capacity: int, batch: int = 1):
        if not supports(model):
            raise ValueError("StaticDecoder needs a model whose every block is an MHF mixer in causal_mode 'pad'")
        self._model = weakref.ref(model)  # the cache is keyed weakly on the model: no cycle back to it
        self.T, self.B = int(capacity), int(batch)
        self.device = model.tok_emb.weight.device
        self.version = _weights_version(model)
        self.lock = threading.Lock()
        self.emb = model.tok_emb.weight.detach().float()
        self.head_wT = model.head.weight.detach().float().T.contiguous()
        self.ln_f = (model.ln_f.weight.detach().float(), model.ln_f.bias.detach().float(), model.ln_f.eps)
        self.layers = [_Layer(b, self.T, self.B) for b in model.blocks]
        self.on_cuda = self.device.type == "cuda"
        self.win = _DeviceWindows(self.T, self.layers[0].C, self.device) if self.on_cuda else _HostWindows()
        V = self.emb.shape[0]
        self.logits = torch.zeros(self.B, V, device=self.device)
        self.token = torch.zeros(self.B, dtype=torch.int64, device=self.device)
        self.u = torch.zeros(self.B, dtype=torch.float64, device=self.device)
        self.params = sampling_params(1.0, None, V, self.device)
        self.graph = None

    def forward_step(self, token: torch.Tensor, t) -> torch.Tensor:
        """Logits (B, V) after feeding token (B,) at position t (no sampling)."""
        x = self.emb.index_select(0, token)
        for layer in self.layers:
            x = layer.step(x, t, self.win)
        return F.linear(F.layer_norm(x, (x.shape[-1],), *self.ln_f[:2], self.ln_f[2]), self.head_wT.T)

    def _sample_and_step(self, t) -> None:
        """The unit the graph captures: sample from self.logits, then advance by that token."""
        self.token.copy_(sample_tokens(self.logits, self.u, *self.params))
        self.logits.copy_(self.forward_step(self.token, t))
        if self.on_cuda:
            self.win.advance()

    def prefill(self, prompt: torch.Tensor) -> int:
        """Run the prompt (B, P) through the reference prefill and load its state; returns P."""
        logits, states = self._model().stream_logits(prompt)
        P = prompt.shape[1]
        if P + 1 > self.T:
            raise ValueError(f"the prompt ({P}) does not fit the decoder's capacity ({self.T})")
        for layer, state in zip(self.layers, states):
            layer.load(state, P)
        self.logits.copy_(logits.float())
        if self.on_cuda:
            self.win.set(P)
        return P

    def _capture(self) -> None:
        # capture on a side stream after a warm-up run there (kernels loaded, workspaces made);
        # the warm-up's writes are undone by the prefill that follows
        s = torch.cuda.Stream(self.device)
        s.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(s):
            self._sample_and_step(None)
        torch.cuda.current_stream(self.device).wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._sample_and_step(None)

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], n: int, *, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Iterator[int]:
        """Yield n new token ids after prompt_ids (batch 1), as `ByteLM.generate_stream`."""
        if _hooks.any_active():
            raise ValueError("incremental decoding runs no hooks: call the model (forward) while hooks are attached")
        ids = list(prompt_ids) or [ord("\n")]
        if len(ids) + n > self.T:
            raise ValueError(f"{len(ids)} + {n} positions do not fit the decoder's capacity ({self.T})")
        if n <= 0:
            return
        for dst, src in zip(self.params, sampling_params(temperature, top_k, self.emb.shape[0], self.device)):
            dst.copy_(src)
        # the uniform draws come from the caller's CPU generator, one per byte, in order
        draws = torch.rand(n, generator=generator, dtype=torch.float64)
        if self.on_cuda and self.graph is None:
            self._capture()
        t = self.prefill(torch.tensor([ids], device=self.device))
        if not self.on_cuda:
            with _one_thread():
                for i in range(n):
                    self.u.fill_(float(draws[i]))
                    if i == n - 1:  # the last byte needs no step after it
                        yield int(sample_tokens(self.logits, self.u, *self.params)[0])
                        return
                    self._sample_and_step(t + i)
                    yield int(self.token[0])
            return
        draws_dev = draws.to(self.device)
        host = torch.empty(n, dtype=torch.int64, pin_memory=True)
        events = []
        for i in range(n):  # the GPU runs a step ahead of the bytes handed out
            self.u.copy_(draws_dev[i:i + 1])
            self.graph.replay()
            host[i:i + 1].copy_(self.token, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record()
            events.append(ev)
            if i:
                events[i - 1].synchronize()
                yield int(host[i - 1])
        events[-1].synchronize()
        yield int(host[n - 1])


@contextlib.contextmanager
def _one_thread():
    """One intra-op thread while a CPU generation runs, in this thread only (OpenMP's thread
    count is per thread; MKL's is process-wide, but these products are too small for MKL to
    split), restored when the generator ends or is closed; work the consumer does between bytes
    also runs on one thread. A step is ~150 operations on a few thousand numbers each: waking a
    second thread costs more than it saves, and on a busy 2-core machine a step took 170-200 ms
    with 2 threads against 9 ms with 1 (load average 16, 2026-12-02). Switching per step instead
    halved the speed there."""
    prev = torch.get_num_threads()
    if prev == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _weights_version(model) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def decoder_for(model, positions: int) -> tuple[StaticDecoder, bool]:
    """A decoder for `model` with room for `positions`, and whether it is the shared cached one
    (then its lock is held: release it when done). On CUDA one decoder per model is cached (its
    graph is the costly part) and rebuilt when the weights change or it is too small; a caller
    that finds it busy gets a private one. On the CPU every call builds its own (cheap)."""
    cap = -(-max(1, positions) // _ROUND) * _ROUND
    if model.tok_emb.weight.device.type != "cuda":
        return StaticDecoder(model, cap), False
    with _CACHE_LOCK:
        dec = _CACHE.get(model)
        if dec is None or dec.T < cap or dec.version != _weights_version(model):
            dec = StaticDecoder(model, max(cap, dec.T if dec is not None else 0))
            _CACHE[model] = dec
        if dec.lock.acquire(blocking=False):
            return dec, True
    return StaticDecoder(model, cap), False


def generate(model, prompt_ids: list[int], n: int, **kw) -> Iterator[int]:
    """`StaticDecoder.generate` on the decoder `decoder_for` gives (released when done)."""
    dec, shared = decoder_for(model, max(1, len(prompt_ids)) + n)
    try:
        yield from dec.generate(prompt_ids, n, **kw)
    finally:
        if shared:
            dec.lock.release()
