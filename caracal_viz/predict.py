"""Next-token view and streaming generation.

Positions follow the model: row i of every array is the prediction made after reading bytes
0..i, for the byte at i + 1. Probabilities are the softmax of the logits (temperature 1);
losses are in bits (log base 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .checkpoint import Checkpoint


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


def next_token_view(ck: Checkpoint, text: str, k: int = 5) -> NextTokenView:
    """Top-k next bytes with probabilities and the loss in bits at every position of `text`.

    k: 1..256. Raises TextError for empty or over-long text, ValueError for a bad k.
    """
    raise NotImplementedError


def stream_generation(ck: Checkpoint, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                      top_k: int | None = None, seed: int = 0) -> Iterator[str]:
    """Generate up to `max_new_tokens` bytes after `prompt`, yielding text pieces as they form.

    Uses `ck.model.generate_stream` (incremental decoding for causal models; non-causal models
    re-run the whole sequence per byte). Bytes are decoded with an incremental UTF-8 decoder,
    so a multi-byte character is yielded once, whole, when its last byte arrives; bytes that can
    never form valid UTF-8 become U+FFFD. Only non-empty pieces are yielded.
    temperature: 0 is greedy (argmax), else softmax(logits / temperature) is sampled.
    top_k: None or 1..256, sample among the k most likely bytes only.
    seed: the sampling generator's seed (same seed, same text).
    prompt may be empty (the model then starts from a newline). Raises TextError for an over-long
    prompt and ValueError for bad parameters, before anything is generated.
    """
    raise NotImplementedError
