"""The fast paths against the plain ones and against independent float64 oracles: the MHF FFT
product (models.fourier.fft_conv, the Triton pipeline on CUDA), its FFT sizes (exact causality,
and that one sample less leaks), the cached kernel spectrum (invalidated by any parameter
change), the prompt prefill and the incremental decoding (equal logits), under grad and autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import ByteLM, ModelConfig
from models import fourier
from tests.conftest import load_sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MODES = [{}, {"causal_mode": "circular"}, {"causal_mode": "two_sided"}, {"spectral_filter": False},
         {"modrelu": False}]


def mixer(device="cpu", D=32, H=4, C=48, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=D, n_layers=1, n_heads=H, context=C, **kw)
    m = ByteLM(cfg).blocks[0].mixer.to(device).eval()
    if cfg.spectral_filter:
        with torch.no_grad():  # away from the identity init: a kernel with C real lags
            m.spectrum.add_(0.5 * torch.randn_like(m.spectrum))
            if m.gate_bias is not None:
                m.gate_bias.add_(0.3 * torch.randn_like(m.gate_bias))
    return m


def methods(device):
    return ["auto", "torch_bld", "torch_lbd"] + (["triton"] if device == "cuda" else [])


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", MODES)
def test_fft_conv_equals_plain_path(kw, device):
    m = mixer(device, **kw)
    g_ = torch.Generator().manual_seed(1)
    for L in (1, 2, 47, 48, 49, 131):
        v, g = (torch.randn(2, L, 32, generator=g_, dtype=torch.float64).to(device) for _ in range(2))
        with torch.no_grad():
            ref, n_ref, k_ref = m.mix_reference(v, g)
            n = m.fft_size(L)
            K, k_applied = m.kernel_spectrum(L, n, torch.float64)
            for method in methods(device):
                y = fourier.fft_conv(v, g, K, n, dtype=torch.float64, out_dtype=torch.float64, method=method)
                assert rel(y, ref) < 1e-12, (kw, L, method)
                y32 = fourier.fft_conv(v.float(), g.float(), K, n, dtype=torch.float32, out_dtype=torch.float32,
                                       method=method)
                assert rel(y32.double(), ref) < 1e-5, (kw, L, method)
            y, n_fast, k_fast = m.mix(v, g)
            assert rel(y, ref) < 1e-12
            if m.cfg.causal_mode == "circular":
                assert n_fast == n_ref == L
            else:
                assert n_fast >= 2 * L + (min(48, L) if m.cfg.spectral_filter else 1) - 2
            if k_ref is None:
                assert k_fast is None
            else:
                torch.testing.assert_close(k_fast, k_ref)


@pytest.mark.parametrize("device", DEVICES)
def test_fast_mix_equals_float64_convolution_oracle(device):
    """L longer than C: the learned kernel has C lags, the FFT size only 2L + C - 2."""
    m = mixer(device)
    L, D, H, C = 130, 32, 4, 48
    rng = np.random.default_rng(2)
    v, g = rng.standard_normal((2, 1, L, D))
    with torch.no_grad():
        y, n, _ = m.mix(torch.from_numpy(v).to(device), torch.from_numpy(g).to(device))
    assert n == fourier.smooth_fft_size(2 * L + C - 2) < 3 * L - 2
    k = m.causal_kernel().detach().double().cpu().numpy()
    for c in range(0, D, 5):
        expect = np.convolve(np.convolve(v[0, :, c], g[0, :, c]), k[c // (D // H)])[:L]
        np.testing.assert_allclose(y[0, :, c].cpu().numpy(), expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [{}, {"spectral_filter": False}])
def test_fast_path_is_exactly_causal_and_its_fft_size_is_tight(kw, device):
    """Perturb v and g at t: no output before t moves (float64: only rounding, ~1e-16). With one
    sample less than 2L + K - 2 the last product term wraps onto output 0: a real leak."""
    m = mixer(device, **kw)
    g_ = torch.Generator().manual_seed(3)
    for L in (5, 48, 60):
        v, g = (torch.randn(1, L, 32, generator=g_, dtype=torch.float64).to(device) for _ in range(2))
        K_lags = min(48, L) if m.cfg.spectral_filter else 1
        n_min = 2 * L + K_lags - 2
        for n in (m.fft_size(L), n_min):
            K, _ = m.kernel_spectrum(L, n, torch.float64)
            for method in methods(device):
                base = fourier.fft_conv(v, g, K, n, dtype=torch.float64, out_dtype=torch.float64, method=method)
                for t in (1, L // 2, L - 1):
                    v2, g2 = v.clone(), g.clone()
                    v2[:, t] += 3.0
                    g2[:, t] -= 2.0
                    out = fourier.fft_conv(v2, g2, K, n, dtype=torch.float64, out_dtype=torch.float64, method=method)
                    assert (out[:, :t] - base[:, :t]).abs().max().item() < 1e-12 * base.abs().max().item(), (L, n, t)
        K, _ = m.kernel_spectrum(L, n_min - 1, torch.float64)
        base = fourier.fft_conv(v, g, K, n_min - 1, dtype=torch.float64, out_dtype=torch.float64, method="torch_bld")
        v2, g2 = v.clone(), g.clone()
        v2[:, L - 1] += 3.0
        g2[:, L - 1] -= 2.0
        out = fourier.fft_conv(v2, g2, K, n_min - 1, dtype=torch.float64, out_dtype=torch.float64, method="torch_bld")
        assert (out[:, 0] - base[:, 0]).abs().max().item() > 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton pipeline runs on CUDA only")
def test_triton_pipeline_chunks_odd_shapes_and_bf16(monkeypatch):
    m = mixer("cuda", D=96, H=6, C=40)  # head width 16
    g_ = torch.Generator(device="cuda").manual_seed(4)
    for B, L, chunk in ((3, 77, 1 << 26), (2, 300, 4096), (1, 1000, 1)):
        monkeypatch.setattr(fourier, "GPU_CHUNK_ELEMENTS", chunk)  # 1: one head per chunk
        v, g = (torch.randn(B, L, 96, generator=g_, device="cuda") for _ in range(2))
        with torch.no_grad():
            ref, _, _ = m.mix_reference(v.double(), g.double())
            out = torch.full((B, L, 96), float("nan"), device="cuda")
            y, _, _ = m.mix(v, g, dtype=torch.float32)
            out.copy_(y)
            assert torch.isfinite(out).all() and rel(out.double(), ref) < 1e-5
            yb, _, _ = m.mix(v.bfloat16(), g.bfloat16(), dtype=torch.float32, out_dtype=torch.bfloat16)
            refb, _, _ = m.mix_reference(v.bfloat16().double(), g.bfloat16().double())
            assert yb.dtype == torch.bfloat16 and rel(yb.double(), refb) < 1e-2


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_spectrum_cache_follows_the_parameters(device):
    m = mixer(device)
    with torch.no_grad():
        K1, _ = m.kernel_spectrum(50, 160, torch.float64)
        assert m.kernel_spectrum(50, 160, torch.float64)[0] is K1  # cached
        m.spectrum.mul_(0.5)  # in place: the version counter moves
        K2, _ = m.kernel_spectrum(50, 160, torch.float64)
        assert K2 is not K1 and not torch.allclose(K1, K2)
        fresh = torch.fft.rfft(m.causal_kernel().double(), n=160) / 160
        torch.testing.assert_close(K2, fresh)
        state = {k: v.clone() for k, v in m.state_dict().items()}
        state["gate_bias"] += 1.0
        m.load_state_dict(state)
        K3, _ = m.kernel_spectrum(50, 160, torch.float64)
        torch.testing.assert_close(K3, torch.fft.rfft(m.causal_kernel().double(), n=160) / 160)
    K4, _ = m.kernel_spectrum(50, 160, torch.float64)  # grad enabled: never from the cache
    assert K4.requires_grad and K4 is not K3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", MODES)
def test_fast_path_gradients_equal_plain_path(kw, device):
    m = mixer(device, **kw).double()
    x = torch.randn(2, 60, 32, dtype=torch.float64, device=device)
    grads = []
    for fast in (True, False):
        m.fast = fast
        xg = x.clone().requires_grad_(True)
        m(xg).square().sum().backward()
        grads.append([xg.grad] + [p.grad.clone() for p in m.parameters()])
        m.zero_grad()
    m.fast = True
    for a, b in zip(*grads):
        assert rel(a, b) < 1e-10


@pytest.mark.parametrize("device", DEVICES)
def test_model_logits_fast_equal_plain(device):
    ck = load_sample("caracal-shakespeare", device)
    ids = torch.tensor([ck.tokenizer.encode("First Citizen:\nBefore we proceed any further, hear me speak." * 3)],
                       device=device)
    with torch.no_grad():
        fast = ck.model(ids)
        for b in ck.model.blocks:
            b.mixer.fast = False
        try:
            plain = ck.model(ids)
        finally:
            for b in ck.model.blocks:
                b.mixer.fast = True
    assert (fast - plain).abs().max().item() < 1e-4
    if device == "cuda":  # bf16 autocast: float32 FFTs, y handed to Linear_O in bf16
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            fast16 = ck.model(ids).float()
        assert (fast16 - plain).abs().max().item() < 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_prefill_and_incremental_decoding_equal_the_full_forward(device):
    ck = load_sample("caracal-shakespeare", device)
    text = ck.tokenizer.encode("KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer.")
    ids = torch.tensor([text * 8], device=device)[:, :545]  # past the context (512)
    with torch.no_grad():
        full = ck.model(ids)
        for P in (1, 7, 530):
            last, states = ck.model.stream_logits(ids[:, :P])
            torch.testing.assert_close(last, full[:, P - 1], atol=1e-4, rtol=0)
            for t in range(P, min(P + 15, ids.shape[1])):
                step = ck.model.step(ids[:, t], states)
                torch.testing.assert_close(step, full[:, t], atol=1e-4, rtol=0)


def test_prefill_of_a_hybrid_model_equals_the_full_forward():
    torch.manual_seed(0)
    model = ByteLM(ModelConfig(d_model=32, n_layers=3, n_heads=4, context=48, swa_every=3, swa_window=8)).eval()
    ids = torch.randint(0, 256, (2, 70))
    with torch.no_grad():
        full = model(ids)
        last, states = model.stream_logits(ids[:, :50])
        torch.testing.assert_close(last, full[:, 49], atol=2e-5, rtol=1e-4)
        for t in range(50, 70):
            torch.testing.assert_close(model.step(ids[:, t], states), full[:, t], atol=2e-5, rtol=1e-4)


def test_greedy_generation_equals_naive_rerun():
    ck = load_sample("caracal-shakespeare")
    prompt = ck.tokenizer.encode("ROMEO:\n")
    out = list(ck.model.generate_stream(prompt, 24, temperature=0))
    ids = list(prompt)
    with torch.no_grad():
        for tok in out:
            logits = ck.model(torch.tensor([ids]))[0, -1]
            top2 = logits.topk(2).values
            assert tok == int(logits.argmax()) or (top2[0] - top2[1]).item() < 1e-4
            ids.append(tok)


def test_batched_gradients_equal_row_by_row():
    """is_grads_batched (vmap over cotangents, as token influence uses it) through the FFT backward."""
    m = mixer(**{}).double()
    x = torch.randn(1, 40, 32, dtype=torch.float64, requires_grad=True)
    y = m(x)[0, :, 0]  # (L,)
    cot = torch.eye(40, dtype=torch.float64)[::7]
    (batched,) = torch.autograd.grad(y, x, cot, retain_graph=True, is_grads_batched=True)
    for row, c in enumerate(cot):
        (single,) = torch.autograd.grad(y, x, c, retain_graph=True)
        assert rel(batched[row], single) < 1e-12


def test_smooth_sizes_against_brute_force():
    for primes in ((2,), (2, 3), (2, 3, 5), (2, 3, 5, 7)):
        for n in list(range(1, 400)) + [133118, 262147]:
            k = n
            while True:
                m = k
                for p in primes:
                    while m % p == 0:
                        m //= p
                if m == 1:
                    break
                k += 1
            assert fourier.smooth_fft_size(n, primes) == k


def test_functorch_vmap_of_vjp_uses_the_batched_backward():
    from torch.func import vjp, vmap
    m = mixer().double()
    x = torch.randn(1, 40, 32, dtype=torch.float64)
    _, pull = vjp(lambda x: m(x)[0, :, 0], x)
    cot = torch.eye(40, dtype=torch.float64)[::7]
    (batched,) = vmap(pull)(cot)
    xg = x.clone().requires_grad_(True)
    y = m(xg)[0, :, 0]
    for row, c in enumerate(cot):
        (single,) = torch.autograd.grad(y, xg, c, retain_graph=True)
        assert rel(batched[row], single) < 1e-12


def test_fft_options_set_the_product_dtype_and_size_in_their_thread_only():
    """Inside fft_options(float32) the MHF product runs in float32 (its rounding, ~1e-7, where
    the default float64 one is ~1e-15 from a float64 oracle); a larger min_size changes nothing
    but N; outside and in other threads the defaults hold; any other dtype is refused."""
    import threading

    from models.mhf import fft_options
    m = mixer(D=16, H=2, C=24).double()
    x = torch.randn(1, 40, 16, dtype=torch.float64)
    with torch.no_grad():
        want = m(x)  # float64 input, float64 product
        with fft_options(torch.float32):
            low = m(x)
            other = {}
            t = threading.Thread(target=lambda: other.setdefault("y", m(x)))
            t.start()
            t.join()
        again = m(x)
        n = m.fft_size(40)
        with fft_options(min_size=3 * n):
            assert m.fft_size(40) == 3 * n
            wide = m(x)
        assert m.fft_size(40) == n
    assert 1e-9 < rel(low, want) < 1e-5 and rel(wide, want) < 1e-12
    assert rel(other["y"], want) < 1e-12 and rel(again, want) < 1e-12
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        with fft_options(torch.float16):
            pass


def test_input_only_gradients_skip_the_kernel_gradient():
    """A gradient w.r.t. the input alone (the influence map's) equals the full backward's input
    gradient, with the learned kernel's gradient never formed."""
    m = mixer(D=16, H=2, C=24)
    x = torch.randn(1, 30, 16, requires_grad=True)
    gy = torch.randn(1, 30, 16)
    (full,) = torch.autograd.grad(m(x), x, gy)
    for p in m.parameters():
        p.requires_grad_(False)
    calls = []
    real = fourier._fft_conv_grads
    try:
        fourier._fft_conv_grads = lambda *a: calls.append(a[-1]) or real(*a)
        (alone,) = torch.autograd.grad(m(x), x, gy)
    finally:
        fourier._fft_conv_grads = real
    assert calls == [False]
    torch.testing.assert_close(alone, full, rtol=1e-6, atol=1e-7)
