"""Bad and unusual text: empty, whitespace, invalid UTF-8 files, control, right-to-left,
combining characters, emoji and text over the limit each get a clear one-line message or the
right bytes; token labels cannot carry markup or control characters into a figure.

Expected bytes are written out from the Unicode/UTF-8 tables, not computed by the code under test."""

from __future__ import annotations

import re

import pytest

from caracal_viz.text import TextError, decode_text_file, encode_text, max_text_bytes
from caracal_viz.trace import forward_pass
from models import ByteTokenizer
from tests.conftest import figure_strings
from tests.security_helpers import peak_rss_growth

MB = 2**20


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv("CARACAL_MAX_TEXT_BYTES", raising=False)


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("bad", ["", None, b"bytes", 42])
def test_empty_or_non_text_is_refused(bad):
    with pytest.raises(TextError) as err:
        encode_text(bad)
    msg = one_line(err.value)
    assert ("empty" in msg) if bad == "" else ("expected text" in msg)


@pytest.mark.parametrize("text, expected", [
    (" ", [0x20]),
    ("\n\n\t \r\n", [0x0A, 0x0A, 0x09, 0x20, 0x0D, 0x0A]),
    ("\x00\x07\x1b[31m", [0x00, 0x07, 0x1B, 0x5B, 0x33, 0x31, 0x6D]),        # NUL, BEL, an ANSI escape
    ("\u202eabc", [0xE2, 0x80, 0xAE, 0x61, 0x62, 0x63]),                      # RIGHT-TO-LEFT OVERRIDE
    ("\u05e9\u05dc", [0xD7, 0xA9, 0xD7, 0x9C]),                               # Hebrew shin, lamed
    ("e\u0301", [0x65, 0xCC, 0x81]),                                          # e + COMBINING ACUTE
    ("\u00e9", [0xC3, 0xA9]),                                                 # precomposed e-acute
    ("\U0001F469\u200d\U0001F4BB", [0xF0, 0x9F, 0x91, 0xA9, 0xE2, 0x80, 0x8D,  # woman, ZWJ, laptop
                                    0xF0, 0x9F, 0x92, 0xBB]),
    ("\ufeffhi", [0xEF, 0xBB, 0xBF, 0x68, 0x69]),                             # a typed BOM is kept
])
def test_unusual_text_is_analysed_byte_for_byte(text, expected):
    ids = encode_text(text)
    assert ids == expected
    assert ByteTokenizer().decode(ids) == text


def test_unpaired_surrogate_is_refused():
    with pytest.raises(TextError, match="surrogate"):
        encode_text("ok \ud800 not ok")


def test_limit_is_exact_in_bytes_not_characters():
    limit = max_text_bytes()
    assert len(encode_text("a" * limit)) == limit
    with pytest.raises(TextError) as err:
        encode_text("a" * (limit + 1))
    msg = one_line(err.value)
    assert str(limit + 1) in msg and str(limit) in msg and "CARACAL_MAX_TEXT_BYTES" in msg
    two_byte = "\u00e9" * (limit // 2)  # exactly `limit` bytes in UTF-8
    assert len(encode_text(two_byte)) == limit
    with pytest.raises(TextError, match=f"{limit + 2} bytes"):
        encode_text(two_byte + "\u00e9")
    with pytest.raises(TextError, match="over the limit of 8 bytes"):
        encode_text("\U0001F469\U0001F469\U0001F469", max_bytes=8)  # 3 characters, 12 bytes


def test_huge_text_is_refused_before_it_is_encoded():
    text = "x" * (32 * MB)  # encoding it would build a 32 MB bytes object and a list of 32 M ints
    err, growth = peak_rss_growth(lambda: encode_text(text))
    assert isinstance(err, TextError) and "over the limit" in str(err)
    assert growth < 8 * MB, f"peak memory grew by {growth / MB:.0f} MB"


@pytest.mark.parametrize("raw, expected", [("10", 10), ("abc", None), ("-5", None), ("0", None), ("", None)])
def test_limit_setting(monkeypatch, raw, expected):
    default = max_text_bytes()
    monkeypatch.setenv("CARACAL_MAX_TEXT_BYTES", raw)
    assert max_text_bytes() == (expected or default)


# ---- uploaded text files ------------------------------------------------------------------------
@pytest.mark.parametrize("data, byte, offset", [
    (b"caf\xe9", 0xE9, 3),                       # Latin-1, not UTF-8
    (b"ok \xe2\x82", 0xE2, 3),                   # a character cut in half
    (b"\xc0\xafetc", 0xC0, 0),                   # overlong encoding of '/'
    (b"x\xed\xa0\x80", 0xED, 1),                 # an encoded surrogate
    (b"\xff\xfeh\x00i\x00", 0xFF, 0),            # UTF-16
])
def test_invalid_utf8_file_names_the_byte(data, byte, offset):
    with pytest.raises(TextError) as err:
        decode_text_file(data, "notes.txt")
    msg = one_line(err.value)
    assert "notes.txt" in msg and f"0x{byte:02x}" in msg and f"offset {offset}" in msg and "UTF-8" in msg


def test_valid_file_decodes_and_drops_the_bom():
    assert decode_text_file(b"\xef\xbb\xbfcaf\xc3\xa9\n", "a.txt") == "caf\u00e9\n"
    assert decode_text_file("\u202e\U0001F600".encode("utf-8"), "a.txt") == "\u202e\U0001F600"


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_empty_file_is_refused(data):
    with pytest.raises(TextError, match="a.txt is empty"):
        decode_text_file(data, "a.txt")


def test_file_over_the_limit_is_refused_before_decoding():
    limit = max_text_bytes()
    assert len(decode_text_file(b"\xef\xbb\xbf" + b"a" * limit, "a.txt")) == limit  # the BOM is not counted
    # invalid UTF-8 past the limit: the size is reported, so nothing was decoded
    with pytest.raises(TextError) as err:
        decode_text_file(b"\xff" * (limit + 1), "big.txt")
    msg = one_line(err.value)
    assert f"{limit + 1} bytes" in msg and "limit" in msg and "UTF-8" not in msg


def test_file_read_as_text_is_refused():
    with pytest.raises(TextError, match="bytes"):
        decode_text_file("already a str", "a.txt")


# ---- token labels -------------------------------------------------------------------------------
def test_every_byte_label_is_plain_printable_ascii_and_distinct():
    labels = [ByteTokenizer.label(i) for i in range(256)]
    assert len(set(labels)) == 256
    for i, lab in enumerate(labels):
        assert lab and all(0x20 <= ord(c) <= 0x7E for c in lab), (i, lab)
        if 0x20 <= i <= 0x7E:
            assert lab == chr(i)
        else:  # control, DEL and every byte of a multi-byte character: an escape, never the raw byte
            assert lab.startswith("\\") and len(lab) in (2, 4), (i, lab)


def test_labels_of_hostile_text_cannot_carry_control_or_direction_characters():
    text = "<script>alert(1)</script>\u202e\u0301\U0001F600\x1b[2J&amp;"
    labels = [ByteTokenizer.label(i) for i in encode_text(text)]
    joined = "".join(labels)
    assert all(0x20 <= ord(c) <= 0x7E for c in joined)
    assert "<" in joined and "&" in joined  # markup survives as labels: renderers must escape it


# ---- escaping in figures ------------------------------------------------------------------------
HOSTILE = "<b>x</b> & <script>alert(1)</script> &amp; \u202e\u0301\U0001F600\x1b <img src=x onerror=alert(1)>"
# The markup the figure builders themselves write (Plotly renders this subset of HTML)
_BUILDER_TAGS = re.compile(r"</?(br|b|i|em|sup|sub|extra)>|<span style=\"[^\"<>]*\">|</span>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def assert_escaped(fig, what: str) -> None:
    """No '<' in the figure but the builders' own tags, and every '&' starts an entity: user
    text cannot open a tag in a label, a tick, a hover or a title."""
    for s in figure_strings(fig.to_plotly_json()):
        bare = _BUILDER_TAGS.sub("", s)
        assert "<" not in bare, f"{what}: unescaped markup in {s[:120]!r}"
        assert len(re.findall("&", bare)) == len(_ENTITY.findall(bare)), f"{what}: bare '&' in {s[:120]!r}"


@pytest.fixture(scope="module")
def hostile_figures():
    from caracal_viz import compare, figures, influence, predict
    from tests.conftest import load_sample

    ck = load_sample("caracal-periodic")
    view = predict.next_token_view(ck, forward_pass(ck, HOSTILE), k=5)
    imap = influence.token_influence(ck, HOSTILE)
    mats = influence.mixing_matrices(ck, forward_pass(ck, HOSTILE))
    lt = HOSTILE.index("<")
    amp = HOSTILE.index("&")
    out = {
        "token_loss_figure": figures.token_loss_figure(view),
        "topk_figure at '<'": figures.topk_figure(view, lt),
        "topk_figure at '&'": figures.topk_figure(view, amp - 1),
        "influence_figure": figures.influence_figure(imap),
        "influence_strip_figure": figures.influence_strip_figure(imap, lt),
        "mixing_matrix_figure": figures.mixing_matrix_figure(mats[0], imap.labels, 0),
    }
    layer = next(d for d in compare.compare_checkpoints(ck, ck).layers if d is not None)
    out["compare_figure"] = figures.compare_figure(layer, "<img src=x onerror=alert(1)>.pt", "a&b.pt")
    return out


@pytest.mark.parametrize("name", ["token_loss_figure", "topk_figure at '<'", "topk_figure at '&'", "influence_figure",
                                  "influence_strip_figure", "mixing_matrix_figure", "compare_figure"])
def test_figures_escape_labels_and_names(hostile_figures, name):
    assert name in hostile_figures, f"{name} was not built"
    assert_escaped(hostile_figures[name], name)
