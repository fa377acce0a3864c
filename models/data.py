"""Training data: tinyshakespeare bytes (first 90% train, last 10% validation) and a synthetic
periodic task whose structure is known, so that learned filters can be checked by eye."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

SHAKESPEARE = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"
PERIODS = (3, 8, 20)
ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


class TextData:
    """Random windows of a byte corpus. `batch(split, B, L, rng)` -> (B, L + 1) uint8 array."""

    def __init__(self, path: Path = SHAKESPEARE):
        raw = Path(path).read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.name = Path(path).name
        data = np.frombuffer(raw, dtype=np.uint8)
        cut = int(0.9 * len(data))
        self.splits = {"train": data[:cut], "val": data[cut:]}
        self.description = f"{self.name} bytes: first 90% train, last 10% validation"

    def batch(self, split: str, B: int, L: int, rng: np.random.Generator) -> np.ndarray:
        """(B, L + 1) uint8: B windows of L + 1 bytes at random offsets of `split` ("train" or
        "val"); a model reads [:, :-1] and predicts [:, 1:]."""
        data = self.splits[split]
        starts = rng.integers(0, len(data) - L - 1, size=B)
        return np.stack([data[s:s + L + 1] for s in starts])


class PeriodicData:
    """Sequences that repeat a random lowercase pattern with a period drawn from PERIODS.

    After the first period every byte is a copy of the byte `period` steps back, so a model
    that solves the task must look back at lags 3, 8 or 20: its filters should show it."""

    description = f"synthetic: a random lowercase pattern repeated with period in {PERIODS}"
    name = "periodic"
    sha256 = ""

    def batch(self, split: str, B: int, L: int, rng: np.random.Generator) -> np.ndarray:
        """(B, L + 1) uint8: B fresh sequences, each a random pattern repeated with a random
        period (the split is ignored: every draw is new)."""
        out = np.empty((B, L + 1), dtype=np.uint8)
        for b in range(B):
            p = PERIODS[rng.integers(len(PERIODS))]
            pattern = ALPHABET[rng.integers(0, len(ALPHABET), size=p)]
            out[b] = np.resize(pattern, L + 1)
        return out


def periodic_text(period: int, length: int, seed: int = 0) -> str:
    """One example of the periodic task as text (for the app's presets and the tests)."""
    rng = np.random.default_rng(seed)
    pattern = ALPHABET[rng.integers(0, len(ALPHABET), size=period)]
    return np.resize(pattern, length).tobytes().decode("ascii")
