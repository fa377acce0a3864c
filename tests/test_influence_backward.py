"""The influence map's hand-written backward (caracal_viz/influence_backward.py) against plain
autograd: a float64 copy of the model, one ordinary backward pass per row (the oracle), and the
batched autograd path it replaces (`influence._gradient_norms(path="plain")`)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from caracal_viz import influence, influence_backward
from caracal_viz.checkpoint import Checkpoint
from models import ByteLM, ByteTokenizer, ModelConfig
from tests.conftest import load_sample

TEXT = "To be, or not to be: that is the question."


def _tiny(**cfg) -> ByteLM:
    torch.manual_seed(1)
    config = ModelConfig(d_model=16, n_layers=2, n_heads=2, context=16, mlp_ratio=2, **cfg)
    model = ByteLM(config).eval()
    with torch.no_grad():  # trained-looking weights: every lag of S, the gate bias and the norms matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _oracle(model: ByteLM, ids: list[int], layer: int) -> np.ndarray:
    """(L-1, L) float64 map by one ordinary backward pass per row through a float64 copy."""
    m = copy.deepcopy(model).double()
    with torch.no_grad():  # the float32 model's stream entering `layer`, as the map differentiates it
        x0 = model(torch.tensor([ids]), stop_at_layer=layer).double().requires_grad_(True)
    with torch.enable_grad():
        logp = torch.log_softmax(m(x0, start_at_layer=layer)[0], dim=-1)
        rows = []
        for i in range(len(ids) - 1):
            (g,) = torch.autograd.grad(logp[i, ids[i + 1]], x0, retain_graph=True)
            rows.append(g[0].norm(dim=-1).numpy())
    return np.stack(rows)


MODELS = {
    "pad (caracal-periodic)": lambda: load_sample("caracal-periodic").model,
    "circular (caracal-circular-leaky)": lambda: load_sample("caracal-circular-leaky").model,
    "two_sided": lambda: _tiny(causal_mode="two_sided"),
    "pad, no filter": lambda: _tiny(causal_mode="pad", spectral_filter=False),
    "pad, no modReLU": lambda: _tiny(causal_mode="pad", modrelu=False),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_float64_backward_equals_one_autograd_pass_per_row(name):
    model = MODELS[name]()
    ids = list(TEXT.encode())
    want = _oracle(model, ids, 0)
    got = influence_backward.gradient_norms(model, torch.tensor(ids), 0, 8, model.config.is_causal,
                                            dtype=torch.float64)
    assert got.shape == want.shape == (len(ids) - 1, len(ids))
    scale = want.max()
    # entries past a causal chunk's prefix are never computed: exact zeros, and rounding in the oracle
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * scale)
    if not model.config.is_causal:
        assert np.triu(got, 1).max() > 1e-3 * scale  # the leak is in the map, not masked


def test_a_later_layer_and_every_chunk_size_give_the_oracle():
    model = load_sample("caracal-shakespeare").model
    ids = list(TEXT.encode())[:24]
    want = _oracle(model, ids, 3)
    for chunk in (1, 5, 23):
        got = influence_backward.gradient_norms(model, torch.tensor(ids), 3, chunk, True, dtype=torch.float64)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * want.max())


@pytest.mark.parametrize("sample", ["caracal-shakespeare", "caracal-circular-leaky"])
def test_token_influence_takes_the_fast_path_and_matches_the_plain_one(sample, monkeypatch):
    ck = load_sample(sample)
    ids = torch.tensor(list(TEXT.encode()))
    plain = influence._gradient_norms(ck.model, ids, 0, 16, ck.config.is_causal, path="plain")
    called = []
    real = influence_backward.gradient_norms
    monkeypatch.setattr(influence_backward, "gradient_norms", lambda *a, **k: called.append(k) or real(*a, **k))
    m = influence.token_influence(ck, TEXT)
    assert called and called[0]["gemm"] == "fp32"  # the CPU runs the plain float32 products
    scale = np.tril(plain).max()
    assert np.abs(np.tril(m.values[:-1]) - np.tril(plain)).max() < 1e-5 * scale
    assert (m.upper_rel > 1e-3) == (not ck.config.is_causal)


@pytest.mark.parametrize("mode,bits", [("bf16x3", 16), ("bf16x6", 24)])
def test_bfloat16_pieces_and_their_products(mode, bits):
    torch.manual_seed(2)
    x = torch.randn(64, 300) * torch.logspace(-6, 3, 300)  # columns across nine decades
    k, _ = influence_backward._PAIRS[mode]
    rebuilt = sum(p.double() for p in influence_backward._pieces(x, k))
    assert ((rebuilt - x.double()).abs() <= 2.0 ** -(8 * k) * x.double().abs()).all()
    w = torch.randn(40, 64)
    got = influence_backward._Gemm(w, mode)(x).double()
    want = w.double() @ x.double()
    # per entry, relative to its terms: the pieces' truncation plus float32 accumulation over the stacked pieces
    terms = w.double().abs() @ x.double().abs()
    bound = (2.0 ** -bits * 4 + 64 * len(influence_backward._PAIRS[mode][1]) * 2.0 ** -24) * terms
    assert ((got - want).abs() <= bound).all()
    assert ((influence_backward._Gemm(w, "fp32")(x).double() - want).abs() <= 64 * 2.0 ** -24 * terms).all()


def test_the_bfloat16_map_stays_within_its_error_bar_of_the_float32_one():
    model = load_sample("caracal-shakespeare").model
    ids = torch.tensor(list(TEXT.encode()))
    ref = influence_backward.gradient_norms(model, ids, 0, 16, True)
    for mode in ("bf16x3", "bf16x6"):
        got = influence_backward.gradient_norms(model, ids, 0, 16, True, gemm=mode)
        assert np.abs(got - ref).max() < 1e-4 * ref.max(), mode


def test_models_it_does_not_cover_take_the_plain_path():
    assert not influence_backward.supported(load_sample("fftnet-shakespeare").model, 0)
    hybrid = load_sample("caracal-hybrid-shakespeare").model  # its last block is sliding-window attention
    assert not influence_backward.supported(hybrid, 0) and not influence_backward.supported(hybrid, 3)
    model = _tiny()
    assert influence_backward.supported(model, 0) and not influence_backward.supported(model.train(), 0)
    with pytest.raises(ValueError, match="gemm"):
        influence_backward.gradient_norms(model.eval(), torch.tensor([1, 2, 3]), 0, 2, True, gemm="tf32")
    ck = Checkpoint(model=model, tokenizer=ByteTokenizer(), config=model.config, meta={}, name="t", sha256="")
    with pytest.raises(ValueError, match="path"):
        influence._gradient_norms(ck.model, torch.tensor([1, 2, 3]), 0, 2, True, path="fast")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels run on CUDA only")


@needs_cuda
def test_triton_kernels_equal_the_torch_operations():
    from caracal_viz.influence_triton import TritonOps

    torch.manual_seed(3)
    dev = "cuda"
    ref, fast = influence_backward._TorchOps("fp32"), TritonOps("fp32")
    D, R, P, L = 160, 5, 77, 90  # P and R * P off every tile size; P < L as in a causal chunk
    wide = torch.randn(D, R, 2 * P + 3, device=dev)
    x = wide[..., :P]  # a strided view, as the FFT outputs are read
    x2 = torch.randn(D, R, P, device=dev)
    m = torch.randn(3 * D, 2 * D, device=dev)
    scale = torch.randn(3 * D, L, device=dev)
    for args in ((m[:, :D].contiguous(), x), (m[:, :D].contiguous(), x, scale), (m, x, None, x2)):
        want, got = ref.gemm(*args), fast.gemm(*args)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-4), (got - want).abs().max()
    ln = influence_backward._LayerNorm(torch.nn.LayerNorm(D).to(dev), torch.randn(L, D, device=dev), torch.float32)
    ln.w = torch.randn(D, device=dev)
    conv, res = torch.randn(D, 3, device=dev), torch.randn(D, R, P, device=dev)
    for kw in ({}, {"res": res}, {"conv": conv, "res": res}):
        want, got = ref.ln_back(ln, x2, **kw), fast.ln_back(ln, x2, **kw)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (kw.keys(), (got - want).abs().max())
    for mode in ("tf32", "tf32x3"):  # TF32 rounds the inputs: ~1e-3 and ~1e-6 of the products' terms
        got, want = TritonOps(mode).gemm(m[:, :D].contiguous(), x), ref.gemm(m[:, :D].contiguous(), x)
        err = ((got - want).abs() / (m[:, :D].abs() @ x.abs().reshape(D, -1)).view_as(want)).max()
        assert err < (2e-3 if mode == "tf32" else 1e-5), (mode, err)


@needs_cuda
@pytest.mark.parametrize("sample", ["caracal-shakespeare", "caracal-circular-leaky"])
def test_the_gpu_path_matches_the_plain_one_on_the_gpu(sample):
    ck = load_sample(sample)
    model = copy.deepcopy(ck.model).cuda()
    ids = torch.tensor(list((TEXT * 8).encode()), device="cuda")
    plain = influence._plain_gradient_norms(model, ids, 0, 64, ck.config.is_causal)
    scale = np.tril(plain).max()
    for backend, gemm, bar in (("torch", "fp32", 1e-5), ("triton", "fp32", 1e-5), ("triton", "tf32x3", 1e-5),
                               ("torch", "bf16x3", 1e-4)):
        got = influence_backward.gradient_norms(model, ids, 0, 64, ck.config.is_causal, gemm=gemm, backend=backend)
        assert np.abs(np.tril(got) - np.tril(plain)).max() < bar * scale, (backend, gemm)
        assert (np.triu(got, 1).max() > 1e-3 * scale) == (not ck.config.is_causal)
