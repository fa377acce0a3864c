"""Next-token view and streaming generation against full forward passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caracal_viz.predict import next_token_view, stream_generation, utf8_pieces
from caracal_viz.text import TextError
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample

TEXT = "ROMEO:\nBut soft, what light"


@pytest.mark.parametrize("name", ["caracal-shakespeare", "fftnet-shakespeare"])
def test_topk_and_loss_match_softmax_of_the_logits(name):
    ck = load_sample(name)
    ids = list(TEXT.encode())
    view = next_token_view(ck, forward_pass(ck, TEXT), k=4)
    with torch.no_grad():
        logits = ck.model(torch.tensor([ids]))[0].double().numpy()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    order = np.argsort(-p, axis=-1, kind="stable")[:, :4]
    np.testing.assert_array_equal(view.topk_ids, order)
    np.testing.assert_allclose(view.topk_probs, np.take_along_axis(p, order, -1), rtol=1e-10)
    want_bits = [-math.log2(p[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    np.testing.assert_allclose(view.loss_bits[:-1], want_bits, rtol=1e-10)
    assert np.isnan(view.loss_bits[-1]) and np.isnan(view.target_prob[-1])
    assert view.mean_bits == pytest.approx(np.mean(want_bits))
    np.testing.assert_allclose(view.entropy_bits, -(p * np.log2(p)).sum(-1), rtol=1e-9)
    assert view.topk_labels[0] == [ck.tokenizer.label(int(i)) for i in order[0]]
    assert view.causal == ck.config.is_causal


def test_next_token_view_rejects_bad_input():
    ck = load_sample("caracal-periodic")
    with pytest.raises(ValueError, match="k must be"):
        next_token_view(ck, forward_pass(ck, "abc"), k=0)
    with pytest.raises(TextError, match="empty"):
        next_token_view(ck, forward_pass(ck, ""))
    one = next_token_view(ck, forward_pass(ck, "a"), k=256)
    assert one.topk_probs.shape == (1, 256) and math.isnan(one.mean_bits)
    assert one.topk_probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["caracal-shakespeare", "fftnet-shakespeare"])
def test_greedy_generation_is_argmax_of_full_forward_passes(name):
    ck = load_sample(name)
    prompt = "KING:\n"
    out = "".join(stream_generation(ck, prompt, 24, temperature=0))
    ids = list(prompt.encode())
    with torch.no_grad():
        for _ in range(24):
            ids.append(int(ck.model(torch.tensor([ids]))[0, -1].argmax()))
    assert out.encode("utf-8") == bytes(ids[len(prompt.encode()):])  # ASCII-only text from these models


def test_sampling_is_seeded_and_respects_top_k():
    ck = load_sample("caracal-shakespeare")
    a = "".join(stream_generation(ck, "The ", 40, temperature=1.0, top_k=3, seed=7))
    b = "".join(stream_generation(ck, "The ", 40, temperature=1.0, top_k=3, seed=7))
    c = "".join(stream_generation(ck, "The ", 40, temperature=1.0, top_k=3, seed=8))
    assert a == b and a != c
    # every sampled byte is among the 3 most likely after the text so far
    full = ("The " + a).encode()
    with torch.no_grad():
        logits = ck.model(torch.tensor([list(full)]))[0]
    top3 = torch.topk(logits, 3, dim=-1).indices
    start = len(b"The ")
    for t in range(start, len(full)):
        assert full[t] in top3[t - 1].tolist()
    top1 = "".join(stream_generation(ck, "The ", 40, temperature=5.0, top_k=1, seed=3))
    assert top1 == "".join(stream_generation(ck, "The ", 40, temperature=0))


def test_multibyte_characters_are_yielded_whole():
    assert list(utf8_pieces("a☃é😀\n".encode())) == ["a", "☃", "é", "😀", "\n"]
    assert list(utf8_pieces(b"ok" + "☃".encode()[:2])) == ["o", "k", "\ufffd"]  # cut off at the end
    assert list(utf8_pieces(b"\xffz")) == ["\ufffd", "z"]
    # a sampled stream (which may hold any bytes) decodes to what a one-shot decode of its bytes gives
    ck = load_sample("caracal-periodic")
    ids = list(ck.model.generate_stream(list("é→".encode()), 64, temperature=3.0,
                                        generator=torch.Generator().manual_seed(5)))
    pieces = list(stream_generation(ck, "é→", 64, temperature=3.0, seed=5))
    assert "".join(pieces) == bytes(ids).decode("utf-8", errors="replace")
    assert all(pieces)


def test_generation_rejects_bad_parameters_before_generating():
    ck = load_sample("caracal-periodic")
    for kwargs, msg in [({"max_new_tokens": -1}, "max_new_tokens"), ({"max_new_tokens": 10**6}, "max_new_tokens"),
                        ({"temperature": -0.5}, "temperature"), ({"temperature": float("nan")}, "temperature"),
                        ({"top_k": 0}, "top_k"), ({"top_k": 300}, "top_k"), ({"seed": -1}, "seed")]:
        args = {"max_new_tokens": 5, **kwargs}
        with pytest.raises(ValueError, match=msg):
            stream_generation(ck, "abc", **args)
    with pytest.raises(TextError):
        stream_generation(ck, "x" * 100_000, 5)
    assert "".join(stream_generation(ck, "", 5, temperature=0))  # empty prompt: starts from a newline
    assert list(stream_generation(ck, "abc", 0)) == []
