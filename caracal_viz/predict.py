"""Next-token view and streaming generation.

Positions follow the model: row i of every array is the prediction made after reading bytes
0..i, for the byte at i + 1. Probabilities are the softmax of the logits (temperature 1);
losses are in bits (log base 2).
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from . import binning
from .checkpoint import Checkpoint
from .checks import int_arg
from .text import encode_text
from .trace import Forward

MAX_NEW_TOKENS = 4096


@dataclass
class NextTokenView:
    """What the model predicts at each position of a text.

    ids:          (L,) int64 byte ids of the text.
    labels:       L printable labels (`ByteTokenizer.label`).
    topk_ids:     (L, k) int64, the k most likely next bytes after position i, most likely first.
    topk_probs:   (L, k) float64, their probabilities.
    topk_labels:  L lists of k printable labels.
    target_prob:  (L,) float64 p(x_{i+1} | x_<=i); NaN at i = L-1 (no next byte in the text).
    loss_bits:    (L,) float64 -log2 target_prob; NaN at i = L-1.
    entropy_bits: (L,) float64 entropy of the predictive distribution, bits.
    mean_bits:    mean of loss_bits over the L-1 scored positions (bits per byte); NaN if L = 1.
    causal:       `ck.config.is_causal`; when False the predictions read the future bytes.
    """

    ids: np.ndarray
    labels: list[str]
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    topk_labels: list[list[str]]
    target_prob: np.ndarray
    loss_bits: np.ndarray
    entropy_bits: np.ndarray
    mean_bits: float
    causal: bool

    @property
    def binned(self) -> bool:
        """Whether the text is too long to draw byte by byte (more than binning.TEXT_CELLS bytes):
        the Overview then draws `loss_bins()`."""
        return len(self.ids) > binning.TEXT_CELLS

    def loss_bins(self, max_bins: int = binning.MAX_BINS) -> binning.Bins:
        """The loss on each byte (bits; byte t's is loss_bits[t - 1], byte 0 has none) averaged
        over bins of `binning.bin_width(L, max_bins)` consecutive bytes: values (m,) float64, the
        mean over the bin's bytes that have a loss (NaN for the bin holding byte 0 alone)."""
        per_byte = np.concatenate([[np.nan], self.loss_bits[:-1]])
        return binning.mean_bins(per_byte, binning.bin_width(per_byte.size, max_bins))


def next_token_view(ck: Checkpoint, fwd: Forward, k: int = 5) -> NextTokenView:
    """Top-k next bytes with probabilities and the loss in bits at every position of the text of
    `fwd`, a forward pass of ck (`trace.forward_pass(ck, text)`).

    k: 1..256. Raises ValueError for a bad k.
    """
    int_arg("k", k, 1, 256)
    fwd.check(ck)
    ids = list(fwd.ids)
    L = len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(fwd.logits.double(), dim=-1)  # (L, 256)
        top = torch.topk(logp, int(k), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1) / math.log(2)
        target = torch.full((L,), float("nan"), dtype=torch.float64, device=logp.device)
        if L > 1:
            target[:-1] = logp[torch.arange(L - 1), torch.tensor(ids[1:], device=logp.device)]
    topk_ids = top.indices.cpu().numpy().astype(np.int64)
    loss_bits = -target.cpu().numpy() / math.log(2)
    label = [ck.tokenizer.label(i) for i in range(256)]  # looked up, not rebuilt for each of the L (k + 1)
    return NextTokenView(
        ids=np.asarray(ids, dtype=np.int64), labels=[label[i] for i in ids], topk_ids=topk_ids,
        topk_probs=top.values.exp().cpu().numpy(), topk_labels=[[label[i] for i in row] for row in topk_ids.tolist()],
        target_prob=target.exp().cpu().numpy(), loss_bits=loss_bits, entropy_bits=entropy.cpu().numpy(),
        mean_bits=float(np.mean(loss_bits[:-1])) if L > 1 else float("nan"), causal=ck.config.is_causal,
    )


def _check_generation(max_new_tokens, temperature, top_k, seed) -> None:
    int_arg("max_new_tokens", max_new_tokens, 0, MAX_NEW_TOKENS)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None:
        int_arg("top_k", top_k, 1, 256, expect="None or an integer from 1 to 256")
    int_arg("seed", seed, 0, 2**63 - 1, expect="a non-negative integer")


def stream_generation(ck: Checkpoint, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                      top_k: int | None = None, seed: int = 0) -> Iterator[str]:
    """Generate up to `max_new_tokens` bytes after `prompt`, yielding text pieces as they form.

    Uses `ck.model.generate_stream` (incremental decoding for causal models; non-causal models
    re-run the whole sequence per byte). Bytes are decoded with an incremental UTF-8 decoder,
    so a multi-byte character is yielded once, whole, when its last byte arrives; bytes that can
    never form valid UTF-8 become U+FFFD (a character cut off by the byte limit too). Only
    non-empty pieces are yielded.
    temperature: 0 is greedy (argmax), else softmax(logits / temperature) is sampled.
    top_k: None or 1..256, sample among the k most likely bytes only.
    seed: the sampling generator's seed (same seed, same text).
    max_new_tokens: 0..4096.
    prompt may be empty (the model then starts from a newline). Raises TextError for an over-long
    prompt and ValueError for bad parameters, before anything is generated.
    """
    _check_generation(max_new_tokens, temperature, top_k, seed)
    prompt_ids = encode_text(prompt) if prompt != "" else []
    return _generate(ck, prompt_ids, int(max_new_tokens), float(temperature),
                     None if top_k is None else int(top_k), int(seed))


def _generate(ck: Checkpoint, prompt_ids: list[int], n: int, temperature: float, top_k: int | None,
              seed: int) -> Iterator[str]:
    generator = torch.Generator().manual_seed(seed)  # CPU: sampling draws from probabilities on the CPU
    yield from utf8_pieces(ck.model.generate_stream(prompt_ids, n, temperature=temperature, top_k=top_k,
                                                    generator=generator))


def utf8_pieces(byte_ids: Iterable[int]) -> Iterator[str]:
    """Decode a stream of byte ids into non-empty text pieces as soon as each character is
    complete: a multi-byte UTF-8 character comes out whole, once; invalid bytes, and a character
    still incomplete when the stream ends, become U+FFFD."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for byte in byte_ids:
        piece = decoder.decode(bytes([int(byte) & 0xFF]))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail
