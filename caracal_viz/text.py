"""User text in, byte ids out: the one place that decides what text the tools accept."""

from __future__ import annotations

import os

MAX_TEXT_BYTES = {"cuda": 65536, "cpu": 16384}
"""The longest text (UTF-8 bytes) analysed on each kind of device: every view that grows as
O(L log L) runs at these lengths in seconds (benchmarks/long_context.py); the O(L^2) views (the
influence map, the mixing matrices) run on a window of the text (`utf8_window`)."""


class TextError(ValueError):
    """Text the tools cannot analyse; the message says why and what to do, on one line."""


def max_text_bytes(device=None) -> int:
    """The longest text (UTF-8 bytes) the app and CLI analyse on `device` (a torch.device, "cpu",
    "cuda" or "cuda:N"; None: the best this machine has, cuda when available): MAX_TEXT_BYTES of
    its kind. CARACAL_MAX_TEXT_BYTES (a positive integer) overrides it on every device."""
    raw = os.environ.get("CARACAL_MAX_TEXT_BYTES", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if device is None:
        import torch  # only here: the rest of this module is plain text handling

        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        kind = getattr(device, "type", str(device)).split(":")[0]
    return MAX_TEXT_BYTES.get(kind, MAX_TEXT_BYTES["cpu"])


def decode_text_file(data: bytes, name: str = "the file", max_bytes: int | None = None) -> str:
    """Decode an uploaded text file as UTF-8 (a leading BOM is dropped). Invalid bytes are an
    error, not silently replaced: the model would see different bytes than the user has.

    A file that is empty, or longer than max_bytes (default `max_text_bytes()`) plus a BOM, is
    refused before it is decoded. Raises TextError with a one-line message."""
    if not isinstance(data, (bytes, bytearray)):
        raise TextError(f"{name} was not read as bytes: upload the file itself")
    limit = max_bytes or max_text_bytes()
    body = len(data) - (3 if data[:3] == b"\xef\xbb\xbf" else 0)
    if body == 0:
        raise TextError(f"{name} is empty: upload a file with some text in it")
    if body > limit:
        raise TextError(f"{name} is {body} bytes, over the limit of {limit} bytes: upload a shorter file "
                        "(or raise CARACAL_MAX_TEXT_BYTES if your machine can hold it)")
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextError(f"{name} is not valid UTF-8 text (bad byte 0x{data[e.start]:02x} at offset {e.start}): "
                        "save it as UTF-8 and upload it again") from None


def encode_text(text: str, max_bytes: int | None = None, device=None) -> list[int]:
    """Validate text and return its UTF-8 byte ids (the model's tokens).

    Raises TextError for empty text or text longer than max_bytes (default
    `max_text_bytes(device)`: the limit of the device that will run the model).
    Whitespace, control characters, right-to-left, combining characters and emoji are all valid
    bytes for a byte-level model and are analysed as they are (one token per UTF-8 byte).
    """
    if not isinstance(text, str):
        raise TextError(f"expected text, got {type(text).__name__}")
    if text == "":
        raise TextError("the text is empty: type or paste some text to analyse")
    limit = max_bytes or max_text_bytes(device)
    if len(text) > limit:  # every character is at least one byte: refuse before encoding it all
        raise TextError(f"the text is {len(text)} characters, over the limit of {limit} bytes: shorten it "
                        "(or raise CARACAL_MAX_TEXT_BYTES if your machine can hold it)")
    try:
        ids = list(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise TextError("the text contains unpaired surrogate characters that UTF-8 cannot encode: "
                        "remove them and try again") from None
    if len(ids) > limit:
        raise TextError(f"the text is {len(ids)} bytes, over the limit of {limit} bytes: shorten it "
                        "(or raise CARACAL_MAX_TEXT_BYTES if your machine can hold it)")
    return ids


def utf8_spans(ids) -> list[tuple[int, int, str | None]]:
    """The characters of a byte sequence as UTF-8 spells them: (start, end, char) with bytes
    start..end-1 spelling `char`, in order, covering every byte once. A byte that starts no
    well-formed character (a stray continuation byte, a character cut off by the end of the
    bytes, an overlong form) is a span of its own with char None."""
    data = bytes(int(b) for b in ids)
    spans, i = [], 0
    while i < len(data):
        lead = data[i]
        n = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else \
            4 if 0xF0 <= lead < 0xF5 else 0
        try:
            ch = data[i:i + n].decode("utf-8") if n else None
        except UnicodeDecodeError:  # a bad continuation, a surrogate or an overlong form
            ch = None
        if ch is None or len(ch) != 1:
            spans.append((i, i + 1, None))
            i += 1
        else:
            spans.append((i, i + n, ch))
            i += n
    return spans


def utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of text whose UTF-8 encoding has at most max_bytes bytes (whole
    characters only)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def visible_label(label: str) -> str:
    """A byte's label (ByteTokenizer.label) with the space made visible as "␣", for ticks,
    tables and pickers; not escaped (figures.show_label escapes it for Plotly)."""
    return "␣" if label == " " else label


def utf8_window(text: str, start: int, end: int) -> tuple[int, int, str]:
    """The part of text between UTF-8 byte offsets start and end, moved inwards to whole
    characters: (a, b, window) with start <= a <= b <= end, window's UTF-8 encoding being bytes
    a..b-1 of text's. Offsets are clipped to 0..len(text's bytes)."""
    data = text.encode("utf-8")
    a, b = max(0, min(int(start), len(data))), max(0, min(int(end), len(data)))
    while a < b and 0x80 <= data[a] < 0xC0:  # a continuation byte: the character began earlier
        a += 1
    while b < len(data) and b > a and 0x80 <= data[b] < 0xC0:
        b -= 1
    return a, b, data[a:b].decode("utf-8")
