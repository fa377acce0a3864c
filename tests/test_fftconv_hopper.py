"""The Hopper tensor-core FFT convolution (models.fftconv_triton): where it is chosen (on the CPU,
as a pure rule), that its FFT sizes keep the convolution exact, and on a Hopper GPU that it
computes the same function as a float64 numpy oracle within bf16 rounding, writes every output,
is causal up to that rounding, and trains with gradients equal to the plain path's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import ByteLM, ModelConfig, fftconv_triton, fourier

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9 and fftconv_triton.triton is not None
needs_hopper = pytest.mark.skipif(not HOPPER, reason="the tensor-core kernel runs on Hopper GPUs (compute capability 9.x) only")


def mixer(device="cpu", D=32, H=4, C=48, seed=0, **kw):
    torch.manual_seed(seed)
    m = ByteLM(ModelConfig(d_model=D, n_layers=1, n_heads=H, context=C, **kw)).blocks[0].mixer.to(device).eval()
    with torch.no_grad():  # away from the identity init: a kernel with C real lags
        m.spectrum.add_(0.5 * torch.randn_like(m.spectrum))
        m.gate_bias.add_(0.3 * torch.randn_like(m.gate_bias))
    return m


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


HOPPER_ARGS = dict(device_type="cuda", capability=(9, 0), have_triton=True, B=1, L=65536,
                   n=fftconv_triton.fft_size(65536, 2048), channels=1024, heads=16, dtype=torch.float32,
                   out_dtype=torch.bfloat16, needs_grad=False)


@pytest.fixture
def enabled(monkeypatch):
    """The kernel switched on, so that mixers pick FFT sizes the kernel splits (m.fft_size)."""
    monkeypatch.setattr(fftconv_triton, "ENABLED", True)


@pytest.mark.parametrize("change, expect", [
    ({}, "hopper"),
    ({"out_dtype": torch.float16}, "triton"),  # fp16 rounds finer than the kernel's bf16 intermediates
    ({"capability": (8, 0)}, "triton"),  # A100: the cuFFT pipeline
    ({"capability": (10, 0)}, "triton"),
    ({"capability": (8, 9), "B": 1, "channels": 1023, "heads": 1}, "torch_lbd"),  # odd channel count
    ({"device_type": "cpu", "capability": None, "have_triton": False}, "torch_bld"),
    ({"device_type": "cpu", "capability": None}, "torch_bld"),
    ({"have_triton": False}, "torch_lbd"),
    ({"dtype": torch.float64}, "triton"),  # a float64 product keeps its float64 FFTs
    ({"out_dtype": torch.float32}, "triton"),  # a float32 result is not rounded to bf16: no tf32
    ({"needs_grad": True}, "torch_lbd"),
    ({"L": fftconv_triton.MIN_LENGTH - 1, "n": fftconv_triton.fft_size(fftconv_triton.MIN_LENGTH - 1, 2048)},
     "triton"),
    ({"n": fourier.smooth_fft_size(2 * 65536 + 2046)}, "triton"),  # 135000 = 2^3 3^3 5^4: no split
    ({"channels": 1000, "heads": 4}, "triton"),  # D not a multiple of the channel tile
    ({"channels": 1024, "heads": 512}, "triton"),  # head width 2 < CI
])
def test_dispatch_rule(change, expect, enabled):
    assert fourier.choose_method(**{**HOPPER_ARGS, **change}) == expect


def test_switch_keeps_the_cufft_pipeline():
    """Off by default (the kernel is slower than the cuFFT pipeline on the H200 so far)."""
    assert fftconv_triton.ENABLED is False
    assert fourier.choose_method(**HOPPER_ARGS) == "triton"
    assert not fftconv_triton.wants_size("cuda")


def test_fast_path_by_default_never_picks_the_kernel():
    m = mixer(D=32, H=4, C=48)
    L = fftconv_triton.MIN_LENGTH
    assert m.fft_size(L) == fourier.smooth_fft_size(2 * L + 48 - 2)  # the cuFFT/pocketfft sizes
    calls = []
    real = fftconv_triton.fft_conv
    try:
        fftconv_triton.fft_conv = lambda *a, **k: calls.append(1) or real(*a, **k)
        with torch.no_grad():
            m.mix(torch.randn(1, L, 32).bfloat16(), torch.randn(1, L, 32).bfloat16(), dtype=torch.float32,
                  out_dtype=torch.bfloat16)
    finally:
        fftconv_triton.fft_conv = real
    assert calls == []


@pytest.mark.parametrize("L", [4096, 5000, 16384, 65536, 100000, 262144])
@pytest.mark.parametrize("lags", [1, 2048])
def test_fft_sizes_split_and_are_long_enough(L, lags):
    n = fftconv_triton.fft_size(L, lags)
    need = 2 * L + lags - 2
    assert need <= n < 1.12 * need
    p = fftconv_triton.split(n, L)
    assert p is not None and p.N1 * p.N2 == n and p.N1 % 2 == 0 and p.P * p.Q == p.N2
    assert fourier.smooth_fft_size(p.N1) == p.N1  # the cuFFT backward at this N stays fast
    assert p.rows_in == -(-L // p.N2) and p.R == p.N1 // 2 + 1


def test_mixer_takes_the_kernel_sizes_on_hopper_and_stays_exact(monkeypatch):
    """With the Hopper size rule on (as on an H200), the mixer's FFT size is the kernel's and the
    product (here the float64 torch path on the CPU at that size) still equals a float64 numpy
    convolution oracle: the size is long enough for the triple convolution."""
    monkeypatch.setattr(fftconv_triton, "wants_size", lambda device: True)
    m = mixer(D=8, H=2, C=48)
    L = fftconv_triton.MIN_LENGTH + 3
    n = m.fft_size(L)
    assert n == fftconv_triton.fft_size(L, 48) != fourier.smooth_fft_size(2 * L + 46)
    rng = np.random.default_rng(0)
    v, g = rng.standard_normal((2, 1, L, 8))
    with torch.no_grad():
        y, n_used, _ = m.mix(torch.from_numpy(v), torch.from_numpy(g))
    assert n_used == n
    k = m.causal_kernel().detach().double().numpy()
    for c in (0, 5):
        expect = np.convolve(np.convolve(v[0, :, c], g[0, :, c]), k[c // 4])[:L]
        np.testing.assert_allclose(y[0, :, c].numpy(), expect, rtol=1e-9, atol=1e-9)


# ---- on a Hopper GPU ---------------------------------------------------------------------------

def oracle(v, g, k, n_heads):
    """float64 scipy: y[b, :, c] = ((v * g)[:L] * k_head)[:L], linear convolutions of every channel."""
    from scipy.signal import fftconvolve
    B, L, D = v.shape
    v, g, k = (np.asarray(t.double().cpu()) for t in (v, g, k))
    vg = fftconvolve(v, g, axes=1)[:, :L]
    kc = np.repeat(k, D // n_heads, axis=0).T[None]  # (1, L, D)
    return torch.from_numpy(fftconvolve(vg, kc, axes=1)[:, :L])


def inputs(B, L, D, seed):
    g_ = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(B, L, D, device="cuda", generator=g_).bfloat16() for _ in range(2)]


@needs_hopper
@pytest.mark.parametrize("B, L, D, H, C", [(1, 4096, 32, 2, 48), (3, 5000, 32, 4, 512), (2, 8192, 16, 1, 2048)])
def test_kernel_equals_float64_oracle_within_bf16_rounding(B, L, D, H, C, enabled):
    m = mixer("cuda", D=D, H=H, C=C)
    v, g = inputs(B, L, D, L)
    n = m.fft_size(L)
    p = fftconv_triton.split(n, L)
    assert p is not None
    with torch.no_grad():
        K, k_applied = m.kernel_spectrum(L, n, torch.float32)
        ref = oracle(v, g, k_applied, H)
        out = torch.full((B, L, D), float("nan"), device="cuda", dtype=torch.bfloat16)
        y = fftconv_triton.fft_conv(v, g, K, p, out_dtype=torch.bfloat16, out=out)
        assert y is out and torch.isfinite(out).all()  # every output written
        cufft = fourier._fft_conv_triton(v, g, K, n, dtype=torch.float32, out_dtype=torch.bfloat16)
        err, err_cufft = rel(y.cpu(), ref), rel(cufft.cpu(), ref)
        assert err < 2 ** -8 and err < 2 * err_cufft, (err, err_cufft)  # within the bf16 rounding of today's path
        exact = fftconv_triton.fft_conv(v, g, K, p, out_dtype=torch.float16, store_dtype=torch.float32,
                                        precision="ieee")
        assert rel(exact.float().cpu(), ref) < 2e-3  # float32 arithmetic: only the fp16 output rounding
        y32 = torch.empty((B, L, D), device="cuda")
        for _, launch, _ in fftconv_triton.passes(v, g, K, p, y32, store_dtype=torch.float32, precision="ieee"):
            launch()
        assert rel(y32.cpu(), ref) < 1e-5  # float32 end to end: the decomposition itself is exact


@needs_hopper
@pytest.mark.parametrize("mode", ["two_sided", "circular"])
def test_kernel_in_the_leaky_modes_equals_the_plain_path(mode, enabled):
    m = mixer("cuda", D=32, H=2, C=512, causal_mode=mode)
    L = 8192
    v, g = inputs(2, L, 32, 7)
    n = m.fft_size(L)
    p = fftconv_triton.split(n, L)
    assert p is not None
    with torch.no_grad():
        K, _ = m.kernel_spectrum(L, n, torch.float32)
        y = torch.empty((2, L, 32), device="cuda")
        for _, launch, _ in fftconv_triton.passes(v, g, K, p, y, store_dtype=torch.float32, precision="ieee"):
            launch()
        ref, _, _ = m.mix_reference(v.double(), g.double())
    assert rel(y, ref) < 1e-5


@needs_hopper
def test_kernel_chunks_channels(monkeypatch, enabled):
    m = mixer("cuda", D=64, H=4, C=256)
    L = 4096
    v, g = inputs(3, L, 64, 3)
    n = m.fft_size(L)
    p = fftconv_triton.split(n, L)
    with torch.no_grad():
        K, _ = m.kernel_spectrum(L, n, torch.float32)
        whole = fftconv_triton.fft_conv(v, g, K, p, out_dtype=torch.float32, store_dtype=torch.float32)
        monkeypatch.setattr(fftconv_triton, "PLANE_ELEMENTS", 48 * p.R * p.N2)  # 4 chunks of 48 channels
        out = torch.full((3, L, 64), float("nan"), device="cuda")
        fftconv_triton.fft_conv(v, g, K, p, out_dtype=torch.float32, store_dtype=torch.float32, out=out)
    assert torch.isfinite(out).all() and rel(out, whole) < 1e-6


@needs_hopper
def test_kernel_is_causal_up_to_its_rounding():
    """Perturb v and g at t: outputs before t move only by rounding: float32 rounding with float32
    intermediates, and within the bf16 floor (one bf16 unit of the output's scale) with the default
    bf16 intermediates; outputs from t on move by O(1)."""
    m = mixer("cuda", D=32, H=2, C=2048)
    L = 8192
    v, g = inputs(1, L, 32, 11)
    n = m.fft_size(L)
    p = fftconv_triton.split(n, L)
    with torch.no_grad():
        K, _ = m.kernel_spectrum(L, n, torch.float32)
        for opts, bound in ((dict(store_dtype=torch.float32, precision="ieee"), 1e-5), ({}, 2 ** -8)):
            base = fftconv_triton.fft_conv(v, g, K, p, out_dtype=torch.float32, **opts)
            for t in (1, 3000, L - 1):
                v2, g2 = v.clone(), g.clone()
                v2[:, t] += 3.0
                g2[:, t] -= 2.0
                out = fftconv_triton.fft_conv(v2, g2, K, p, out_dtype=torch.float32, **opts)
                leak = (out[:, :t] - base[:, :t]).abs().max().item()
                response = (out[:, t:] - base[:, t:]).abs().max().item()
                assert leak < bound * base.abs().max().item() and response > 1e-3, (opts, t, leak, response)


@needs_hopper
def test_module_uses_the_kernel_and_its_gradients_equal_the_plain_path(enabled):
    """Under bf16 autocast the MHF module's forward runs the kernel (also inside the training
    forward, FFTConvFunction); the module's output and every gradient match the plain path
    (mix_reference, autograd through torch FFTs) within bf16 rounding."""
    m = mixer("cuda", D=64, H=4, C=512).train()
    L = 4096
    x = torch.randn(2, L, 64, device="cuda")
    gy = torch.randn(2, L, 64, device="cuda")
    calls = []
    real = fftconv_triton.fft_conv
    results = []
    try:
        fftconv_triton.fft_conv = lambda *a, **k: calls.append(1) or real(*a, **k)
        for fast in (True, False):
            m.fast = fast
            xg = x.clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = m(xg)
            y.float().backward(gy)
            results.append([y.detach().float(), xg.grad] + [p.grad.clone() for p in m.parameters()])
            m.zero_grad()
    finally:
        fftconv_triton.fft_conv = real
        m.fast = True
    assert calls, "the kernel did not run"
    for a, b in zip(*results):
        assert rel(a, b) < 2e-2
