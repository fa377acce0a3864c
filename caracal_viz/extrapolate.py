"""Length extrapolation: bits/byte by position on text longer than the training context.

A window is L + 1 consecutive bytes scored from position 0 in one forward pass: the model reads
bytes 0..L-1 and position t is the prediction of byte t + 1 from bytes 0..t (t + 1 bytes of
context, none from before the window). Bits/byte at each position is -log2 p(byte t+1 | bytes
0..t), averaged over windows; a position bin [lo, hi) averages the positions lo..hi-1. Past the
training context C a Fourier mixer's learned kernel is zero beyond lag C - 1 (models/mhf.py), an
attention layer has never seen the distances, so the curve past C shows what the model does with
text it was never trained on. The forward runs in float32 on the checkpoint's device (no autocast).

Windows come from the validation split of models.data (tinyshakespeare's last 10%) or from any
byte sequence (a user's text), at evenly spaced starts, overlapping when the text is short.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.data import TextData

from .checkpoint import Checkpoint
from .checks import int_arg

MAX_FACTOR = 16
"""The longest window the defaults score: this many times the training context."""
FIRST_BIN = 64
"""The first log-spaced position bin is 0..FIRST_BIN-1; each later bin doubles."""
TABLE_EDGES = (0, 512, 2048, 8192)
"""The sample README's position bins: 0-512, 512-2,048, 2,048-8,192."""
CURVE_FIRST, CURVE_PER_OCTAVE = 16, 2
"""The drawn curves' bins (`curve_edges`): positions 0-15, then two bins per doubling."""
MEASURED_PATH = Path(__file__).resolve().parent.parent / "sample_checkpoints" / "extrapolation.json"
"""The curves measured on the GPU for the samples (scripts/extrapolation_curves.py writes it)."""


def validation_bytes() -> np.ndarray:
    """(N,) uint8: the validation split of models.data.TextData (the bytes training never saw)."""
    return TextData().splits["val"]


def log_edges(length: int, first: int = FIRST_BIN, per_octave: int = 1) -> np.ndarray:
    """(n + 1,) int64 position-bin edges 0, first, then `per_octave` bins per doubling, the last
    edge `length` (the last bin may be shorter). Bin i holds positions edges[i]..edges[i+1]-1."""
    int_arg("length", length, 1, 1 << 30)
    int_arg("first", first, 1, 1 << 30)
    int_arg("per_octave", per_octave, 1, 64)
    inner = [first * 2.0 ** (k / per_octave) for k in range(int(per_octave * math.log2(max(length / first, 1))) + 2)]
    edges = sorted({0, *(int(round(e)) for e in inner if e < length), length})
    return np.asarray(edges, dtype=np.int64)


def curve_edges(length: int) -> np.ndarray:
    """The bins of the curves the app draws and ships: log_edges(length, CURVE_FIRST, CURVE_PER_OCTAVE)."""
    return log_edges(length, first=CURVE_FIRST, per_octave=CURVE_PER_OCTAVE)


def length_options(contexts, n_bytes: int | None = None) -> list[int]:
    """Window lengths L (positions) to offer for checkpoints of these training contexts: the
    powers of two from 256 to MAX_FACTOR x the longest context; with a text of n_bytes, only
    those it holds (L <= n_bytes - 1) and n_bytes - 1 itself when it is shorter than the longest.
    Empty for a text of fewer than 2 bytes."""
    top = MAX_FACTOR * max(int(c) for c in contexts)
    out = [1 << k for k in range(8, top.bit_length()) if (1 << k) <= top]
    if n_bytes is not None:
        out = [n for n in out if n <= n_bytes - 1]
        if 1 <= n_bytes - 1 < top and n_bytes - 1 not in out:
            out.append(n_bytes - 1)
    return out


def window_starts(n_bytes: int, length: int, n_windows: int) -> np.ndarray:
    """(W,) int64 starts of windows of length + 1 bytes in a text of n_bytes, evenly spaced from 0
    to n_bytes - length - 1 (W = n_windows, fewer when the text has fewer distinct starts)."""
    last = n_bytes - length - 1
    if last < 0:
        raise ValueError(f"a window of {length:,} positions needs {length + 1:,} bytes, the text has {n_bytes:,}: "
                         "choose a shorter length")
    return np.unique(np.linspace(0, last, max(1, min(n_windows, last + 1))).round().astype(np.int64))


@torch.no_grad()
def position_bits(ck: Checkpoint, windows: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """(W, L) float64 bits of each window's predictions: windows (W, L + 1) byte ids; row w,
    position t is -log2 p(windows[w, t+1] | windows[w, :t+1]), one float32 forward per batch of
    `batch_size` windows on ck.device."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (W, L + 1) byte ids with L >= 1, got shape {windows.shape}")
    int_arg("batch_size", batch_size, 1, 1 << 20)
    out = np.empty((windows.shape[0], windows.shape[1] - 1), dtype=np.float64)
    for i in range(0, windows.shape[0], batch_size):
        xy = torch.from_numpy(windows[i:i + batch_size].astype(np.int64)).to(ck.device)
        logits = ck.model(xy[:, :-1]).float()  # (B, L, 256)
        nats = F.cross_entropy(logits.transpose(1, 2), xy[:, 1:], reduction="none")  # (B, L)
        out[i:i + batch_size] = nats.double().cpu().numpy() / math.log(2)
    return out


def bin_means(bits: np.ndarray, edges) -> np.ndarray:
    """(n,) float64 mean of bits (L,) over each bin [edges[i], edges[i+1]) clipped to the L
    positions; NaN for a bin wholly past L."""
    bits = np.asarray(bits, dtype=np.float64)
    e = np.asarray(edges, dtype=np.int64)
    return np.array([bits[lo:min(hi, bits.size)].mean() if lo < bits.size else np.nan
                     for lo, hi in zip(e[:-1], e[1:])])


@dataclass(frozen=True)
class Curve:
    """Bits/byte by position bin of one checkpoint (binned: what the page draws and the JSON keeps).

    name:      the checkpoint's name (a sample name or a file name).
    context:   its training context C (bytes).
    length:    positions scored per window L (bins are clipped to it).
    n_windows: windows averaged.
    edges:     (n + 1,) int64 position-bin edges; bin i is positions edges[i]..edges[i+1]-1.
    bits:      (n,) float64 bits/byte of each bin, mean over its positions and the windows.
    source:    "validation" (models.data's split) or a description of the text.
    """

    name: str
    context: int
    length: int
    n_windows: int
    edges: np.ndarray
    bits: np.ndarray
    source: str

    @property
    def factor(self) -> float:
        """How many training contexts the window spans: length / context."""
        return self.length / self.context

    def to_dict(self) -> dict:
        """JSON-ready (NaN as None)."""
        return {"name": self.name, "context": self.context, "length": self.length, "n_windows": self.n_windows,
                "edges": [int(e) for e in self.edges], "source": self.source,
                "bits": [None if not np.isfinite(b) else round(float(b), 5) for b in self.bits]}

    @classmethod
    def from_dict(cls, d: dict) -> Curve:
        """The inverse of to_dict."""
        return cls(name=str(d["name"]), context=int(d["context"]), length=int(d["length"]),
                   n_windows=int(d["n_windows"]), edges=np.asarray(d["edges"], dtype=np.int64),
                   bits=np.array([np.nan if b is None else b for b in d["bits"]], dtype=np.float64),
                   source=str(d["source"]))


@dataclass(frozen=True)
class Extrapolation:
    """Bits/byte by position of one checkpoint on windows of one text.

    name:    the checkpoint's name.
    context: its training context C (bytes).
    starts:  (W,) int64 window starts in the text (byte offsets).
    bits:    (L,) float64 bits/byte at position t (the prediction of byte t+1 of the window from
             its bytes 0..t), mean over the W windows.
    source:  "validation" or a description of the text.
    device:  where the forward ran (float32).
    """

    name: str
    context: int
    starts: np.ndarray
    bits: np.ndarray
    source: str
    device: str

    @property
    def length(self) -> int:
        """L, the positions scored per window."""
        return int(self.bits.size)

    @property
    def n_windows(self) -> int:
        """W, the windows averaged."""
        return int(self.starts.size)

    @property
    def mean_bits(self) -> float:
        """Bits/byte over every position of every window."""
        return float(self.bits.mean())

    def curve(self, edges=None) -> Curve:
        """The binned curve: `edges` (default `log_edges(L)`: 0-64, 64-128, ...)."""
        e = log_edges(self.length) if edges is None else np.asarray(edges, dtype=np.int64)
        return Curve(self.name, self.context, self.length, self.n_windows, e, bin_means(self.bits, e), self.source)

    def table(self) -> Curve:
        """The curve on the README's bins TABLE_EDGES (0-512, 512-2,048, 2,048-8,192), clipped to L."""
        return self.curve(TABLE_EDGES)


def default_length(ck: Checkpoint, n_bytes: int) -> int:
    """MAX_FACTOR x the training context, or the longest window the text holds if shorter."""
    return max(1, min(MAX_FACTOR * ck.config.context, n_bytes - 1))


def extrapolate(ck: Checkpoint, data=None, *, length: int | None = None, n_windows: int = 8, batch_size: int = 1,
                source: str | None = None) -> Extrapolation:
    """Bits/byte by position of `ck` on windows of `length` positions of `data`.

    data:       byte ids (N,) (an array, bytes, or a str encoded as UTF-8), or None for the
                validation split (`validation_bytes()`).
    length:     L positions per window (default `default_length`: 16 x the context, at most N - 1).
    n_windows:  windows at evenly spaced starts (`window_starts`; overlapping when N is short).
    batch_size: windows per forward pass (memory: about batch_size x L x 256 x 4 bytes of logits
                plus the model's activations).
    source:     what the text is, in words (default "validation" or "a text of N bytes").
    Raises ValueError (one line) for a text too short for the length or bad arguments.
    """
    if data is None:
        ids, default_source = validation_bytes(), "validation"
    else:
        ids = np.frombuffer(data.encode("utf-8"), dtype=np.uint8) if isinstance(data, str) else \
            np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
        default_source = f"a text of {ids.size:,} bytes"
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError("the text must hold at least 2 bytes: one to read and one to predict")
    length = default_length(ck, ids.size) if length is None else length
    int_arg("length", length, 1, ids.size - 1)
    int_arg("n_windows", n_windows, 1, 1 << 20)
    starts = window_starts(ids.size, length, n_windows)
    windows = np.stack([ids[s:s + length + 1] for s in starts])
    bits = position_bits(ck, windows, batch_size=batch_size).mean(axis=0)
    return Extrapolation(ck.name, ck.config.context, starts, bits, source or default_source, str(ck.device))


def load_measured(path: Path = MEASURED_PATH) -> tuple[dict, list[Curve], list[Curve]]:
    """The shipped measurements: (run record {"command", "machine", "date", ...}, the log-binned
    curves, the README-bin curves), one curve per sample in file order."""
    d = json.loads(Path(path).read_text())
    return (d["record"], [Curve.from_dict(c) for c in d["curves"]], [Curve.from_dict(c) for c in d["tables"]])
