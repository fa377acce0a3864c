"""Resources: a CUDA out-of-memory error falls back to the CPU with a message (the guarded
function raises a real torch.cuda.OutOfMemoryError, there being no GPU here), a CPU that cannot
hold it either gives one line, the influence map refuses lengths over its limit and names it,
and activations that overflow to Inf/NaN are reported by run_trace, not passed on silently."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from caracal_viz.checkpoint import load_checkpoint, save_checkpoint, weights_of
from caracal_viz.influence import influence_limit, mixing_matrices, token_influence
from caracal_viz.resources import Guarded, ResourceError, cpu_copy, run_with_fallback
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass, run_trace
from tests.conftest import ROOT, load_sample
from tests.security_helpers import server_like_navigation, small_model

__all__ = ["server_like_navigation"]

TEXT = "abcabcabc qwertyui"


class FailsOnceWithCudaOOM:
    """An analysis whose first call fails the way a full GPU fails; later calls run `fn`."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def __call__(self, ck, *args):
        self.seen.append(ck)
        if len(self.seen) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
        return self.fn(ck, *args)


def test_cuda_oom_falls_back_to_a_cpu_copy_with_a_message():
    ck = load_sample("caracal-periodic")
    before = {k: v.clone() for k, v in ck.model.state_dict().items()}
    expected = run_trace(ck, TEXT)
    flaky = FailsOnceWithCudaOOM(run_trace)
    done = run_with_fallback(flaky, ck, TEXT, what="the trace")
    assert isinstance(done, Guarded) and done.fell_back
    assert done.device == torch.device("cpu")
    assert "GPU ran out of memory" in done.message and "the trace" in done.message and "CPU" in done.message
    assert "\n" not in done.message and "Tried to allocate 2.00 GiB" in done.message
    first, retry = flaky.seen
    assert first is ck and retry is not ck and retry.model is not ck.model
    assert retry.device == torch.device("cpu") and retry.sha256 == ck.sha256
    np.testing.assert_array_equal(done.value.logits, expected.logits)
    assert ck.device == torch.device("cpu")  # the shared checkpoint is untouched
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_no_fallback_without_an_oom():
    ck = load_sample("caracal-periodic")
    done = run_with_fallback(run_trace, ck, TEXT)
    assert not done.fell_back and done.message is None and done.device == ck.device


def test_other_errors_pass_through_unchanged():
    ck = load_sample("caracal-periodic")
    with pytest.raises(TextError, match="empty"):
        run_with_fallback(run_trace, ck, "")


def test_oom_on_the_cpu_too_is_one_line():
    ck = load_sample("caracal-periodic")

    def wants_128_pib(ck_, text):  # a real allocation no machine can make (2**55 bytes)
        return torch.empty(2**53, dtype=torch.float32)

    with pytest.raises(ResourceError) as err:
        run_with_fallback(FailsOnceWithCudaOOM(wants_128_pib), ck, TEXT, what="the influence map")
    msg = str(err.value)
    assert "\n" not in msg and "the influence map" in msg and "shorter text" in msg


def test_cpu_copy_has_the_same_weights_and_keeps_the_head_tied():
    ck = load_sample("caracal-periodic")
    cp = cpu_copy(ck)
    for (k, a), (_, b) in zip(ck.model.state_dict().items(), cp.model.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), k
    assert cp.model.head.weight is cp.model.tok_emb.weight
    assert not cp.model.training and cp.config == ck.config


# ---- the influence map's limit ------------------------------------------------------------------
@pytest.mark.timeout(60)  # were the limit not checked, L backward passes of length L would run
@pytest.mark.parametrize("fn", [token_influence, lambda ck, text: mixing_matrices(ck, forward_pass(ck, text))],
                         ids=["token_influence", "mixing_matrices"])
def test_influence_refuses_lengths_over_its_limit_and_names_it(monkeypatch, fn):
    ck = load_sample("caracal-periodic")
    limit = influence_limit(ck)
    assert limit >= 64 and limit % 64 == 0
    # The limit follows free memory, which other processes change between calls; the memory
    # needed grows as L^2, so twice the limit stays out of reach unless free memory quadruples.
    n = 2 * limit
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", str(n))  # so that only the influence limit applies
    with pytest.raises(TextError) as err:
        fn(ck, "a" * n)
    msg = str(err.value)
    named = re.search(r"limit of (\d+) bytes", msg)
    assert named and 64 <= int(named.group(1)) < n and int(named.group(1)) % 64 == 0, msg
    assert str(n) in msg and "\n" not in msg


# ---- NaN/Inf in activations ---------------------------------------------------------------------
def overflowing_checkpoint(model, path):
    """`model` with finite weights (the loader refuses NaN/Inf weights) that overflow float32 in
    block 1's MLP: |fc x| ~ 1e24, |w_o gelu(fc x)| ~ 1e47 > 3.4e38 = float32 max. Saved to path."""
    w = weights_of(model)
    for name in ("blocks.1.mlp.fc.weight", "blocks.1.mlp.w_o.weight"):
        w[name] = w[name] * 1e25
    assert all(torch.isfinite(t).all() for t in w.values())
    scaled = small_model(seed=2)
    scaled.load_state_dict({**w, "head.weight": w["tok_emb.weight"]})
    return save_checkpoint(path, scaled, {"steps": 0})


def test_activations_that_overflow_are_reported(tmp_path):
    model = small_model(seed=2)
    clean = save_checkpoint(tmp_path / "clean.safetensors", model, {"steps": 0})
    path = overflowing_checkpoint(model, tmp_path / "overflow.safetensors")

    ok = run_trace(load_checkpoint(clean, device="cpu"), TEXT)
    assert ok.finite and ok.nonfinite == []

    trace = run_trace(load_checkpoint(path, device="cpu"), TEXT)
    assert not trace.finite
    assert all(n.layer != 0 for n in trace.nonfinite)  # block 0 is untouched and finite
    first = trace.nonfinite[0]
    assert first.layer == 1 and first.name == "block_output" and first.n_inf + first.n_nan > 0
    assert len(first.positions) == len(TEXT) and set(first.positions.tolist()) == set(range(len(TEXT)))
    assert any(n.name == "logits" for n in trace.nonfinite)
    # the oracle: where the logits are not finite, computed here from the raw model
    with torch.no_grad():
        logits = load_checkpoint(path, device="cpu").model(torch.tensor([list(TEXT.encode())]))[0]
    bad_rows = np.flatnonzero(~torch.isfinite(logits).all(dim=-1).numpy())
    logits_entry = next(n for n in trace.nonfinite if n.name == "logits")
    np.testing.assert_array_equal(np.sort(logits_entry.positions), bad_rows)


def test_the_app_reports_overflowing_activations(tmp_path, server_like_navigation):
    """The overview of a checkpoint whose activations overflow says so (NaN/Inf), instead of
    showing 'n/a' and a blank plot."""
    from streamlit.testing.v1 import AppTest

    path = overflowing_checkpoint(small_model(seed=2), tmp_path / "overflow.safetensors")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.get("file_uploader")[0].set_value((path.name, path.read_bytes(), "application/octet-stream")).run()
    at.text_area("text_box").input(TEXT).run()
    assert not at.exception
    assert at.selectbox("ck_select").value.endswith(path.name)
    said = [e.value for e in at.error] + [w.value for w in at.warning] + [m.value for m in at.markdown]
    assert any(re.search(r"NaN|Inf|non-?finite|overflow", m) for m in said), \
        f"the overview does not report the NaN/Inf activations: {said}"


def test_the_fallback_first_drops_what_the_caller_keeps_on_the_gpu():
    # the app passes release=forward_pass.clear: its cached passes go before the CPU retry
    ck = load_sample("caracal-periodic")
    released = []
    done = run_with_fallback(FailsOnceWithCudaOOM(run_trace), ck, TEXT, release=lambda: released.append(1))
    assert done.fell_back and released == [1]
    done = run_with_fallback(run_trace, ck, TEXT, release=lambda: released.append(2))
    assert not done.fell_back and released == [1]  # no out-of-memory error: nothing dropped
