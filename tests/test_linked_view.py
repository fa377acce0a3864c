"""The linked influence view's document (caracal_viz/figures/linked.py): what it encodes, against a
float64 loop over the map's entries, and that the text reaches it only as data."""

import base64
import json
import math
import re

import numpy as np

from caracal_viz import figures, influence
from tests.conftest import load_sample
from caracal_viz.figures.linked import NO_VALUE, influence_levels, linked_influence_html


def payload(doc: str) -> dict:
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', doc, re.S)
    assert block, "the document carries no data block"
    return json.loads(block.group(1))


def decoded_levels(data: dict) -> np.ndarray:
    n = data["n"]
    return np.frombuffer(base64.b64decode(data["levels"]), dtype=np.uint8).reshape(n, n)


def loop_levels(values: np.ndarray) -> np.ndarray:
    """The encoding spelled out per entry with math.log10: 254 steps over LOG_DECADES below the top."""
    finite = [v for v in values.ravel() if math.isfinite(v) and v > 0]
    top = math.log10(max(finite))
    out = np.zeros(values.shape, dtype=np.uint8)
    for (i, j), v in np.ndenumerate(values):
        if not math.isfinite(v):
            out[i, j] = NO_VALUE
        elif v > 0:
            z = (math.log10(v) - (top - figures.LOG_DECADES)) / figures.LOG_DECADES
            out[i, j] = round(254 * min(1.0, max(0.0, z)))
    return out


def test_levels_match_a_float64_loop_on_a_real_map():
    ck = load_sample("caracal-circular-leaky")
    m = influence.token_influence(ck, "To be, or not to be: that is the question.")
    levels = influence_levels(m.values)
    want = loop_levels(np.asarray(m.values))
    # rint and round differ only at exact halves: one level at most, and no entry changes class
    assert np.abs(levels.astype(int) - want.astype(int)).max() <= 1
    assert ((levels == NO_VALUE) == (want == NO_VALUE)).all()
    assert (levels[-1] == NO_VALUE).all()  # nothing follows the last byte
    assert levels[:-1].max() == 254
    # the leaky checkpoint reads the future: some entries above the diagonal are well above the floor
    assert np.triu(levels[:-1].astype(int), 1).max() > 127


def test_the_document_holds_the_map_the_text_and_no_markup_from_it():
    ck = load_sample("caracal-shakespeare")
    text = "</script><img src=x onerror=alert(1)> «ça» 🦁\nnext line"
    m = influence.token_influence(ck, text)
    doc, note = linked_influence_html(m, start=100)
    assert "</script><img" not in doc and "<img src=x" not in doc
    data = payload(doc)
    L = len(m.ids)
    assert data["n"] == L and data["offset"] == 100
    assert (decoded_levels(data) == influence_levels(m.values)).all()
    # one entry per character, covering every byte once, in order; glyphs as typed (no entities)
    chars = data["chars"]
    assert [c["a"] for c in chars[1:]] == [c["b"] for c in chars[:-1]] and chars[0]["a"] == 0 and chars[-1]["b"] == L
    glyphs = "".join(c["g"] for c in chars)
    assert "</script><img" in glyphs and "🦁" in glyphs and "«ça»" in glyphs and "&lt;" not in glyphs
    assert sum(c["nl"] for c in chars) == 1
    assert [c["p"] for c in chars[:3]] == [100, 101, 102]
    assert note.startswith(f"positions 100..{100 + L - 1} of the text")


def test_a_map_over_the_limit_keeps_its_last_positions_and_says_so():
    rng = np.random.default_rng(0)
    L, side = 40, 16
    values = np.tril(rng.random((L, L)) + 0.01)
    values[-1] = np.nan

    class Map:  # the two fields the view reads
        pass
    m = Map()
    m.values, m.ids = values, np.frombuffer(b"abcdefghij" * 4, dtype=np.uint8).astype(np.int64)
    doc, note = linked_influence_html(m, start=7, max_side=side)
    data = payload(doc)
    assert data["n"] == side and data["offset"] == 7 + L - side
    assert (decoded_levels(data) == loop_levels(values[L - side:, L - side:])).all()
    assert f"the last {side} of the map's {L}" in note
