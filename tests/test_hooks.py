"""Hook points (models/hooks.py) against independent oracles: a model copy with its weights edited
by hand, the learned spectrum edited in place by a numpy mask, the internals recorded before the
hook points existed (tests/data/internals_before_hooks.npz, written by the previous
`return_internals` code), bit-for-bit identity of identity hooks, start/stop_at_layer against the
full forward, the fast path against the plain one, removal after exceptions, thread isolation."""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ByteLM, MixerInternals, ModelConfig
from tests.conftest import SAMPLE_NAMES, load_sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CONFIGS = [{}, {"causal_mode": "circular"}, {"causal_mode": "two_sided"}, {"spectral_filter": False},
           {"modrelu": False}, {"swa_every": 2, "swa_window": 8}, {"mixer": "fftnet"}, {"mixer": "attention"}]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def small(device="cpu", **kw) -> ByteLM:
    torch.manual_seed(0)
    model = ByteLM(ModelConfig(d_model=32, n_layers=2, n_heads=4, context=48, **kw)).to(device).eval()
    with torch.no_grad():  # away from the identity init
        for name, p in model.named_parameters():
            if "spectrum" in name or "gate_bias" in name or "base_filter" in name:
                p.add_(0.5 * torch.randn_like(p))
    return model


def ids_of(text: str, device="cpu") -> torch.Tensor:
    return torch.tensor([list(text.encode())], device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", CONFIGS)
def test_identity_hooks_change_nothing_bit_for_bit(kw, device):
    model = small(device, **kw)
    ids = torch.randint(0, 256, (2, 61), device=device)
    names = [n for n in model.hook_dict if not n.endswith("hook_product")]  # that one changes the path
    seen = []

    def look(x, hook):
        seen.append(hook.name)
        return None

    with torch.no_grad():
        ref = model(ids)
        got_none = model.run_with_hooks(ids, fwd_hooks=[(lambda n: n in names, look)])
        got_same = model.run_with_hooks(ids, fwd_hooks=[(lambda n: n in names, lambda x, hook: x.clone())])
        logits, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    assert torch.equal(got_none, ref) and torch.equal(got_same, ref) and torch.equal(logits, ref)
    called = {n for n in names if n in seen}
    assert set(cache) == called
    # every block-level point and every mixer point that this config computes was reached
    assert {"hook_embed", "blocks.1.hook_resid_post", "blocks.0.hook_mixer_in"} <= called
    if kw.get("mixer", "mhf") == "mhf" and not kw.get("swa_every"):
        expected = {"hook_v", "hook_g", "hook_mixed"} | ({"hook_spectrum", "hook_kernel"} if kw.get(
            "spectral_filter", True) else set()) | ({"hook_gate"} if kw.get("modrelu", True) and kw.get(
                "spectral_filter", True) else set())
        assert {n.split(".")[-1] for n in called if ".mixer." in n} == expected


def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal to float32 rounding: 1e-5 relative, or 1e-5 of the array's largest magnitude."""
    scale = float(np.abs(want).max()) if want.size and np.issubdtype(want.dtype, np.number) else 0.0
    if np.issubdtype(want.dtype, np.floating) or np.issubdtype(want.dtype, np.complexfloating):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("name", ["caracal-periodic", "fftnet-shakespeare"])
def test_internals_equal_those_recorded_before_the_hook_points(name):
    """MixerInternals is now a view of the hook points: the record of the previous code, to float32
    rounding (bit for bit on the machine that wrote the record; another CPU's matmul kernels, AVX-512
    or AMX, round differently, by about 1e-6 of each array's scale)."""
    ref = np.load(Path(__file__).parent / "data" / "internals_before_hooks.npz")
    ck = load_sample(name)
    text = "abcabcabcxyzxyzxyzhello world 12" if name != "fftnet-shakespeare" else "First Citizen:\nSpeak, speak."
    with torch.no_grad():
        logits, recs = ck.model(ids_of(text), return_internals=True)
    same(logits.numpy(), ref[f"{name}/logits"], "logits")
    compared = 0
    for i, rec in enumerate(recs):
        for f in dataclasses.fields(MixerInternals):
            key, value = f"{name}/{i}/{f.name}", getattr(rec, f.name)
            if value is None:
                assert key not in ref, key
                continue
            got = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            same(got, ref[key], key)
            compared += 1
    assert compared == sum(1 for k in ref.files if k.startswith(name + "/") and k != f"{name}/logits")


def test_run_with_cache_values_are_the_forward_pass_tensors():
    """The cache against a hand-written forward of block 0 (embedding, ln1, the mixer's streams)."""
    ck = load_sample("caracal-periodic")
    model, ids = ck.model, ids_of("abcabcabcxyzxyz")
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids)
        emb = model.tok_emb(ids)
        b0 = model.blocks[0]
        u = b0.mixer.ln(b0.mixer.local_conv(b0.ln1(emb)))
        H, dh = ck.config.n_heads, ck.config.head_dim
        torch.testing.assert_close(cache["hook_embed"], emb, rtol=0, atol=0)
        torch.testing.assert_close(cache["blocks.0.hook_mixer_in"], b0.ln1(emb), rtol=0, atol=0)
        torch.testing.assert_close(cache["blocks.0.mixer.hook_v"], b0.mixer.w_v(u).view(1, -1, H, dh), rtol=0, atol=0)
        torch.testing.assert_close(cache["blocks.0.mixer.hook_spectrum"], b0.mixer.gated_spectrum(), rtol=0, atol=0)
        torch.testing.assert_close(cache["blocks.0.mixer.hook_kernel"], b0.mixer.causal_kernel()[:, :ids.shape[1]],
                                   rtol=0, atol=0)
        assert cache["blocks.0.mixer.hook_spectrum"].is_complex()
        torch.testing.assert_close(model.ln_f(cache["blocks.1.hook_resid_post"]) @ model.tok_emb.weight.T, logits)
    assert "blocks.0.mixer.hook_product" in cache  # names_filter=None caches every point
    assert set(model.run_with_cache(ids, names_filter="hook_embed")[1]) == {"hook_embed"}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_start_at_layer_from_cached_resid_pre_equals_the_full_forward(name, device):
    ck = load_sample(name, device)
    ids = ids_of(TEXT, device)
    n = ck.config.n_layers
    with torch.no_grad():
        full, cache = ck.model.run_with_cache(ids, names_filter=lambda s: s.endswith("hook_resid_pre"))
        for k in range(n):
            resumed = ck.model(cache[f"blocks.{k}.hook_resid_pre"], start_at_layer=k)
            assert torch.equal(resumed, full), (name, k)
            stopped = ck.model(ids, stop_at_layer=k)
            assert torch.equal(stopped, cache[f"blocks.{k}.hook_resid_pre"])
            if k + 1 < n:
                mid = ck.model(cache[f"blocks.{k}.hook_resid_pre"], start_at_layer=k, stop_at_layer=k + 1)
                assert torch.equal(mid, cache[f"blocks.{k + 1}.hook_resid_pre"])
    for bad in ({"start_at_layer": n + 1}, {"stop_at_layer": -1}, {"start_at_layer": 1, "stop_at_layer": 0}):
        with pytest.raises(ValueError, match="must be an integer"):
            ck.model(ids, **bad)
    with pytest.raises(ValueError, match="residual stream"):
        ck.model(ids, start_at_layer=1)  # byte ids are not a residual stream


def test_zero_ablating_a_head_equals_a_model_whose_output_projection_ignores_it():
    ck = load_sample("caracal-shakespeare")
    layer, head = 3, 2
    dh = ck.config.head_dim
    edited = copy.deepcopy(ck.model)
    with torch.no_grad():
        edited.blocks[layer].mixer.w_o.weight[:, head * dh:(head + 1) * dh] = 0.0

    def zero(y, hook):
        y = y.clone()
        y[:, :, head] = 0.0
        return y

    ids = ids_of(TEXT * 2)
    with torch.no_grad():
        hooked = ck.model.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.mixer.hook_mixed", zero)])
        oracle = edited(ids)
        clean = ck.model(ids)
    torch.testing.assert_close(hooked, oracle, rtol=1e-5, atol=1e-5)
    assert (hooked - clean).abs().max() > 1e-2  # the head mattered


@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-shakespeare"])
def test_band_stop_by_hook_equals_the_learned_spectrum_edited_by_a_numpy_mask(name):
    ck = load_sample(name)
    C = ck.config.context
    layer, head, lo, hi = 1, 1, 0.1, 0.15  # cycles/token
    freqs = np.arange(C + 1) / (2 * C)  # the rfft grid of size 2C
    mask = np.ones((ck.config.n_heads, C + 1))
    mask[head, (freqs >= lo) & (freqs <= hi)] = 0.0
    edited = copy.deepcopy(ck.model)
    with torch.no_grad():
        edited.blocks[layer].mixer.spectrum.mul_(torch.as_tensor(mask[..., None], dtype=torch.float32))
    m = torch.as_tensor(mask, dtype=torch.float32)
    ids = ids_of(TEXT * 3)
    with torch.no_grad():
        hooked = ck.model.run_with_hooks(
            ids, fwd_hooks=[(f"blocks.{layer}.mixer.hook_spectrum", lambda s, hook: s * m)])
        oracle = edited(ids)
        clean = ck.model(ids)
    torch.testing.assert_close(hooked, oracle, rtol=1e-5, atol=1e-5)
    assert (hooked - clean).abs().max() > 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [{}, {"causal_mode": "circular"}, {"causal_mode": "two_sided"},
                                {"spectral_filter": False}])
def test_a_hook_on_the_product_takes_the_plain_path_with_the_same_output(kw, device):
    model = small(device, **kw)
    ids = torch.randint(0, 256, (2, 70), device=device)
    with torch.no_grad():
        fast = model(ids)
        _, cache = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_product"))
        via_plain = model.run_with_hooks(ids, fwd_hooks=[(lambda n: n.endswith("hook_product"), lambda x, h: None)])
        for b in model.blocks:
            b.mixer.fast = False
        try:
            plain = model(ids)
        finally:
            for b in model.blocks:
                b.mixer.fast = True
    assert torch.equal(via_plain, plain)  # the hook ran the plain path
    torch.testing.assert_close(via_plain, fast, rtol=1e-5, atol=1e-5)
    n = model.blocks[0].mixer.plain_fft_size(70)
    assert cache["blocks.0.mixer.hook_product"].shape == (2, n // 2 + 1, 4, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_a_kernel_hook_gives_the_same_output_on_the_fast_and_the_plain_path(device):
    """A kernel edit (hook_kernel) is applied the same way by the fast path (kernel rebuilt, not
    cached) and by the plain path; with and without gradients (FFTConvFunction)."""
    model = small(device)
    ids = torch.randint(0, 256, (1, 90), device=device)

    def halve(k, hook):
        return k * torch.linspace(1.0, 0.0, k.shape[-1], device=k.device)

    fwd = [(lambda n: n.endswith("hook_kernel"), halve)]
    with torch.no_grad():
        clean = model(ids)
        fast = model.run_with_hooks(ids, fwd_hooks=fwd)
        again = model(ids)  # the cache was not poisoned by the hooked kernel
        for b in model.blocks:
            b.mixer.fast = False
        plain = model.run_with_hooks(ids, fwd_hooks=fwd)
        for b in model.blocks:
            b.mixer.fast = True
    grad = model.run_with_hooks(ids, fwd_hooks=fwd)
    assert torch.equal(again, clean) and (fast - clean).abs().max() > 1e-3
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.detach(), plain, rtol=1e-5, atol=1e-5)


def test_hooks_are_removed_after_an_exception():
    model = small()
    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        ref = model(ids)

    def boom(x, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.1.mixer.hook_v", boom)])
    with pytest.raises(KeyError):
        with model.hooks([("blocks.0.hook_mixer_out", lambda x, h: x * 0)]):
            raise KeyError("body failed")
    with pytest.raises(ValueError, match="returned shape"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda x, h: x[:, :1])])
    with pytest.raises(RuntimeError):
        model.run_with_cache(inputs_embeds=torch.zeros(1, 3, 5))  # the forward itself fails
    assert not any(p.active for p in model.hook_dict.values())
    with torch.no_grad():
        assert torch.equal(model(ids), ref)
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.9.hook_v", lambda x, h: None)])


def test_hooks_stay_in_their_thread():
    """Streamlit sessions share a model between threads: one thread's hooks never reach another."""
    model = small()
    ids = torch.randint(0, 256, (1, 30))
    with torch.no_grad():
        ref = model(ids)
    inside, other = threading.Event(), {}

    def worker():
        inside.wait(10)
        with torch.no_grad():
            other["logits"] = model(ids)

    t = threading.Thread(target=worker)
    t.start()
    with model.hooks([("blocks.0.hook_mixer_out", lambda x, h: x * 0)]):
        inside.set()
        t.join(10)
        with torch.no_grad():
            hooked = model(ids)
    assert torch.equal(other["logits"], ref) and not torch.equal(hooked, ref)


def test_incremental_decoding_refuses_hooks_and_works_after_them():
    ck = load_sample("caracal-periodic")
    prompt = ids_of("abcabcab")
    with ck.model.hooks([("hook_embed", lambda x, h: None)]):
        with pytest.raises(ValueError, match="runs no hooks"):
            ck.model.stream_logits(prompt)
    with torch.no_grad():
        last, states = ck.model.stream_logits(prompt)
        torch.testing.assert_close(last, ck.model(prompt)[:, -1], rtol=1e-4, atol=1e-4)


def test_gradients_flow_through_hooks():
    model = small()
    ids = torch.randint(0, 256, (1, 25))
    scale = torch.ones(4, requires_grad=True)

    def scale_heads(y, hook):
        return y * scale[:, None]

    out = model.run_with_hooks(ids, fwd_hooks=[("blocks.0.mixer.hook_mixed", scale_heads)])
    out.sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad).all() and scale.grad.abs().sum() > 0


def test_a_forward_pass_under_hooks_runs_them_and_the_next_one_does_not():
    from caracal_viz.predict import next_token_view
    from caracal_viz.trace import forward_pass
    ck = load_sample("caracal-periodic")
    text = "abcabcabcabc"
    clean = next_token_view(ck, forward_pass(ck, text)).mean_bits
    with ck.model.hooks([("blocks.1.hook_mixer_out", lambda x, h: x * 0)]):
        hooked = next_token_view(ck, forward_pass(ck, text)).mean_bits
    assert hooked != clean and next_token_view(ck, forward_pass(ck, text)).mean_bits == clean


def test_a_deep_copy_of_the_model_runs_the_hooks_attached_to_the_original():
    """A float64 copy made to measure rounding (the certificate does) must see the same intervention."""
    model = small()
    ids = torch.randint(0, 256, (1, 20))
    twin = copy.deepcopy(model).double()
    with torch.no_grad(), model.hooks([("blocks.0.hook_mixer_out", lambda x, h: x * 0)]):
        hooked, hooked_twin = model(ids), twin(ids)
    with torch.no_grad():
        clean_twin = twin(ids)
    torch.testing.assert_close(hooked_twin.float(), hooked, rtol=1e-4, atol=1e-4)
    assert (clean_twin.float() - hooked).abs().max() > 1e-3
