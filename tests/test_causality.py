"""The causality certificate against brute-force perturbation, hand-edited kernels and checkpoints that no
sample resembles: every model here is built with ModelConfig / ByteLM, saved with save_checkpoint and loaded
back, as a user's upload would be."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from caracal_viz import Checkpoint, load_checkpoint, save_checkpoint
from caracal_viz.causality import CANNOT, CAUSAL, FLOOR_FACTOR, LEAKS, PERTURB_CAP, causality_report
from caracal_viz.gates import gate_report
from caracal_viz.text import max_text_bytes
from caracal_viz.trace import run_trace
from models import ByteLM, ModelConfig

from .conftest import load_sample
from .test_impulse import with_mode


def brute_force_leak(ck, L: int, seed: int) -> float:
    """Change every position t of a random sequence in turn (one batch); the largest change of a
    logit at a position before t."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=L)
    batch = np.repeat(base[None], L, axis=0)
    batch[np.arange(L), np.arange(L)] = (base + 1 + rng.integers(0, 255, size=L)) % 256
    with torch.no_grad():
        ref = ck.model(torch.tensor(base[None]))[0]
        out = ck.model(torch.tensor(batch))
    change = (out - ref).abs().amax(-1).numpy()  # (t, s)
    return float(np.max(np.where(np.arange(L)[None, :] < np.arange(L)[:, None], change, 0.0)))


def built(tmp_path, cfg: ModelConfig, edit=None, seed: int = 0, name: str = "model") -> Checkpoint:
    """A fresh ByteLM of `cfg` (seeded), edited in place by `edit(model)`, saved and loaded back."""
    torch.manual_seed(seed)
    model = ByteLM(cfg).eval()
    if edit is not None:
        with torch.no_grad():
            edit(model)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, {"note": "built by the test"})
    return load_checkpoint(path, device="cpu")


def set_two_sided_kernel(lags: dict[int, float]):
    """An edit that gives every MHF head the two-sided kernel {lag: weight} (negative lags read the future),
    through its learned spectrum (modReLU off: the kernel is irfft of the spectrum itself)."""
    def edit(model):
        for block in model.blocks:
            mixer = block.mixer
            C = mixer.context
            k = torch.zeros(mixer.n_heads, 2 * C, dtype=torch.float64)
            for lag, w in lags.items():
                k[:, lag % (2 * C)] = w  # irfft layout: index 2C - m is lag -m
            mixer.spectrum.copy_(torch.view_as_real(torch.fft.rfft(k, dim=-1)).float())
    return edit


def scale_logits(c: float):
    def edit(model):
        model.ln_f.weight.mul_(c)
        model.ln_f.bias.mul_(c)
    return edit


def assert_consistent(r):
    """The verdict never contradicts a per-block line, and the numbers are what the verdict says."""
    assert r.verdict in (CAUSAL, LEAKS, CANNOT) and r.causal == (r.verdict == CAUSAL)
    blocks = {p.verdict for p in r.per_layer}
    if LEAKS in blocks:
        assert r.verdict == LEAKS
    if r.verdict == CAUSAL:
        assert blocks == {CAUSAL}
        assert np.isfinite(r.model_leak) and r.model_leak <= FLOOR_FACTOR * r.floor
        assert all(p.structure.status != "leaks" for p in r.per_layer)
    if r.verdict == CANNOT:
        assert r.nonfinite and "NaN/Inf from" in r.headline and LEAKS not in blocks
    assert "\n" not in r.summary and r.summary


# ---- the shipped samples -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-shakespeare"])
def test_pad_samples_are_proved_causal_and_brute_force_agrees(name):
    ck = load_sample(name)
    r = causality_report(ck)
    assert_consistent(r)
    assert r.verdict == CAUSAL and r.config_causal and r.headline == "Causal"
    longest = max_text_bytes(ck.device)  # the structure is proved to the max text length, perturbed to PERTURB_CAP
    assert r.lengths[-1] == min(longest, PERTURB_CAP[ck.device.type]) and ck.config.context in r.lengths
    assert all(p.structure.status == "proved" and f"every length 2..{longest}" in p.structure.text for p in r.per_layer)
    assert all(p.response > 0 for p in r.per_layer) and r.model_response > 0  # the perturbations reached the outputs
    assert r.floor > 0 and r.floor_by_length[16] == r.floor  # a floor measured in the run, for the record
    assert brute_force_leak(ck, 32, seed=1) <= FLOOR_FACTOR * r.floor
    assert r.precision == "float32" and "float32" in r.coverage


@pytest.mark.parametrize("name,mode,words", [
    ("caracal-circular-leaky", "circular", "wrap-around"),
    ("fftnet-shakespeare", "global", "global mixing"),
])
def test_leaky_samples_are_caught_with_their_source(name, mode, words):
    ck = load_sample(name)
    r = causality_report(ck, lengths=[16], trials=3, seed=2)
    assert_consistent(r)
    brute = brute_force_leak(ck, 16, seed=5)
    assert r.verdict == LEAKS and not r.config_causal
    assert r.floor_ratio > 1e3 and brute > 1e3 * r.floor
    # the certificate samples positions, brute force takes all of them: same order of magnitude
    assert brute / 5 < r.model_leak < brute * 5
    first = r.per_layer[0]
    assert first.verdict == LEAKS and first.causal_mode == mode and words in first.source
    assert first.leak_by_offset.shape == (16,)
    assert first.leak_by_offset[first.worst_offset] == first.leak_by_offset.max()
    assert words in r.summary and "LEAKS" in r.summary
    if mode == "circular":
        assert all(p.structure.status == "leaks" and "N = L" in p.structure.text for p in r.per_layer)
    else:
        assert all(p.structure.status == "none" and "perturbation evidence only" in p.source for p in r.per_layer)


def test_two_sided_sample_kernel_leak_is_located():
    ck = with_mode("caracal-periodic", "two_sided")
    r = causality_report(ck, lengths=[32], trials=1)
    assert_consistent(r)
    assert r.verdict == LEAKS and r.model_leak > 1e-2
    assert all(p.verdict == LEAKS and p.structure.status == "leaks" and "future lag" in p.source for p in r.per_layer)


# ---- scale: the verdict is the same whatever the logits' size ------------------------------------
@pytest.mark.parametrize("mode,verdict", [("circular", LEAKS), ("pad", CAUSAL)])
def test_scaling_the_logits_never_changes_the_verdict(tmp_path, mode, verdict):
    """A freshly initialised circular model leaks ~1e-3 into earlier logits: scaled by 1e-3 that was under
    the old absolute tolerance (certified causal while every block line said wrap-around)."""
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, context=64, causal_mode=mode)
    reports = {c: causality_report(built(tmp_path, cfg, scale_logits(c), name=f"s{c}")) for c in (1.0, 1e-3, 1e3)}
    for c, r in reports.items():
        assert_consistent(r)
        assert r.verdict == verdict, (c, r.summary)
    ratios = [r.floor_ratio for r in reports.values()]
    if verdict == LEAKS:
        assert min(ratios) > 100 * FLOOR_FACTOR  # far above rounding at every scale
        leak = reports[1.0].model_leak
        assert reports[1e-3].model_leak == pytest.approx(1e-3 * leak, rel=0.05)
        assert reports[1e3].model_leak == pytest.approx(1e3 * leak, rel=0.05)
    else:
        assert max(ratios) <= FLOOR_FACTOR


# ---- leaks that only reach far ------------------------------------------------------------------
def test_a_single_negative_lag_at_minus_context_is_caught(tmp_path):
    """Weight only on lag -C: it reads the token C ahead, so only sequences longer than the context see it
    (the old lengths, 16 and min(C, 512), never did)."""
    C = 64
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, context=C, modrelu=False, causal_mode="two_sided")
    r = causality_report(built(tmp_path, cfg, set_two_sided_kernel({0: 1.0, -C: 0.5})))
    assert_consistent(r)
    assert r.verdict == LEAKS
    s = r.per_layer[0].structure
    assert s.status == "leaks" and s.future_lag == C and s.first_length == C + 1
    assert f"lag -{C}" in r.summary
    assert r.leak_by_length[C] <= FLOOR_FACTOR * (r.floor_by_length[C] or 0)  # at L = C it cannot show
    assert r.leak_by_length[max(r.lengths)] > 1e3 * r.floor_by_length[max(r.lengths)]  # past the context it does
    # through the gate kernel g the token C ahead reaches every output up to C before it, never farther
    assert np.flatnonzero(r.per_layer[0].leak_by_offset > 0).max() == C


def test_a_negative_lag_between_512_and_the_context_of_a_1024_model(tmp_path):
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, context=1024, modrelu=False, causal_mode="two_sided")
    r = causality_report(built(tmp_path, cfg, set_two_sided_kernel({0: 1.0, -700: 0.5})))
    assert_consistent(r)
    assert r.verdict == LEAKS
    s = r.per_layer[0].structure
    assert s.status == "leaks" and s.future_lag == 700 and "lag -700" in s.text
    assert r.floor_ratio > 1e3  # the perturbation sees it too, at lengths past 700
    # the same weights with the causal mask: the far future lag is masked, proved causal
    pad = causality_report(built(tmp_path, dataclasses.replace(cfg, causal_mode="pad"),
                                 set_two_sided_kernel({0: 1.0, -700: 0.5}), name="pad"))
    assert_consistent(pad)
    assert pad.verdict == CAUSAL and pad.per_layer[0].structure.status == "proved"


def test_a_circular_model_with_a_tiny_mixer_output_is_not_certified(tmp_path):
    """The mixer's leak is 1e-6 of the logits' scale, under the logits' own float32 rounding; the
    structure (N = L) and the mixer's own perturbation (relative leak ~1) still see it."""
    def tiny(model):
        for block in model.blocks:
            block.mixer.w_o.weight.mul_(1e-6)
            block.mixer.w_o.bias.zero_()
    r = causality_report(built(tmp_path, ModelConfig(d_model=32, n_layers=2, n_heads=2, context=64,
                                                      causal_mode="circular"), tiny))
    assert_consistent(r)
    assert r.verdict == LEAKS
    assert all(p.verdict == LEAKS and p.structure.status == "leaks" and p.relative_leak > 0.05 for p in r.per_layer)
    assert "wrap-around" in r.summary


# ---- models unlike the samples ------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [
    ModelConfig(d_model=24, n_layers=3, n_heads=3, context=37, modrelu=False),
    ModelConfig(d_model=20, n_layers=4, n_heads=5, context=100, swa_every=2, swa_window=7),
    ModelConfig(d_model=12, n_layers=2, n_heads=1, context=9, spectral_filter=False, swa_every=1, swa_window=3),
    ModelConfig(mixer="attention", d_model=16, n_layers=2, n_heads=4, context=50),
], ids=["pad-odd-shape", "hybrid", "hybrid-all-swa-no-filter", "transformer"])
def test_random_init_causal_models_of_unusual_shapes_are_certified(tmp_path, cfg):
    ck = built(tmp_path, cfg, seed=3)
    r = causality_report(ck)
    assert_consistent(r)
    assert r.verdict == CAUSAL, r.summary
    for p in r.per_layer:
        if p.kind == "mhf":
            assert p.structure.status == "proved"
        else:
            assert p.structure.status == "none" and "perturbation evidence only" in p.source and p.response > 0
    assert brute_force_leak(ck, 24, seed=0) <= FLOOR_FACTOR * max(r.floor, 1e-30)


def test_hybrid_model_blocks_are_reported_in_order(tmp_path):
    cfg = ModelConfig(d_model=32, n_layers=3, n_heads=2, context=32, swa_every=2, swa_window=8)
    ck = built(tmp_path, cfg)
    r = causality_report(ck, lengths=[24], trials=1)
    assert r.causal and [p.kind for p in r.per_layer] == ["mhf", "swa", "mhf"]
    assert [x is None for x in run_trace(ck, "hello").layers] == [False, True, False]
    assert [x is None for x in gate_report(ck)] == [False, True, False]


def test_fftnet_at_initialisation_leaks(tmp_path):
    """At init FFTNet's modulation is zero and its filter all ones: only modReLU's eps and the global FFT
    read the future, by ~1e-4 of the logits, far above the rounding floor."""
    r = causality_report(built(tmp_path, ModelConfig(mixer="fftnet", d_model=32, n_layers=2, n_heads=2, context=64)))
    assert_consistent(r)
    assert r.verdict == LEAKS and r.floor_ratio > 100 * FLOOR_FACTOR
    assert all(p.structure.status == "none" and p.verdict == LEAKS for p in r.per_layer)


# ---- NaN / Inf -------------------------------------------------------------------------------------
def overflow(model):
    """Finite weights whose activations overflow float32 inside block 1's MLP."""
    model.blocks[1].mlp.fc.weight.mul_(1e25)
    model.blocks[1].mlp.w_o.weight.mul_(1e25)


@pytest.mark.parametrize("damage,where", [
    (lambda m: m.blocks[1].mixer.w_v.weight.__setitem__((0, 0), float("nan")), "the weights of block 1"),
    (lambda m: m.blocks[0].mlp.fc.bias.__setitem__(3, float("inf")), "the weights of block 0"),
    (lambda m: m.blocks[1].mixer.spectrum.__setitem__((0, 5, 0), float("nan")), "the weights of block 1"),
    (overflow, "block 1"),
], ids=["nan-weight", "inf-weight", "nan-spectrum", "overflowing-activations"])
def test_nan_and_inf_cannot_be_certified(tmp_path, damage, where):
    cfg = ModelConfig(d_model=32, n_layers=3, n_heads=2, context=64)
    ck = built(tmp_path, cfg, damage)  # NaN/Inf weights load (flagged in ck.nonfinite), as a user's file would
    assert bool(ck.nonfinite) == (where != "block 1")
    r = causality_report(ck)
    assert_consistent(r)
    assert r.verdict == CANNOT and not r.causal
    assert r.headline.startswith(f"Cannot certify: NaN/Inf from {where}")
    assert np.isnan(r.model_leak) and "cannot certify" in r.summary


def test_a_proved_leak_is_not_hidden_by_nan(tmp_path):
    """NaN in the activations of a circular model: its wrap-around is proved from the weights anyway."""
    cfg = ModelConfig(d_model=32, n_layers=3, n_heads=2, context=64, causal_mode="circular")
    r = causality_report(built(tmp_path, cfg, overflow))
    assert_consistent(r)
    assert r.verdict == LEAKS and r.nonfinite == "block 1"


# ---- arguments and precision --------------------------------------------------------------------
def test_bad_arguments():
    ck = load_sample("caracal-periodic")
    for kwargs in ({"lengths": [1]}, {"lengths": []}, {"lengths": "abc"}, {"lengths": [10**6]}, {"trials": 0},
                   {"precision": "fp8"}):
        with pytest.raises(ValueError):
            causality_report(ck, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's answer to bf16")
def test_bf16_is_refused_on_the_cpu_with_a_clear_message():
    with pytest.raises(ValueError, match="CUDA only"):
        causality_report(load_sample("caracal-periodic"), precision="bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is certified on CUDA (run on the GPU)")
@pytest.mark.parametrize("name", ["caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky",
                                  "fftnet-shakespeare"])
def test_bf16_on_cuda_is_causal_up_to_rounding_and_still_catches_leaks(name):
    ck = load_sample(name, device="cuda")
    r32, r16 = causality_report(ck), causality_report(ck, precision="bf16")
    for r in (r32, r16):
        assert_consistent(r)
    if ck.config.is_causal:
        assert r32.verdict == r16.verdict == CAUSAL
        assert r16.floor > r32.floor and r16.headline.startswith(("Causal up to bf16 rounding", "Causal"))
    else:
        assert r32.verdict == r16.verdict == LEAKS and r16.floor_ratio > 10


def test_same_arguments_same_numbers():
    ck = load_sample("caracal-circular-leaky")
    a, b = causality_report(ck, lengths=[16, 40]), causality_report(ck, lengths=[16, 40])
    assert a.model_leak == b.model_leak and a.floor == b.floor and a.summary == b.summary


# ---- wording ------------------------------------------------------------------------------------
def zero_mixer_output(model):
    for block in model.blocks:
        block.mixer.w_o.weight.zero_()
        block.mixer.w_o.bias.zero_()


def test_no_line_says_a_leak_of_up_to_zero(tmp_path):
    """A leak of exactly 0 is said in words, never as "up to 0": a causal sample whose earlier logits never
    move, and a circular model whose wrap-around the structure proves while its mixers output nothing."""
    from caracal_viz.figures import causality_figure

    causal = causality_report(load_sample("caracal-periodic"))
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, context=64, causal_mode="circular")
    silent = causality_report(built(tmp_path, cfg, zero_mixer_output), lengths=[16], trials=1)
    assert causal.verdict == CAUSAL and causal.model_leak == 0
    assert silent.verdict == LEAKS and silent.model_leak == 0
    assert causal.leak_text == "changing a token moved no earlier logit at all (float32)"
    assert silent.leak_text.startswith("no earlier logit moved in the perturbed runs, but the structure")
    assert "LEAKS: no earlier logit moved in the perturbed runs, but a block leaks; from block 0" in silent.summary
    for r in (causal, silent):
        subtitle = causality_figure(r).layout.title.subtitle.text.replace("<br>", " ")
        assert r.leak_text in subtitle
        for line in (r.headline, r.summary, r.coverage, r.leak_text, subtitle):
            assert "up to 0 " not in line + " " and "floor 0 " not in line + " ", line
