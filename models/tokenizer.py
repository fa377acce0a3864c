"""The byte tokenizer: UTF-8 bytes are the tokens (vocabulary 256), so any text round-trips."""

from __future__ import annotations


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255: encode, decode, a label per byte, and the description a checkpoint stores."""
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """str -> list of byte ids 0..255 (UTF-8)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Byte ids -> str; bytes that are not valid UTF-8 (a cut multi-byte character) become U+FFFD."""
        return bytes(int(i) & 0xFF for i in ids).decode("utf-8", errors="replace")

    def describe(self) -> dict:
        """The tokenizer as a checkpoint's metadata records it (type, vocabulary size, encoding)."""
        return {"type": "bytes", "vocab_size": 256, "encoding": "utf-8"}

    @staticmethod
    def label(token_id: int) -> str:
        """A printable label for one byte: the character for printable ASCII, else an escape
        such as '\\n' or '\\xe2' (multi-byte UTF-8 characters span several tokens)."""
        c = chr(token_id)
        if token_id < 128 and c.isprintable():
            return c
        return {10: "\\n", 9: "\\t", 13: "\\r"}.get(token_id, f"\\x{token_id:02x}")
