"""models.cache.BoundedCache (the MHF kernel-spectrum cache) and models.precision.fft_options'
storage: bounded, oldest out, safe from several threads, empty in a deep copy of a model."""

from __future__ import annotations

import copy
import dataclasses
import threading

import torch

from models import ByteLM, ModelConfig
from models.cache import BoundedCache
from models.precision import FFTOptions, fft_options, fft_options_in_effect


def test_oldest_entry_goes_first_and_a_rewrite_keeps_the_size():
    c = BoundedCache(3)
    for k in "abc":
        c.put(k, k.upper())
    c.put("a", "A2")  # a key already there: nothing is forgotten
    assert len(c) == 3 and c.get("a") == "A2"
    c.put("d", "D")
    assert c.get("a") is None and [c.get(k) for k in "bcd"] == ["B", "C", "D"]


def test_many_threads_writing_keep_the_bound_and_lose_nothing_they_may_keep():
    c = BoundedCache(16)
    errors = []

    def work(t):
        try:
            for i in range(2000):
                c.put((t, i), i)
                c.get((t, i - 1))
        except Exception as e:  # noqa: BLE001 - a race surfaces as any exception
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(c) == 16


def test_a_deep_copy_of_a_model_starts_with_an_empty_spectrum_cache():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=4, context=48, causal_mode="two_sided")
    m = ByteLM(cfg).eval()
    with torch.no_grad():
        m.blocks[0].mixer.spectrum.add_(0.5 * torch.randn_like(m.blocks[0].mixer.spectrum))
    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        m(ids)
    assert len(m.blocks[0].mixer._spectrum_cache) == 1
    twin = copy.deepcopy(m)
    assert len(twin.blocks[0].mixer._spectrum_cache) == 0
    # the interventions' switch of a copy's mode: the copy runs as a model built in that mode
    tm = twin.blocks[0].mixer
    tm.cfg = dataclasses.replace(tm.cfg, causal_mode="pad")
    built = ByteLM(dataclasses.replace(cfg, causal_mode="pad")).eval()
    built.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(ids), built(ids), rtol=0, atol=1e-12)
        assert not torch.allclose(twin(ids), m(ids), atol=1e-6)


def test_fft_options_nest_and_restore():
    assert fft_options_in_effect() == FFTOptions(None, 0)
    with fft_options(torch.float32, 64):
        with fft_options(min_size=128):
            assert fft_options_in_effect() == FFTOptions(None, 128)
        assert fft_options_in_effect() == FFTOptions(torch.float32, 64)
    assert fft_options_in_effect() == FFTOptions(None, 0)
