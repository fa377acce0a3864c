"""What leaves the app or the CLI as a file or as Markdown, with no Streamlit: CSV (columns, a
labelled matrix, rows of dicts) and NPZ bytes, and Markdown that shows user text exactly as typed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

import numpy as np

_MD_PUNCT = set("\\`*_{}[]()#+-.!|<>~$&:")  # markdown, Streamlit's $math$ and :emoji: shortcodes
_NBSP = "\u00a0"


def markdown_literal(pieces: Iterable[str]) -> Iterator[str]:
    """Re-yield text pieces as markdown that renders exactly as typed: punctuation escaped,
    newlines as hard line breaks, runs of spaces and leading spaces kept (no-break spaces)."""
    prev = "\n"
    for piece in pieces:
        out = []
        for ch in piece:
            if ch == "\n":
                out.append("  \n")
            elif ch == " " and prev in (" ", "\n"):
                out.append(_NBSP)
            elif ch in _MD_PUNCT:
                out.append("\\" + ch)
            else:
                out.append(ch)
            prev = ch
        if out:
            yield "".join(out)


def markdown_literal_text(text: str) -> str:
    """`markdown_literal` of one string: markdown that renders exactly as the text was typed."""
    return "".join(markdown_literal([text]))
_MD_INLINE = set("\\`*_{}[]<>~$|&:")  # what formats inside a line (":" for :emoji: and :red[...])
_MD_LINE_START = re.compile(r"^( *)([#>=+-]|\d+[.)])")  # headings, quotes, rules, list items


def md_escape(text: str) -> str:
    """A string from the user or a file (a file name, a class name in a refused pickle, a text
    excerpt, an error message quoting them) for st.markdown, st.caption, st.error and the other
    Markdown elements: shown exactly as it is, never as formatting. Only what would format is
    escaped (a file name such as notes.safetensors stays searchable as typed); a line break stays one."""
    lines = []
    for line in str(text).split("\n"):
        line = "".join("\\" + c if c in _MD_INLINE else c for c in line)
        lines.append(_MD_LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], line))
    return "  \n".join(lines)


def csv_bytes(columns: dict[str, np.ndarray | list]) -> bytes:
    """Columns of equal length -> CSV bytes with a header row."""
    names = list(columns)
    cols = [np.asarray(columns[n]).ravel() for n in names]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(names)
    w.writerows(zip(*[c.tolist() for c in cols]))
    return buf.getvalue().encode("utf-8")


def matrix_csv_bytes(matrix: np.ndarray, row_labels: list, col_labels: list, corner: str = "") -> bytes:
    """A 2-D array -> CSV bytes with a header row of column labels and a first column of row labels."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([corner, *col_labels])
    for label, row in zip(row_labels, np.asarray(matrix).tolist()):
        w.writerow([label, *row])
    return buf.getvalue().encode("utf-8")


def rows_csv_bytes(rows: list[dict]) -> bytes:
    """Rows of equal keys (e.g. a sweep's `rows()`) -> CSV bytes with the first row's keys as header."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def npz_bytes(**arrays) -> bytes:
    """Named numpy arrays -> compressed .npz bytes."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def sentence(msg: str) -> str:
    """A message as a sentence: capital first letter, a full stop unless it ends with one."""
    msg = msg.strip()
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith((".", "!", "?")) else ".")
