"""caracal_viz.attribution against independent oracles: one forward pass per edited text (brute
force loops), the completeness property of integrated gradients, the whole-model influence map
(vmapped VJPs), np.convolve of the recorded kernels, numpy ranks; the causal and leaky samples;
the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from models.fourier import grid_fft_size
from caracal_viz import attribution
from caracal_viz.attribution import METHODS, attribute, curve_points
from caracal_viz.influence import token_influence
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass
from tests.conftest import CAUSAL_SAMPLES, LEAKY_SAMPLES, ROOT, SAMPLE_NAMES, load_sample, sample_path

TEXT = "ROMEO:\nBut soft, what light through yonder"  # 42 bytes
PERIODIC = "abcabcabcabc qwertyuiqwertyui thequick"
DEVICE = os.environ.get("CARACAL_TEST_DEVICE", "cpu")  # "cuda" runs the library's tests on a GPU
POSITION = 19  # the prediction of a byte that is not the baseline byte (a space)


def text_for(name: str) -> str:
    return PERIODIC if name == "caracal-periodic" else TEXT


_reports: dict = {}


def report(name: str, position: int = POSITION, **kw):
    key = (name, position, tuple(sorted(kw.items())))
    if key not in _reports:
        _reports[key] = attribute(load_sample(name, DEVICE), text_for(name), position, **kw)
    return _reports[key]


@torch.no_grad()
def logp_of(ck, ids: np.ndarray, position: int, target: int) -> float:
    """The oracle: one forward pass of one text, float64 log-softmax at the position."""
    logits = ck.model(torch.as_tensor(np.asarray(ids), device=ck.device)[None])[0, position].double()
    return float(torch.log_softmax(logits, -1)[target])


@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-shakespeare", "fftnet-shakespeare"])
def test_integrated_gradients_meets_completeness_within_captums_delta(name):
    rep = report(name, methods=("integrated_gradients",))
    ck, ids = load_sample(name, DEVICE), rep.ids
    a = rep.methods["integrated_gradients"]
    gap = logp_of(ck, ids, POSITION, rep.target) - logp_of(ck, np.full_like(ids, 0x20), POSITION, rep.target)
    assert abs(a.signed.sum() - gap) <= abs(a.delta) + 1e-5 * (1 + abs(gap))
    # the steps doubled until the delta is a small part of what IG distributes
    assert abs(a.delta) <= attribution.IG_TOLERANCE * abs(gap) or a.steps == attribution.MAX_IG_STEPS
    assert a.steps >= attribution.DEFAULT_IG_STEPS


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_occlusion_equals_a_brute_force_loop(name, monkeypatch):
    # 3 rows a batch: the unedited text and 2 edited ones, the last batch padded
    monkeypatch.setattr(attribution, "_MAX_ROWS", {"cpu": 3})
    monkeypatch.setattr(attribution, "_MAX_ROWS_GPU", 3)
    ck = load_sample(name, DEVICE)
    text = text_for(name)
    rep = attribute(ck, text, POSITION, ("occlusion",))
    ids = np.array(list(text.encode()))
    f0 = logp_of(ck, ids, POSITION, ids[POSITION + 1])
    brute = np.zeros(ids.size)
    for j in range(ids.size):
        edited = ids.copy()
        edited[j] = 0x20
        brute[j] = f0 - logp_of(ck, edited, POSITION, ids[POSITION + 1])
    np.testing.assert_allclose(rep.methods["occlusion"].signed, brute, rtol=0, atol=2e-5)
    assert np.all(rep.methods["occlusion"].signed[ids == 0x20] == 0)
    assert np.abs(brute).max() > 1e-2


@pytest.mark.parametrize("name,L", [(n, 240) for n in CAUSAL_SAMPLES] + [("caracal-periodic", 700)])
def test_suffix_scores_equal_the_model_on_each_whole_text(name, L, monkeypatch):
    # the causal fast path (only the edited suffix recomputed, the FFT product updated) against one
    # plain forward pass of each whole edited text; 3 rows a batch, so groups of different first edits
    # and FFT sizes, a padded last batch, and groups starting in the prefix's first half (run whole)
    # and second half (updated) all occur; at 700 bytes an updated suffix (just past the middle) is
    # longer than caracal-periodic's kernel (256 lags)
    monkeypatch.setattr(attribution, "_MAX_ROWS", {"cpu": 3})
    monkeypatch.setattr(attribution, "_MAX_ROWS_GPU", 3)
    ck = load_sample(name, DEVICE)
    assert attribution.suffix_applies(ck)
    ids = np.array(list((TEXT * 20)[:L].encode()))
    rng = np.random.default_rng(5)
    texts = np.repeat(ids[None], 16, axis=0)
    for r in range(11):
        texts[r, rng.choice(L, rng.integers(1, 4), replace=False)] = rng.integers(0, 256)
    texts[11, 0] = 0x7E  # the first byte
    texts[12] = 0x20  # every byte
    texts[13, L - 40:] = 0x41  # only bytes after the earlier positions
    texts[14, [60, 61]] = ids[[61, 60]]  # two neighbours swapped (the local conv reads both)
    texts[15, L // 2 + 5] = 0x7E  # just past the middle of the longest prefix
    for position in (L - 2, L // 2, 1):
        target = int(ids[position + 1])
        scores, refs = attribution._suffix_scores(ck, ids, texts, position)
        brute = np.array([logp_of(ck, t, position, target) for t in texts])
        np.testing.assert_allclose(scores, brute, rtol=0, atol=2e-5)
        np.testing.assert_allclose(refs, logp_of(ck, ids, position, target), rtol=0, atol=2e-5)
        same = (texts[:, :position + 1] == ids[:position + 1]).all(axis=1)
        assert np.all(scores[same] == refs[same])  # exactly: nothing the prediction reads was edited
        assert np.abs(brute[~same] - refs[~same]).max() > 5e-3  # the edits matter


def test_grid_fft_size_is_the_least_grid_size_holding_the_convolution():
    grid = sorted(c << k for k in range(14) for c in (4, 5, 6))
    for need in range(1, 9000, 7):
        assert grid_fft_size(need) == min(n for n in grid if n >= need)


def test_the_suffix_path_is_used_only_where_it_is_exact():
    assert not attribution.suffix_applies(load_sample("caracal-circular-leaky", DEVICE))  # reads the future
    assert not attribution.suffix_applies(load_sample("fftnet-shakespeare", DEVICE))
    ck = load_sample("caracal-periodic", DEVICE)
    with ck.model.hooks([("blocks.0.hook_resid_post", lambda t, hook: t)]):
        assert not attribution.suffix_applies(ck)  # a hook would see only the recomputed part
    assert attribution.suffix_applies(ck)


@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-circular-leaky"])
def test_deletion_and_insertion_curves_equal_the_model_on_each_edited_text(name, monkeypatch):
    monkeypatch.setattr(attribution, "_MAX_ROWS", {"cpu": 4})
    monkeypatch.setattr(attribution, "_MAX_ROWS_GPU", 4)
    ck = load_sample(name, DEVICE)
    rep = attribute(ck, text_for(name), POSITION, n_random=2, seed=3)
    ids, L = rep.ids, rep.ids.size
    base = np.full(L, 0x20)
    np.testing.assert_array_equal(rep.ks, curve_points(L))
    assert rep.ks[0] == 0 and rep.ks[-1] == L
    orders = {n: np.argsort(-a.ranking, kind="stable") for n, a in rep.methods.items()}
    rng = np.random.default_rng(3)
    randoms = [rng.permutation(L) for _ in range(2)]
    for name_, order in [*orders.items(), *(("random", o) for o in randoms)]:
        dele = [logp_of(ck, np.where(np.isin(np.arange(L), order[:k]), base, ids), POSITION, rep.target) for k in rep.ks]
        ins = [logp_of(ck, np.where(np.isin(np.arange(L), order[:k]), ids, base), POSITION, rep.target) for k in rep.ks]
        if name_ == "random":
            r = next(i for i, o in enumerate(randoms) if o is order)
            np.testing.assert_allclose(rep.random_deletion[r], dele, atol=2e-5)
            np.testing.assert_allclose(rep.random_insertion[r], ins, atol=2e-5)
            continue
        np.testing.assert_allclose(rep.deletion[name_], dele, atol=2e-5)
        np.testing.assert_allclose(rep.insertion[name_], ins, atol=2e-5)
        assert rep.aopc_deletion[name_] == pytest.approx(np.mean(dele[0] - np.array(dele)), abs=2e-5)
        assert rep.aopc_insertion[name_] == pytest.approx(np.mean(np.array(ins) - ins[0]), abs=2e-5)
    np.testing.assert_allclose(rep.deletion["random"], rep.random_deletion.mean(0))
    assert rep.logp == pytest.approx(logp_of(ck, ids, POSITION, rep.target), abs=2e-5)
    assert rep.logp_baseline == pytest.approx(logp_of(ck, base, POSITION, rep.target), abs=2e-5)


@pytest.mark.parametrize("name", CAUSAL_SAMPLES)
def test_a_causal_checkpoint_gives_nothing_to_the_future(name):
    rep = report(name)
    after = slice(POSITION + 1, None)
    assert set(rep.methods) == set(METHODS)
    assert np.all(rep.methods["occlusion"].signed[after] == 0.0)  # exactly: the forward pass cannot see them
    assert np.all(rep.methods["linear_path"].signed[after] == 0.0)  # the pad-mode kernel has no negative lags
    for m in ("grad_norm", "grad_x_input", "integrated_gradients"):
        a = rep.methods[m]
        assert a.scale > 0 and a.future_rel < 1e-9, (m, a.future_max, a.scale)  # FFT rounding in the backward
    # the curves: deleting a byte after the prediction changes nothing, so the random order, which deletes
    # future bytes too, is flatter than occlusion's
    assert rep.aopc_deletion["occlusion"] > rep.aopc_deletion["random"]


@pytest.mark.parametrize("name", LEAKY_SAMPLES)
def test_a_leaky_checkpoint_gives_the_future_weight_in_every_method(name):
    rep = report(name)
    assert rep.causal is False
    for m, a in rep.methods.items():
        assert a.future_rel > 1e-3, (m, a.future_max, a.scale)
    assert "linear_path" in rep.methods or load_sample(name, DEVICE).config.layer_kind(0) != "mhf"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_gradient_norm_is_the_influence_maps_row(name):
    ck = load_sample(name, DEVICE)
    rep = report(name)
    row = token_influence(ck, text_for(name)).values[POSITION]  # batched backward, float32 FFT products
    got = rep.methods["grad_norm"].signed
    np.testing.assert_allclose(got, row, rtol=1e-3, atol=1e-6 * row.max())


def test_gradient_x_input_is_the_gradient_dotted_with_the_embedding():
    ck = load_sample("caracal-shakespeare", DEVICE)
    rep = report("caracal-shakespeare")
    emb = ck.model.tok_emb.weight.detach().double()[torch.as_tensor(rep.ids, device=ck.device)]  # (L, D)
    model64 = type(ck.model)(ck.config).double().to(ck.device)  # a float64 copy of the model
    model64.load_state_dict(ck.model.state_dict())
    model64.eval()
    e = emb.clone()[None].requires_grad_(True)
    lp = torch.log_softmax(model64(inputs_embeds=e)[0, POSITION], -1)[rep.target]
    (g,) = torch.autograd.grad(lp, e)
    np.testing.assert_allclose(rep.methods["grad_x_input"].signed, (g[0] * emb).sum(-1).cpu().numpy(), rtol=2e-3,
                               atol=1e-6)
    np.testing.assert_allclose(rep.methods["grad_norm"].signed, g[0].norm(dim=-1).cpu().numpy(), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["caracal-periodic", "caracal-circular-leaky"])
def test_linear_path_is_the_first_blocks_kernel_by_direct_convolution(name):
    ck = load_sample(name, DEVICE)
    rep = report(name)
    rec = forward_pass(ck, text_for(name)).records[0]
    g = rec.gate_kernel[0].double().cpu().numpy().T  # (D, L)
    D, L = g.shape
    k = np.repeat(rec.kernel.double().cpu().numpy(), ck.config.head_dim, axis=0)  # (D, L) lags 0..L-1
    w = np.zeros((D, L))  # weight of v_j in y_t at lag t - j, by direct convolution
    if ck.config.causal_mode == "circular":  # N = L: lags wrap around modulo L
        for c in range(D):
            full = np.convolve(g[c], k[c])
            w[c] = full[:L] + np.concatenate([full[L:], [0.0]])
        lags = (POSITION - np.arange(L)) % L
    else:
        for c in range(D):
            w[c] = np.convolve(g[c], k[c])[:L]
        lags = POSITION - np.arange(L)
    row = np.where(lags >= 0, w[:, np.clip(lags, 0, None)], 0.0)
    a = rep.methods["linear_path"]
    np.testing.assert_allclose(a.signed, row.mean(0), atol=1e-6)
    np.testing.assert_allclose(a.absolute, np.sqrt((row**2).mean(0)), atol=1e-6)


def test_normalisation_rank_correlation_and_arrays():
    rep = report("caracal-shakespeare")
    names = list(rep.methods)
    for a in rep.methods.values():
        assert a.normalised.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(a.absolute, np.abs(a.signed) if a.method != "linear_path" else a.absolute)

    def ranks(x):  # average ranks of ties, as Spearman's rho wants them
        order = np.argsort(x, kind="stable")
        r = np.empty(x.size)
        r[order] = np.arange(x.size)
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r

    over = slice(0, POSITION + 1)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ra, rb = ranks(rep.methods[a].absolute[over]), ranks(rep.methods[b].absolute[over])
            assert rep.correlation[i, j] == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-9)
    arrays = rep.arrays()
    for n in names:
        for f in ("signed", "absolute", "normalised", "ranking"):
            assert arrays[f"{n}.{f}"].shape == (rep.ids.size,)
    assert {f"deletion.{n}" for n in [*names, "random"]} <= set(arrays)
    assert {r["method"] for r in rep.aopc_rows()} == {attribution.METHOD_NAMES[n] for n in [*names, "random"]}


def test_curve_points():
    assert curve_points(1).tolist() == [0, 1]
    assert curve_points(10).tolist() == [0, 1, 2, 3, 4, 6, 8, 10]
    pts = curve_points(1024)
    assert pts[0] == 0 and pts[-1] == 1024 and np.all(np.diff(pts) > 0) and pts.size == 21


def test_bad_input_is_one_line():
    ck = load_sample("caracal-periodic")
    cases = [(dict(text="abc", position=2), ValueError, "0..1"), (dict(text="a", position=0), TextError, "single byte"),
             (dict(text="abc", position=True), ValueError, "position"),
             (dict(text="abc", position=0, methods=("nope",)), ValueError, "unknown attribution method"),
             (dict(text="abc", position=0, methods=()), ValueError, "unknown attribution method"),
             (dict(text="abc", position=0, baseline_byte=256), ValueError, "0..255"),
             (dict(text="abc", position=0, ig_steps=1), ValueError, "ig_steps"),
             (dict(text="", position=0), TextError, "empty")]
    for kw, exc, words in cases:
        with pytest.raises(exc) as e:
            attribute(ck, **kw)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_cli_attribute_json_text_npz_and_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(PERIODIC)
    npz = tmp_path / "a.npz"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "caracal_viz", "attribute", str(sample_path("caracal-periodic")),
                               "--device", "cpu", *a], cwd=ROOT, capture_output=True, text=True, timeout=300)

    p = run("--text-file", str(f), "--position", str(POSITION), "--json", "--out", str(npz),
            "--methods", "occlusion,grad_norm")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    rep = attribute(load_sample("caracal-periodic"), PERIODIC, POSITION, ("grad_norm", "occlusion"))
    assert list(out["methods"]) == ["grad_norm", "occlusion"] and out["position"] == POSITION
    np.testing.assert_allclose(out["methods"]["occlusion"]["signed"], rep.methods["occlusion"].signed, atol=1e-9)
    assert out["aopc_deletion"].keys() == {"grad_norm", "occlusion", "random"}
    with np.load(npz) as z:
        np.testing.assert_allclose(z["occlusion.signed"], rep.methods["occlusion"].signed, atol=1e-9)
    p = run("--text-file", str(f), "--position", "3")
    assert p.returncode == 0 and "deletion AOPC" in p.stdout and "integrated gradients" in p.stdout
    for args, words in ((("--text-file", str(f), "--position", "999"), "position must be a byte index 0..36"),
                        (("--text-file", str(f), "--position", "x"), "expected a byte position"),
                        (("--text-file", str(f), "--position", "1", "--methods", "foo"), "unknown attribution method"),
                        (("--text-file", str(f), "--position", "1", "--baseline-byte", "300"), "byte value 0..255"),
                        (("--text-file", str(tmp_path / "missing.txt"), "--position", "1"), "no text file"),
                        (("--text-file", str(f), "--position", "1", "--out", str(tmp_path / "no" / "a.npz")),
                         "does not exist")):
        p = run(*args)
        assert p.returncode == 2 and words in p.stderr and p.stderr.count("\n") == 1 and p.stdout == "", (args, p.stderr)
