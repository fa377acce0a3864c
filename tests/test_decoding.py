"""The static decoder (models/decoding.py) against the full forward pass and the reference
step, and its sampler against a float64 numpy inverse-CDF oracle. On CUDA the same tests run
the graph-captured step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import ByteLM, ModelConfig, decoding
from tests.conftest import load_sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TEXT = "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer by this sun of York."


def small(seed=0, **kw):
    torch.manual_seed(seed)
    model = ByteLM(ModelConfig(d_model=32, n_layers=2, n_heads=4, context=24, **kw)).eval()
    with torch.no_grad():  # away from the identity init: kernels with real lags, open and shut gates
        for m in (b.mixer for b in model.blocks if b.kind == "mhf"):
            m.conv_weight.add_(0.3 * torch.randn_like(m.conv_weight))
            if m.cfg.spectral_filter:
                m.spectrum.add_(0.5 * torch.randn_like(m.spectrum))
                if m.gate_bias is not None:
                    m.gate_bias.add_(0.3 * torch.randn_like(m.gate_bias))
    return model


def fed_logits(model, ids, P, device):
    """Logits of the static decoder after a prompt ids[:, :P], fed ids[:, P:] one at a time."""
    dec = decoding.StaticDecoder(model, ids.shape[1] + 1, batch=ids.shape[0])
    with torch.no_grad(), decoding._one_thread():
        dec.prefill(ids[:, :P])
        out = [dec.logits.clone()]
        for t in range(P, ids.shape[1]):
            out.append(dec.forward_step(ids[:, t], t).clone())
            if device == "cuda":
                dec.win.advance()
    return torch.stack(out, dim=1)  # (B, L - P + 1, V): predictions after positions P-1 .. L-1


@pytest.mark.parametrize("device", DEVICES)
def test_static_decoder_logits_equal_the_full_forward_past_the_context(device):
    ck = load_sample("caracal-shakespeare", device)
    ids = torch.tensor([ck.tokenizer.encode(TEXT) * 7], device=device)[:, :560]  # context 512
    with torch.no_grad():
        full = ck.model(ids)
    for P in (1, 40, 530):  # 30 steps from each prompt length, the last ones past the context
        got = fed_logits(ck.model, ids[:, :P + 30], P, device)
        torch.testing.assert_close(got, full[:, P - 1:P + 30], atol=2e-4, rtol=0)


@pytest.mark.parametrize("kw", [{}, {"spectral_filter": False}, {"modrelu": False}])
@pytest.mark.parametrize("device", DEVICES)
def test_static_decoder_of_random_models_and_batches_equals_the_full_forward(kw, device):
    model = small(**kw).to(device)
    ids = torch.randint(0, 256, (2, 70), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        full = model(ids)
    torch.testing.assert_close(fed_logits(model, ids, 5, device), full[:, 4:], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_fast_path_equals_the_reference_step(device):
    ck = load_sample("caracal-shakespeare", device)
    prompt = ck.tokenizer.encode("ROMEO:\n")
    fast = list(ck.model.generate_stream(prompt, 40, temperature=0))
    ref = []
    with torch.no_grad():
        logits, states = ck.model.stream_logits(torch.tensor([prompt], device=device))
        for _ in range(40):
            ref.append(int(logits[0].argmax()))
            logits = ck.model.step(torch.tensor([ref[-1]], device=device), states)
    assert fast == ref


def oracle_pick(logits: np.ndarray, u: float, temperature: float, top_k: int) -> int:
    z = logits.astype(np.float64) / temperature
    kth = np.sort(z)[::-1][top_k - 1]
    p = np.where(z >= kth, np.exp(z - z.max()), 0.0)
    cdf = np.cumsum(p / p.sum())
    return int(min(np.searchsorted(cdf, u, side="right"), len(z) - 1))


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_is_the_inverse_cdf_of_the_tempered_top_k_softmax(device):
    rng = np.random.default_rng(0)
    for trial in range(200):
        logits = rng.normal(0, 3, 256).astype(np.float32)
        temperature, top_k = [0.5, 1.0, 2.0][trial % 3], [1, 3, 40, 256][trial % 4]
        u = rng.uniform()
        params = decoding.sampling_params(temperature, top_k, 256, device)
        got = decoding.sample_tokens(torch.tensor(logits[None], device=device),
                                     torch.tensor([u], device=device, dtype=torch.float64), *params)
        want = oracle_pick(logits, u, temperature, top_k)
        if int(got[0]) != want:  # only a draw within float32 rounding of a CDF step may differ
            z = logits.astype(np.float64) / temperature
            kth = np.sort(z)[::-1][top_k - 1]
            p = np.where(z >= kth, np.exp(z - z.max()), 0.0)
            assert np.abs(np.cumsum(p / p.sum()) - u).min() < 1e-5, (trial, int(got[0]), want)
    greedy = decoding.sampling_params(0.0, None, 256, device)
    logits = torch.tensor(rng.normal(0, 3, (4, 256)), device=device, dtype=torch.float32)
    assert torch.equal(decoding.sample_tokens(logits, torch.rand(4, device=device, dtype=torch.float64), *greedy),
                       logits.argmax(-1))


def test_sampled_frequencies_follow_the_probabilities():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0] + [-30.0] * 252])
    u = torch.rand(8000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    params = decoding.sampling_params(1.0, None, 256, "cpu")
    picks = torch.stack([decoding.sample_tokens(logits, u[i:i + 1], *params)[0] for i in range(len(u))])
    freq = torch.bincount(picks, minlength=256)[:4].double() / len(u)
    p = torch.softmax(logits[0, :4].double(), 0)
    assert (freq - p).abs().max() < 0.022  # ~4 standard errors at 8,000 draws


@pytest.mark.parametrize("device", DEVICES)
def test_fast_generation_refuses_hooks_and_overlong_runs(device):
    ck = load_sample("caracal-periodic", device)
    with ck.model.hooks([("hook_embed", lambda x, h: None)]):
        with pytest.raises(ValueError, match="runs no hooks"):
            list(ck.model.generate_stream([65, 66], 4, temperature=0))
    dec = decoding.StaticDecoder(ck.model, 16)
    with pytest.raises(ValueError, match="capacity"):
        list(dec.generate([65] * 10, 7, temperature=0))
    assert len(list(dec.generate([65] * 10, 6, temperature=0))) == 6


@pytest.mark.parametrize("device", DEVICES)
def test_decoder_follows_weight_edits(device):
    from caracal_viz import load_checkpoint
    from tests.conftest import sample_path

    model = load_checkpoint(sample_path("caracal-periodic"), device=device).model  # a private copy to edit
    prompt = list(b"abcabcab")
    before = list(model.generate_stream(prompt, 16, temperature=0))
    with torch.no_grad():
        model.blocks[0].mixer.spectrum.mul_(0.0)  # in place: a cached decoder must notice
        ids = list(prompt)
        for _ in range(16):
            ids.append(int(model(torch.tensor([ids], device=device))[0, -1].argmax()))
    after = list(model.generate_stream(prompt, 16, temperature=0))
    assert after == ids[len(prompt):] and after != before


def test_unsupported_models_take_the_reference_path():
    model = small(swa_every=2)
    assert not decoding.supports(model)
    assert decoding.supports(small())
    out = list(model.generate_stream([65, 66], 6, temperature=0.9, top_k=5, generator=torch.Generator().manual_seed(0)))
    assert len(out) == 6 and all(0 <= b < 256 for b in out)
