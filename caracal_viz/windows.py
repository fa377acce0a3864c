"""Windows of a long text for the O(L^2) views (the influence map, the mixing matrices).

Those views cost L^2 time and memory, so past `window_bytes(ck)` they run on a window of the
text: bytes a..b (UTF-8 offsets, whole characters) read as a text of its own (the model sees the
window alone, not the bytes before a). Nothing is truncated silently: a `Window` carries its
offsets and the text's length, and `Window.label` says which part is shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .checkpoint import Checkpoint
from .influence import interactive_limit
from .text import utf8_window

# The window a page opens on: the whole-model map of 4,096 bytes takes a few seconds on a GPU
# (BENCHMARKS.md, question 4); on the CPU interactive_limit's 256 bytes (1.8 s) is the most.
WINDOW_BYTES = {"cuda": 4096, "cpu": 256}


@dataclass(frozen=True)
class Window:
    """Bytes start..end (end exclusive, UTF-8 offsets on whole characters) of a text of
    total bytes; text: that part of it, decoded."""

    start: int
    end: int
    total: int
    text: str

    @property
    def whole(self) -> bool:
        """Whether the window is the whole text."""
        return self.start == 0 and self.end == self.total

    @property
    def label(self) -> str:
        """'bytes a..b of N' (b inclusive, the last byte shown), or 'all N bytes'."""
        if self.whole:
            return f"all {self.total:,} bytes"
        return f"bytes {self.start:,}..{self.end - 1:,} of {self.total:,}"


def window_bytes(ck: Checkpoint) -> int:
    """The window size (bytes) the O(L^2) views use on `ck.device`: 4,096 on a GPU, 256 on the
    CPU (CARACAL_WINDOW_BYTES overrides), never more than `influence.interactive_limit(ck)`."""
    raw = os.environ.get("CARACAL_WINDOW_BYTES", "")
    size = int(raw) if raw.isdigit() and int(raw) > 0 else WINDOW_BYTES.get(ck.device.type, WINDOW_BYTES["cpu"])
    return min(size, interactive_limit(ck))


def text_window(text: str, size: int, end: int | None = None) -> Window:
    """The window of at most `size` bytes of `text` that ends at byte offset `end` (default the
    text's end: the last `size` bytes), moved inwards to whole characters; the whole text when
    it is no longer than `size`. `end` is clipped to size..len(bytes)."""
    total = len(text.encode("utf-8"))
    if total <= size:
        return Window(0, total, total, text)
    stop = total if end is None else max(size, min(int(end), total))
    a, b, part = utf8_window(text, stop - size, stop)
    return Window(a, b, total, part)

