"""Token influence and mixing matrices, checked against independent computations: one plain
backward pass per row, autograd Jacobians of the mixer alone, np.convolve of the kernels and a
numpy finite-difference Jacobian of FFTNet's filter stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz import influence, resources
from caracal_viz.checkpoint import Checkpoint
from caracal_viz.influence import influence_limit, mixing_matrices, token_influence, upper_triangle_max
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass
from models import ByteLM, ByteTokenizer, ModelConfig
from tests.conftest import LEAKY_SAMPLES, load_sample

TEXT = "To be, or not to be: that is the question."


def _plain_row(ck, ids, i, layer):
    """One ordinary backward pass: d log p(ids[i+1] | ids[:i+1]) / d (input of block `layer`)."""
    captured = {}

    def make_leaf(module, args):
        leaf = args[0].detach().requires_grad_(True)
        captured["x"] = leaf
        return (leaf,) + args[1:]

    handle = ck.model.blocks[layer].register_forward_pre_hook(make_leaf)
    try:
        with torch.enable_grad():
            logits = ck.model(torch.tensor([ids]))
            logp = torch.log_softmax(logits[0, i].double(), -1)[ids[i + 1]]
            (g,) = torch.autograd.grad(logp, captured["x"])
    finally:
        handle.remove()
    return g[0].double().norm(dim=-1).numpy()


@pytest.mark.parametrize("name,layer", [("caracal-shakespeare", None), ("caracal-shakespeare", 3),
                                        ("fftnet-shakespeare", None)])
def test_rows_match_plain_backward(name, layer):
    ck = load_sample(name)
    ids = list(TEXT.encode())
    m = token_influence(ck, TEXT, layer=layer, chunk_size=5)
    assert m.values.shape == (len(ids), len(ids))
    assert np.isnan(m.values[-1]).all()
    for i in (0, 7, 20, len(ids) - 2):
        want = _plain_row(ck, ids, i, layer or 0)
        np.testing.assert_allclose(m.values[i], want, rtol=1e-4, atol=1e-6 * want.max())
    assert m.labels == [ByteTokenizer.label(b) for b in ids]


def test_causal_upper_triangle_is_rounding_and_leaky_is_not():
    ck = load_sample("caracal-shakespeare")
    m = token_influence(ck, TEXT)
    upper = np.triu(m.values[:-1], 1)
    assert m.upper_max == upper.max()
    assert m.causal and m.upper_max < 1e-6 * m.scale  # float32 FFT rounding only
    assert np.all(np.diag(m.values)[:-1] > 0)  # every byte influences its own prediction
    for name in LEAKY_SAMPLES:
        leaky = token_influence(load_sample(name), TEXT)
        assert not leaky.causal and leaky.upper_rel > 1e-3, name
        assert leaky.upper_max == upper_triangle_max(leaky.values)


def test_bad_arguments_and_the_length_limit(monkeypatch):
    ck = load_sample("caracal-periodic")
    with pytest.raises(ValueError, match="layer"):
        token_influence(ck, TEXT, layer=ck.config.n_layers)
    with pytest.raises(TextError, match="empty"):
        token_influence(ck, "")
    # the limit follows free memory, which other processes move between two calls: hold it still
    monkeypatch.setattr(resources, "free_bytes", lambda device: 2 << 30)
    limit = influence_limit(ck)
    assert limit >= 64 and limit % 64 == 0
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", str(10 * limit))
    with pytest.raises(TextError, match=f"limit of {limit} bytes"):
        token_influence(ck, "a" * (limit + 1))
    with pytest.raises(TextError, match=f"limit of {limit} bytes"):
        mixing_matrices(ck, forward_pass(ck, "a" * (limit + 1)))


def _jacobian_head(mixer, v, g, head, n_heads):
    """RMS over head `head`'s channels of d y[:, c] / d v[:, c], y = mixer.mix(v, g), by autograd
    (the mixer alone, the other heads' channels held fixed)."""
    D = v.shape[2]
    cols = slice(head * D // n_heads, (head + 1) * D // n_heads)

    def f(v_head):
        full = v.clone()
        full[..., cols] = v_head
        return mixer.mix(full, g)[0][..., cols]

    J = torch.autograd.functional.jacobian(f, v[..., cols].clone(), vectorize=True)[0, :, :, 0]  # (L, dh, L, dh)
    dh = J.shape[1]
    own = J[:, torch.arange(dh), :, torch.arange(dh)]  # (dh, L, L): channel c's own matrix
    J[:, torch.arange(dh), :, torch.arange(dh)] = 0
    assert J.abs().max() == 0  # the FFT stage never mixes channels
    return torch.sqrt((own**2).mean(0)).numpy()


def _tiny_checkpoint(**cfg):
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, n_layers=1, n_heads=2, context=16, mlp_ratio=2, **cfg)
    model = ByteLM(config).eval()
    with torch.no_grad():  # a trained-looking kernel: every lag of S and the gate bias matter
        mixer = model.blocks[0].mixer
        if config.spectral_filter:
            mixer.spectrum.normal_()
            if mixer.gate_bias is not None:
                mixer.gate_bias.uniform_(-1.0, 0.5)
    return Checkpoint(model=model, tokenizer=ByteTokenizer(), config=config, meta={}, name="tiny", sha256="")


@pytest.mark.parametrize("make", [
    lambda: load_sample("caracal-shakespeare"),
    lambda: load_sample("caracal-circular-leaky"),
    lambda: _tiny_checkpoint(causal_mode="two_sided"),
    lambda: _tiny_checkpoint(causal_mode="pad", spectral_filter=False),
], ids=["pad", "circular", "two_sided", "no_filter"])
def test_mhf_mixing_matrices_match_mixer_jacobian(make):
    ck = make()
    text = "Fourier mix"
    ids = torch.tensor([list(text.encode())])
    mats = mixing_matrices(ck, forward_pass(ck, text))
    with torch.no_grad():
        _, internals = ck.model(ids, return_internals=True)
    H = ck.config.n_heads
    for layer, head in ((0, H - 1), (ck.config.n_layers - 1, 0)):
        rec, mixer = internals[layer], ck.model.blocks[layer].mixer
        want = _jacobian_head(mixer, rec.fft_input.double(), rec.gate_kernel.double(), head, H)
        np.testing.assert_allclose(mats[layer][head], want, rtol=1e-4, atol=1e-6 * want.max())
    if ck.config.causal_mode == "pad":
        assert all(upper_triangle_max(m) == 0.0 for m in mats)  # exactly: built from lags >= 0
    else:
        assert all(upper_triangle_max(m) > 1e-3 * m.max() for m in mats)


def test_mhf_mixing_matrix_is_the_toeplitz_matrix_of_the_convolved_kernel():
    ck = load_sample("caracal-periodic")
    text = "abcabcabcabcxyz"
    L = len(text)
    mats = mixing_matrices(ck, forward_pass(ck, text))
    with torch.no_grad():
        _, internals = ck.model(torch.tensor([list(text.encode())]), return_internals=True)
    H, dh = ck.config.n_heads, ck.config.head_dim
    for layer, rec in enumerate(internals):
        g = rec.gate_kernel[0].double().numpy()  # (L, D)
        k = rec.kernel.double().numpy()  # (H, L)
        for h in (0, H - 1):
            sq = np.zeros((L, L))
            for c in range(h * dh, (h + 1) * dh):
                kernel = np.convolve(g[:, c], k[h])[:L]
                T = np.array([[kernel[t - j] if t >= j else 0.0 for j in range(L)] for t in range(L)])
                sq += T**2
            np.testing.assert_allclose(mats[layer][h], np.sqrt(sq / dh), rtol=1e-5, atol=1e-7)


def _fftnet_filter_stage(v, W, b):
    """numpy float64: y = irfft(modReLU(rfft(v) * W; b)) per channel; v (L, n), W and b (F, n)."""
    z = np.fft.rfft(v, axis=0) * W
    mag = np.abs(z)
    return np.fft.irfft(z * np.maximum(mag + b, 0) / (mag + 1e-8), n=v.shape[0], axis=0)


def test_fftnet_mixing_matrices_match_finite_differences():
    ck = load_sample("fftnet-shakespeare")
    text = "Mixing, globally."
    L = len(text)
    mats = mixing_matrices(ck, forward_pass(ck, text))
    with torch.no_grad():
        _, internals = ck.model(torch.tensor([list(text.encode())]), return_internals=True)
    dh = ck.config.head_dim
    layer, h = 1, 2
    rec, mixer = internals[layer], ck.model.blocks[layer].mixer
    cols = slice(h * dh, (h + 1) * dh)
    v = rec.fft_input[0].double().numpy()[:, cols]  # (L, dh)
    W = rec.adapted_filter[0, h].to(torch.complex128).numpy()[:, None]  # (F, 1)
    # FFTNet resamples its per-bin gate bias linearly from C//2+1 bins onto this length's bins
    base = mixer.gate_bias.detach().double().numpy()[h]
    b = np.interp(np.linspace(0, 1, L // 2 + 1), np.linspace(0, 1, base.size), base)[:, None]
    np.testing.assert_allclose(_fftnet_filter_stage(v, W, b), rec.fft_output[0].double().numpy()[:, cols],
                               rtol=1e-4, atol=1e-5)  # the oracle reproduces the mixer's own output
    eps = 1e-6
    sq = np.zeros((L, L))
    for j in range(L):
        step = np.zeros_like(v)
        step[j] = eps
        sq[:, j] = np.sum(((_fftnet_filter_stage(v + step, W, b) - _fftnet_filter_stage(v - step, W, b))
                           / (2 * eps)) ** 2, axis=1)
    want = np.sqrt(sq / dh)
    np.testing.assert_allclose(mats[layer][h], want, rtol=1e-4, atol=1e-5 * want.max())
    assert upper_triangle_max(mats[layer]) > 0.1 * mats[layer].max()  # reads the future


def test_attention_blocks_have_no_mixing_matrix():
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, n_layers=2, n_heads=2, context=16, mlp_ratio=2, swa_every=2, swa_window=8)
    ck = Checkpoint(model=ByteLM(config).eval(), tokenizer=ByteTokenizer(), config=config, meta={}, name="hybrid",
                    sha256="")
    mats = mixing_matrices(ck, forward_pass(ck, "hybrid"))
    assert mats[1] is None and mats[0].shape == (2, 6, 6)
    m = token_influence(ck, "hybrid", layer=1)
    assert m.layer == 1 and m.upper_max < 1e-6 * m.scale


def test_interactive_limit_and_utf8_prefix(monkeypatch):
    ck = load_sample("caracal-periodic")
    monkeypatch.delenv("CARACAL_MAX_INFLUENCE_BYTES", raising=False)
    assert influence.interactive_limit(ck) == min(influence.INTERACTIVE_BYTES["cpu"], influence.influence_limit(ck))
    monkeypatch.setenv("CARACAL_MAX_INFLUENCE_BYTES", "100")
    assert influence.interactive_limit(ck) == 100
    text = "a€b😀c" * 5
    for n in range(len(text.encode()) + 2):
        prefix = influence.utf8_prefix(text, n)
        # brute force: the longest prefix by whole characters within n bytes
        best = max((text[:k] for k in range(len(text) + 1) if len(text[:k].encode()) <= n), key=len)
        assert prefix == best


def test_causal_rows_run_on_their_prefix_and_leaky_ones_on_the_whole_text():
    """A causal config's rows come in spans computed on the prefix they can read: the entries past
    a span's prefix are exact zeros, the rest match the one-span computation on the whole text
    (which a leaky config always gets: its upper triangle is the finding)."""
    ck = load_sample("caracal-periodic")
    ids = torch.tensor(list(TEXT.encode()))
    n_rows = len(TEXT) - 1
    spans = influence._row_spans(n_rows, 4, causal=True)
    assert len(spans) > 2 and spans[0][0] == 0 and spans[-1][1] == n_rows
    assert all(b == length for _, b, length in spans)
    assert influence._row_spans(n_rows, 4, causal=False) == [(0, n_rows, n_rows + 1)]
    m = token_influence(ck, TEXT, chunk_size=4).values[:-1]
    whole = influence._gradient_norms(ck.model, ids, 0, 4, causal=False)
    for first, end, length in spans:
        assert np.all(m[first:end, length:] == 0.0)
    np.testing.assert_allclose(np.tril(m), np.tril(whole), rtol=1e-5, atol=1e-6 * whole.max())


def test_one_mixing_matrix_is_that_layers_entry():
    ck = load_sample("caracal-periodic")
    mats = mixing_matrices(ck, forward_pass(ck, TEXT))
    np.testing.assert_array_equal(influence.mixing_matrix(ck, forward_pass(ck, TEXT), 1), mats[1])
    with pytest.raises(ValueError, match="block index"):
        influence.mixing_matrix(ck, forward_pass(ck, TEXT), ck.config.n_layers)
    with pytest.raises(ValueError, match="block index"):
        influence.mixing_matrix(ck, forward_pass(ck, TEXT), None)
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, n_layers=2, n_heads=2, context=16, mlp_ratio=2, swa_every=2, swa_window=8)
    hybrid = Checkpoint(model=ByteLM(config).eval(), tokenizer=ByteTokenizer(), config=config, meta={}, name="hybrid",
                        sha256="")
    with pytest.raises(ValueError, match="attention block"):
        influence.mixing_matrix(hybrid, forward_pass(hybrid, "hybrid"), 1)
