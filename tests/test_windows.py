"""Windows of a long text for the O(L^2) views: offsets on whole characters, the windowed
influence map's rows against plain autograd on the window's prefix, and a long text's
certificate against its per-window maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caracal_viz.causality import CAUSAL, LEAKS, causality_report
from caracal_viz.influence import token_influence
from caracal_viz.text import max_text_bytes
from caracal_viz.windows import text_window, window_bytes
from tests.conftest import LEAKY_SAMPLES, load_sample

# 16,384 bytes with two-, three- and four-byte characters among Shakespeare's ASCII
LONG = (open("data/tinyshakespeare.txt", encoding="utf-8").read()[:3000] + "é€😀")
LONG = (LONG * (16384 // len(LONG.encode()) + 1)).encode()[:16384].decode("utf-8", "ignore")


def test_a_window_is_whole_characters_and_says_which_bytes_it_is():
    data = LONG.encode()
    for size, end in ((100, None), (100, 5000), (7, 3003), (7, 3004), (64, 10**9), (64, 3)):
        w = text_window(LONG, size, end)
        assert w.text.encode() == data[w.start:w.end] and w.total == len(data)
        assert 0 <= w.end - w.start <= size and w.end - w.start >= size - 3  # at most a 4-byte character lost at each end
        assert w.label == f"bytes {w.start:,}..{w.end - 1:,} of {len(data):,}"
    assert text_window(LONG, 100).end == len(data)  # default: the last bytes
    assert text_window(LONG, 64, 3).start == 0  # an end before `size` is clipped to the first window
    short = text_window("abc", 10)
    assert short.whole and short.text == "abc" and short.label == "all 3 bytes"


def test_window_size_by_device_and_setting(monkeypatch):
    ck = load_sample("caracal-shakespeare")
    monkeypatch.delenv("CARACAL_WINDOW_BYTES", raising=False)
    monkeypatch.delenv("CARACAL_MAX_INFLUENCE_BYTES", raising=False)
    assert window_bytes(ck) == 256
    monkeypatch.setenv("CARACAL_WINDOW_BYTES", "40")
    assert window_bytes(ck) == 40
    monkeypatch.setenv("CARACAL_WINDOW_BYTES", "100000")
    assert window_bytes(ck) == 256  # never past the interactive limit


def _prefix_row(ck, ids, i):
    """Plain autograd on the prefix ids[:i+1]: || d log p(ids[i+1] | ids[:i+1]) / d e_j || for j <= i."""
    model = ck.model
    with torch.enable_grad():
        e = model(torch.tensor([ids[:i + 1]]), stop_at_layer=0).detach().requires_grad_(True)
        logp = torch.log_softmax(model(e, start_at_layer=0)[0, i].double(), -1)[ids[i + 1]]
        (g,) = torch.autograd.grad(logp, e)
    return g[0].double().norm(dim=-1).numpy()


def test_windowed_influence_rows_match_plain_autograd_on_the_windows_prefix():
    ck = load_sample("caracal-shakespeare")
    w = text_window(LONG, 48, end=9001)
    ids = list(w.text.encode())
    m = token_influence(ck, w.text)
    assert m.values.shape == (len(ids), len(ids)) and list(m.ids) == ids
    for i in (0, 5, 20, len(ids) - 2):
        want = _prefix_row(ck, ids, i)
        np.testing.assert_allclose(m.values[i, :i + 1], want, rtol=1e-4, atol=1e-6 * want.max())
        assert np.abs(m.values[i, i + 1:]).max(initial=0.0) <= 1e-6 * want.max()  # nothing from the future


@pytest.mark.parametrize("name", ["caracal-shakespeare", *LEAKY_SAMPLES])
def test_a_long_texts_certificate_and_its_window_maps_agree(name):
    """Causal by the certificate <=> every window map's upper triangle is rounding (< 1e-6 of its
    scale); a leak => every window map leaks (> 1e-3), at the start, middle and end of 16,384 bytes."""
    ck = load_sample(name)
    assert len(LONG.encode()) == 16384 <= max_text_bytes(ck.device)
    verdict = causality_report(ck, lengths=[16, 64]).verdict
    assert verdict in (CAUSAL, LEAKS)
    rel = [token_influence(ck, text_window(LONG, 40, end).text).upper_rel for end in (40, 8200, None)]
    if verdict == CAUSAL:
        assert max(rel) < 1e-6, rel
    else:
        assert min(rel) > 1e-3, rel
    assert (verdict == CAUSAL) == ck.config.is_causal
