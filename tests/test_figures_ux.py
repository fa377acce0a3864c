"""Issue 13 items 3-6 and 9 at the figure level: real analyses of the shipped checkpoints in,
the Plotly figure's own JSON read back (what the browser is given to draw). What only the
browser shows (where a label lands, how long a colour bar is drawn) is in tests/test_e2e_ux.py."""

from __future__ import annotations

import colorsys
import html
import re
import unicodedata

import numpy as np
import plotly.colors
import pytest

from caracal_viz import figures, filters
from caracal_viz.figures import explainer as xf
from caracal_viz.causality import causality_report
from caracal_viz.explainer import padding_demo
from caracal_viz.gates import gate_report
from caracal_viz.influence import token_influence
from caracal_viz.predict import next_token_view
from caracal_viz.text import utf8_spans
from caracal_viz.trace import forward_pass
from tests.conftest import load_sample

# Arabic (right to left), a combining acute accent, an emoji with a zero-width joiner, a snowman,
# CJK, and ASCII with a newline: every length of UTF-8 character
MIXED = "Hi مرحبا e\u0301 😀\u200d☃ 漢字\nok"


def glyphs(fig) -> list[tuple[float, int, str]]:
    """(x, row, glyph) of every character drawn on a text view: heatmap cell text and text marks."""
    out = []
    for tr in fig.data:
        if tr.type == "heatmap":
            for r, row in enumerate(tr.text):
                out += [(float(c), r, g) for c, g in enumerate(row) if g]
        elif tr.type == "scatter" and tr.mode == "text":
            out += [(float(x), int(y), g) for x, y, g in zip(tr.x, tr.y, tr.text)]
    return sorted(out, key=lambda t: (t[1], t[0]))


def expected_glyph(ch: str) -> str:
    if ch in "\n ":
        return {"\n": "↵", " ": "␣"}[ch]
    if unicodedata.category(ch).startswith("M"):
        return "◌" + ch
    return "·" if unicodedata.category(ch)[0] in "CZ" else ch


@pytest.fixture(scope="module")
def views():
    ck = load_sample("caracal-periodic")
    return next_token_view(ck, forward_pass(ck, MIXED), k=3), token_influence(ck, MIXED)


def test_each_utf8_character_is_drawn_once_over_its_bytes(views):
    """Item 5: one glyph per character (not one dot per byte), centred over the cells of its
    bytes, in text order; a character's bytes never split over two rows."""
    view, imap = views
    data = MIXED.encode("utf-8")
    for fig in (figures.token_loss_figure(view), figures.influence_strip_figure(imap, 5)):
        drawn = glyphs(fig)
        assert [html.unescape(g) for _, _, g in drawn] == [expected_glyph(c) for c in MIXED]
        rows, cols = figures.text.text_grid(view.labels, spans=utf8_spans(view.ids))
        start = 0
        for (x, r, _), ch in zip(drawn, MIXED):
            n = len(ch.encode("utf-8"))
            assert set(rows[start:start + n]) == {r}, ch
            assert x == pytest.approx(cols[start:start + n].mean()), ch
            start += n
        assert start == len(data)
        assert sum(g == "·" for _, _, g in drawn) == 1  # the zero-width joiner only


def test_a_characters_hover_gives_its_positions_and_byte_values(views):
    view, imap = views
    fig = figures.token_loss_figure(view)
    (points,) = [t for t in fig.data if t.name == "pick"]  # the hover of each byte (heatmaps skip theirs)
    tips = [html.unescape(t) for t in points.text]
    at = MIXED.encode("utf-8").index("م".encode())
    for i in (at, at + 1):
        tip = tips[i]
        assert f"U+0645 arabic letter meem: positions {at}–{at + 1}, bytes 0xD9 0x85" in tip, tip
        assert f"position {i}: byte value 0x{view.ids[i]:02X}" in tip, tip
        assert "in context: \u2068" in tip and "مرحبا" in tip  # the word, in its own direction
    acute = MIXED.encode("utf-8").index("\u0301".encode("utf-8"))
    tip = tips[acute]
    assert "combining acute accent" in tip and "e\u0301" in tip
    # a character cut off by the end of the bytes is one replacement mark per byte, said so
    cut = utf8_spans(list("a☃".encode())[:-1])
    assert cut == [(0, 1, "a"), (1, 2, None), (2, 3, None)]


POSITION_AS_BYTE = re.compile(r"\bbytes? (\d+(?![\dx])|%\{)|\(byte \d+\)")  # "byte 0x4F" is a value


def strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in strings(v)]
    return []


def test_one_wording_for_positions_and_byte_values(views):
    """Item 9: "position i" for where a byte is, "byte value 0x4F 'O'" for what it is; never
    "byte 79" or "byte %{y}" in any title, axis, tick, hover or subtitle of the text views."""
    view, imap = views
    figs = {"loss": figures.token_loss_figure(view), "topk": figures.topk_figure(view, 1),
            "map": figures.influence_figure(imap), "strip": figures.influence_strip_figure(imap, 1)}
    for name, fig in figs.items():
        bad = [s for s in strings(fig.to_plotly_json()) if POSITION_AS_BYTE.search(s)]
        assert not bad, (name, bad[:3])
    assert figures.byte_value(0x4F) == "0x4F 'O'" and figures.byte_value(10) == "0x0A (newline)"
    assert figures.byte_value(0xC3) == "0xC3"
    ticks = figs["topk"].layout.yaxis.ticktext
    assert all(re.fullmatch(r"0x[0-9A-F]{2}( '.'| \(\w[\w ]*\))?", html.unescape(t)) for t in ticks), ticks
    assert "position 1" in figs["topk"].layout.title.text
    assert "byte value 0x48 'H'" in next(t for t in figs["loss"].data if t.name == "pick").text[0]
    assert figs["map"].layout.xaxis.title.text == "input position j"


def _annotation(fig, text: str):
    found = [a for a in fig.layout.annotations if a.text == text]
    assert len(found) == 1, [a.text for a in fig.layout.annotations]
    return found[0]


def test_threshold_labels_sit_at_their_lines_on_log_and_linear_axes():
    """Item 3: Plotly reads an annotation's coordinate on a log axis as log10 of the value (a shape's
    as the value): a label given the value itself lands decades away from its line."""
    d = np.arange(64)
    fig = xf.leak_by_offset_figure([("layer 0", 10.0 ** -(d / 8.0))], tolerance=3e-5)
    line = next(s for s in fig.layout.shapes if s.y0 == s.y1)
    label = _annotation(fig, "rounding tolerance")
    assert fig.layout.yaxis.type == "log" and line.y0 == 3e-5
    assert label.yref == "y" and label.y == pytest.approx(np.log10(3e-5))
    assert label.xref == "paper" and label.x >= 1 and label.xanchor == "left"  # in the margin, off the data
    assert fig.layout.margin.r >= 6 * len("rounding tolerance")

    gates = figures.gate_summary_figure(gate_report(load_sample("caracal-shakespeare")))
    dead = _annotation(gates, "dead below 5%")
    assert gates.layout.yaxis.type != "log" and dead.y == 0.05 and dead.xref == "paper" and dead.x >= 1


@pytest.mark.parametrize("axis", ["log frequency", "period"])
def test_period_marks_are_labelled_at_their_lines_on_log_axes(axis):
    ck = load_sample("caracal-periodic")
    f = next(x for x in filters.learned_filters(ck) if x is not None)
    periods = filters.task_periods(ck)
    assert periods
    for fig in (figures.filter_heatmap(f.freqs, f.magnitude_db, axis=axis, periods=periods),
                figures.filter_detail(f, 0, axis, periods)):
        for p in periods:
            x = p if axis == "period" else 1.0 / p
            lines = [s for s in fig.layout.shapes if s.x0 == pytest.approx(x) and s.x0 == s.x1]
            assert lines, f"no line at {x}"
            labels = [a for a in fig.layout.annotations if a.text == f"period {p:g}"]
            assert labels and all(a.x == pytest.approx(np.log10(x)) for a in labels), [a.x for a in labels]


@pytest.mark.parametrize("n_bytes", [5, 100, 4000])
def test_a_text_views_colour_bar_fits_what_is_shown(n_bytes):
    """Item 4: the colour bar hangs from the top of the grid, at least CBAR_MIN_PX long for a text
    of one to three rows (inside the figure: the bottom margin grows), at most what the
    TEXT_BOX_PX scroll box shows of a long text."""
    ck = load_sample("caracal-shakespeare")
    text = ("to be or not to be, " * 200)[:n_bytes]
    fig = figures.token_loss_figure(next_token_view(ck, forward_pass(ck, text)))
    (heat,) = [t for t in fig.data if t.type == "heatmap"]
    bar, lay = heat.colorbar, fig.layout
    plot_px = lay.height - lay.margin.t - lay.margin.b
    rows = heat.z.shape[0]
    assert bar.lenmode == "pixels" and bar.y == 1 and bar.yanchor == "top"
    assert figures.CBAR_MIN_PX <= bar.len <= figures.TEXT_BOX_PX - lay.margin.t
    assert bar.len <= plot_px + lay.margin.b - 10  # inside the figure
    if rows <= 3:
        assert plot_px < figures.CBAR_MIN_PX == bar.len  # longer than the grid, not squashed to it
    if rows > 30:
        assert lay.height > figures.TEXT_BOX_PX and bar.len < plot_px


def _figure_colours(fig) -> list[str]:
    """Every colour the figure itself sets (its theme template left out)."""
    spec = fig.to_plotly_json()
    spec["layout"].pop("template", None)
    return _colours(spec)


def _colours(obj) -> list[str]:
    """Every colour string in a JSON tree (marker, line, fill, colour-scale stops)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "colorscale" and isinstance(v, list):
                out += [c.lower() for _, c in v]
            elif "color" in k.lower() and isinstance(v, (str, list)):
                out += [c.lower() for c in ([v] if isinstance(v, str) else v) if isinstance(c, str)]
            else:
                out += _colours(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _colours(v)
    return out


def _is_reddish(colour: str) -> bool:
    """A colour a viewer reads as red or vermilion: hue within 32 degrees of red (vermilion is 26), saturated."""
    named = {"white": "#ffffff", "black": "#000000", "grey": "#808080", "gray": "#808080", "transparent": "#ffffff"}
    colour = named.get(colour, colour)
    if colour.startswith("#"):
        rgb = plotly.colors.hex_to_rgb(colour if len(colour) == 7 else "#" + "".join(c * 2 for c in colour[1:4]))
    else:
        assert colour.startswith("rgb"), f"unexpected colour {colour!r}"
        rgb = [float(v) for v in re.findall(r"[\d.]+", colour)[:3]]
    h, lum, sat = colorsys.rgb_to_hls(*(c / 255 for c in rgb))
    return (h * 360 < 32 or h * 360 > 335) and sat > 0.4 and 0.2 < lum < 0.8


def test_a_leak_has_one_colour_and_no_weight_shares_it():
    """Item 6: page 4's explainer and the certificate draw what reads the future in the
    certificate's leak colour; the convolution matrices' weights use no red, so a wrapped entry
    never looks like a negative weight."""
    leak = figures.VERDICT_COLOURS["leaks"].lower()
    rng = np.random.default_rng(0)
    demo = padding_demo(rng.standard_normal(12), rng.standard_normal(5), n_fft=14)
    for fig in (xf.outputs_figure(demo), xf.wraparound_figure(demo), xf.matrices_figure(demo)):
        reds = {c for c in _figure_colours(fig) if _is_reddish(c)}
        assert reds == {leak}, reds
    weights = [t for t in xf.matrices_figure(demo).data if t.name == "weights"]
    assert weights and not any(_is_reddish(c) for t in weights for _, c in t.colorscale)
    cert = figures.causality_figure(causality_report(load_sample("caracal-circular-leaky")))
    assert leak in _figure_colours(cert)


def test_fftnets_bins_without_data_look_the_same_on_both_gate_maps():
    """Item 6: a short text leaves FFTNet gate bins without data: no data on the gates map (NaN)
    and on the energy map alike (it drew them as the darkest, 'blocked', colour)."""
    g = gate_report(load_sample("fftnet-shakespeare"), forward_pass(load_sample("fftnet-shakespeare"), "Hello there, friend."))[0]
    empty = np.isnan(g.data_open)
    assert empty.any() and not empty.all()
    maps = (figures.gate_map_figure(g), figures.passed_energy_figure(g))
    for fig in maps:
        z = np.array(fig.data[0].z, dtype=float)
        assert np.array_equal(np.isnan(z), empty)
        assert fig.layout.plot_bgcolor == figures.NO_DATA and "grey: no data" in fig.layout.title.subtitle.text


def test_the_influence_maps_hover_shows_where_both_bytes_sit_in_the_text():
    """Item 16: hovering a cell of the influence map names both bytes in their context (Streamlit
    sends no hover events to Python, so the map cannot light the bytes up in the text strip;
    its own hover shows them in the text instead)."""
    text = "the quick <b>brown</b> fox é!"
    m = token_influence(load_sample("caracal-shakespeare"), text)
    fig = figures.influence_figure(m)
    (heat,) = [t for t in fig.data if t.type == "heatmap"]
    cd = np.asarray(heat.customdata, dtype=object)
    assert "position %{y:.0f}: %{customdata[0]}" in heat.hovertemplate
    assert cd[4, 0, 0] == "0x71 'q' in “\u2068the ⟦q⟧uick &lt;\u2069”"  # row 4: the prediction after 'q'
    assert cd[0, 11, 1] == "0x62 'b' in “\u2068uick &lt;⟦b⟧&gt;brown\u2069”"  # column 11: the 'b' of the tag, escaped
    e = text.encode().index("é".encode())
    for j in (e, e + 1):  # both bytes of é: the whole character is the one in brackets
        assert "⟦é⟧" in cd[0, j, 1]
