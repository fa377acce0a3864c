"""The models: calling convention, causality by perturbation on the shipped checkpoints,
incremental decoding, the frequency-domain trick against a float64 oracle, devices and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz import spectral
from models import ByteLM, ModelConfig
from tests.conftest import CAUSAL_SAMPLES, LEAKY_SAMPLES, load_sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = 1e-5  # float32: FFT rounding is ~1e-7 here; a real leak is orders of magnitude larger


def small(**kw) -> ByteLM:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, context=48, **kw)
    model = ByteLM(cfg).eval()
    with torch.no_grad():  # move the learned filters away from their identity init
        for name, p in model.named_parameters():
            if "spectrum" in name or "gate_bias" in name or "base_filter" in name:
                p.add_(0.5 * torch.randn_like(p))
    return model


def perturbation_leak(model: ByteLM, L: int, positions: list[int], seed: int, device: str = "cpu") -> float:
    """max |logits[:, :t] change| when token t changes, over the given t, all in one batch."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (1, L), generator=g)
    batch = ids.repeat(len(positions) + 1, 1)
    for row, t in enumerate(positions, start=1):
        batch[row, t] = (batch[row, t] + 1 + torch.randint(0, 255, (1,), generator=g)) % 256
    with torch.no_grad():  # one copy per forward: batched GEMMs may round rows by their place in the batch
        logits = torch.cat([model(row[None].to(device)).float().cpu() for row in batch])
    return max((logits[row, :t] - logits[0, :t]).abs().max().item() if t else 0.0
               for row, t in enumerate(positions, start=1))


def test_calling_convention():
    model = small()
    ids = torch.randint(0, 256, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 256)
    emb = model.get_input_embeddings()(ids)
    torch.testing.assert_close(model(inputs_embeds=emb), logits)
    out, internals = model(ids, return_internals=True)
    torch.testing.assert_close(out, logits)  # asking for internals changes nothing
    assert len(internals) == 2 and all(r.kind == "mhf" for r in internals)
    with pytest.raises(ValueError):
        model(ids, inputs_embeds=emb)


@pytest.mark.parametrize("name", CAUSAL_SAMPLES)
def test_shipped_causal_checkpoints_do_not_leak(name):
    ck = load_sample(name)
    C = ck.config.context
    rng = np.random.default_rng(0)
    lengths = sorted({1, 2, 3, int(rng.integers(4, C)), C, int(rng.integers(C + 1, 2 * C)), 2 * C})
    for i, L in enumerate(lengths):
        positions = sorted({0, L - 1, *rng.integers(0, L, size=3).tolist()})
        assert perturbation_leak(ck.model, L, positions, seed=i) <= TOL, (name, L)


@pytest.mark.parametrize("name", LEAKY_SAMPLES)
def test_shipped_leaky_checkpoints_leak(name):
    ck = load_sample(name)
    L = 300
    assert perturbation_leak(ck.model, L, [L - 1, L // 2], seed=1) > 1e-2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [{}, {"spectral_filter": False}, {"modrelu": False},
                                {"swa_every": 2, "swa_window": 8}, {"mixer": "attention"}])
def test_causal_configs_do_not_leak_at_any_position(kw, device):
    model = small(**kw).to(device)
    for L in (1, 7, 48, 96):
        assert perturbation_leak(model, L, list(range(L)), seed=L, device=device) <= TOL


@pytest.mark.parametrize("kw", [{"causal_mode": "circular"}, {"causal_mode": "two_sided"}, {"mixer": "fftnet"}])
def test_leaky_configs_leak(kw):
    model = small(**kw)
    assert perturbation_leak(model, 40, [39, 30], seed=0) > 1e-3


def test_mhf_mixing_equals_float64_oracle():
    """The mixer's FFT product against y_t = sum_j v_j (g*k)_{t-j} by np.convolve in float64."""
    model = small()
    mixer = model.blocks[0].mixer
    L, D, H = 40, 32, 4
    v = torch.randn(1, L, D)
    g = torch.randn(1, L, D)
    y, n, _ = mixer.mix(v, g)
    assert n >= 3 * L - 2
    k = mixer.causal_kernel().detach().double().numpy()  # (H, C)
    for c in range(D):
        kh = k[c // (D // H)]
        expect = np.convolve(np.convolve(v[0, :, c].double().numpy(), g[0, :, c].double().numpy()), kh)[:L]
        np.testing.assert_allclose(y[0, :, c].detach().numpy(), expect, atol=1e-4, rtol=1e-4)


def test_causal_kernel_is_masked_irfft_of_modrelu_spectrum():
    mixer = small().blocks[1].mixer
    S = mixer.learned_spectrum().detach().numpy().astype(np.complex128)
    b = mixer.gate_bias.detach().double().numpy()
    two, causal = spectral.impulse_response(spectral.modrelu(S, b))
    np.testing.assert_allclose(mixer.kernel_two_sided().detach().numpy(), two, atol=1e-5)
    np.testing.assert_allclose(mixer.causal_kernel().detach().numpy(), causal, atol=1e-5)


def test_circular_mode_is_circular_convolution():
    mixer = small(causal_mode="circular").blocks[0].mixer
    L, D = 24, 32
    v, g = torch.randn(1, L, D), torch.randn(1, L, D)
    y, n, _ = mixer.mix(v, g)
    assert n == L
    k = mixer.causal_kernel().detach().double().numpy()
    c = 5
    expect = spectral.circular_conv(v[0, :, c].double().numpy(), g[0, :, c].double().numpy(), k[c // 8])
    np.testing.assert_allclose(y[0, :, c].detach().numpy(), expect, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [{}, {"spectral_filter": False}, {"swa_every": 2, "swa_window": 8}, {"mixer": "attention"}])
def test_incremental_decoding_matches_full_forward(kw, device):
    model = small(**kw).to(device)
    ids = torch.randint(0, 256, (2, 70), device=device)  # longer than the context (48)
    full = model(ids)
    states = [b.mixer.init_state(2, device) for b in model.blocks]
    for t in range(ids.shape[1]):
        step = model.step(ids[:, t], states)
        torch.testing.assert_close(step, full[:, t], atol=2e-5, rtol=1e-4)


def test_shipped_checkpoint_incremental_equals_full():
    ck = load_sample("caracal-shakespeare")
    ids = torch.tensor([ck.tokenizer.encode("ROMEO:\nBut soft, what light through yonder window breaks?")])
    last, _ = ck.model.stream_logits(ids)
    torch.testing.assert_close(last, ck.model(ids)[:, -1], atol=1e-4, rtol=1e-4)


def test_generation_greedy_equals_full_forward_argmax():
    ck = load_sample("caracal-shakespeare")
    prompt = ck.tokenizer.encode("KING:\n")
    out = list(ck.model.generate_stream(prompt, 8, temperature=0))
    ids = list(prompt)
    for tok in out:
        with torch.no_grad():
            expect = int(ck.model(torch.tensor([ids]))[0, -1].argmax())
        assert tok == expect
        ids.append(tok)


def test_non_causal_models_refuse_incremental_but_generate():
    ck = load_sample("fftnet-shakespeare")
    with pytest.raises(ValueError, match="causal"):
        ck.model.stream_logits(torch.tensor([[65, 66]]))
    out = list(ck.model.generate_stream([65, 66], 5, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0)))
    assert len(out) == 5 and all(0 <= t < 256 for t in out)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_keeps_ffts_in_float32(device):
    model = small().to(device)
    ids = torch.randint(0, 256, (1, 40), device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        logits, internals = model(ids, return_internals=True)
    ref = model(ids)
    assert torch.isfinite(logits).all()
    assert (logits.float() - ref).abs().max().item() < 0.5  # bf16 matmuls, same function
    assert internals[0].fft_output.dtype == torch.float32


def test_config_validation():
    from models import ConfigError
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown mixer"):
        ModelConfig(mixer="mamba")
    with pytest.raises(ConfigError, match="causal_mode"):
        ModelConfig(causal_mode="future")
    cfg = ModelConfig()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert not ModelConfig(causal_mode="circular").is_causal and ModelConfig().is_causal
    assert [ModelConfig(swa_every=3, n_layers=6).layer_kind(i) for i in range(6)] == ["mhf", "mhf", "swa"] * 2


def test_local_conv_is_the_causal_depthwise_conv():
    """The MHF's shifted-product local conv against torch's own depthwise conv1d (left padding 2)
    and a float64 loop over positions; the first outputs see zeros before t = 0."""
    mixer = load_sample("caracal-shakespeare").model.blocks[2].mixer
    x = torch.randn(2, 37, mixer.cfg.d_model, dtype=torch.float64)
    got = mixer.local_conv(x.float()).double()
    w, b = mixer.conv_weight.detach().double(), mixer.conv_bias.detach().double()
    conv = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (2, 0)), w, b,
                                      groups=x.shape[-1]).transpose(1, 2)
    loop = torch.stack([b + sum(w[:, 0, k] * x[:, t - 2 + k] for k in range(3) if t - 2 + k >= 0)
                        for t in range(x.shape[1])], dim=1)
    torch.testing.assert_close(conv, loop)
    torch.testing.assert_close(got, loop, rtol=1e-5, atol=1e-5)
