"""What only a browser shows of issue 13's rough edges: input kept across pages (item 1), where
Plotly draws the threshold labels on log axes (item 3) and how tall colour bars are (item 4),
in the real app in a real headless Chromium."""

from __future__ import annotations

import pytest

from tests.browser import error_texts
from tests.test_links_browser import (
    app_page,
    chart_index,
    go_to,
    selectbox_text,
    settle,
)

PROMPT = "ZQ: a prompt of my own, typed and not generated from"


@pytest.mark.timeout(400)
def test_the_generation_prompt_and_settings_survive_a_visit_to_another_page(tmp_path):
    with app_page(tmp_path, "/") as (page, _):
        main = page.locator('[data-testid="stMain"]')
        box = main.get_by_label("Prompt")
        box.scroll_into_view_if_needed()
        box.fill(PROMPT)
        box.press("Tab")  # the text area sends its value when it loses the focus
        settle(page)
        seed = main.get_by_label("Seed")
        seed.fill("7")
        seed.press("Tab")
        main.get_by_role("button", name="Generate").click()
        settle(page)

        go_to(page, "Spectral filters")
        go_to(page, "Overview")
        box = main.get_by_label("Prompt")
        box.scroll_into_view_if_needed()
        assert box.input_value() == PROMPT
        assert main.get_by_label("Seed").input_value() == "7"
        assert error_texts(page) == []


@pytest.mark.timeout(400)
def test_the_layer_box_shows_the_new_checkpoints_block_kind_after_a_switch(tmp_path):
    """Item 2 as the browser draws it: the Layer box's text, not only the options it was sent."""
    with app_page(tmp_path, "/spectral_filters?ck=caracal-shakespeare") as (page, _):
        assert selectbox_text(page, "Layer") == "block 0 (mhf)"
        page.locator('input[role="combobox"][aria-label="Checkpoint"]').first.click()
        page.get_by_role("option", name="fftnet-shakespeare").click()
        settle(page)
        assert selectbox_text(page, "Layer") == "block 0 (fftnet)"
        assert error_texts(page) == []


# Each line (a shape across the plot) at its pixel position, from its data value, and each
# annotation's box, in the n-th chart of the page. Plotly's l2p takes a log axis's log10 value.
LINES_JS = """([n]) => { const gd = document.querySelectorAll('.js-plotly-plot')[n], r = gd.getBoundingClientRect();
  const px = (ax, v) => ax._offset + ax.l2p(ax.type === 'log' ? Math.log10(v) : v);
  const fl = gd._fullLayout, lines = [];
  for (const s of fl.shapes) {
    const ax = (id) => fl[id.replace(' domain', '').replace(/^x/, 'xaxis').replace(/^y/, 'yaxis')];
    if (s.y0 === s.y1 && !s.yref.endsWith('domain')) lines.push(['h', r.top + px(ax(s.yref), s.y0)]);
    if (s.x0 === s.x1 && !s.xref.endsWith('domain')) lines.push(['v', r.left + px(ax(s.xref), s.x0)]);
  }
  const labels = [...gd.querySelectorAll('.annotation')].map(a => { const b = a.getBoundingClientRect();
    return [a.textContent, b.left, b.top, b.right, b.bottom]; });
  return {lines, labels, plotRight: r.left + fl._size.l + fl._size.w}; }"""


def labels_at_lines(page, chart: int, texts: list[str], kind: str) -> dict:
    """For each label text: the distance (px) from its box's centre to the nearest line of `kind`
    ("h": horizontal, compared in y; "v": vertical, compared in x)."""
    got = page.evaluate(LINES_JS, [chart])
    lines = [p for k, p in got["lines"] if k == kind]
    out = {}
    for text in texts:
        boxes = [b for t, *b in got["labels"] if t == text]
        assert boxes, f"no label {text!r} among {[t for t, *_ in got['labels']]}"
        left, top, right, bottom = boxes[0]
        centre = (top + bottom) / 2 if kind == "h" else (left + right) / 2
        out[text] = (min(abs(centre - p) for p in lines), left - got["plotRight"])
    return out


@pytest.mark.timeout(500)
def test_threshold_and_period_labels_are_drawn_at_their_lines(tmp_path):
    """Item 3: a label on a log axis given its value instead of log10 of it lands decades away."""
    with app_page(tmp_path, "/causal_trick?ck=caracal-circular-leaky") as (page, _):
        chart = chart_index(page, "Where the leak reaches")
        page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
        (dist, beyond), = labels_at_lines(page, chart, ["rounding tolerance"], "h").values()
        assert dist < 8 and beyond >= 0, (dist, beyond)  # at its line, right of the plot (off the curves)

        go_to(page, "modReLU gates")
        (dist, beyond), = labels_at_lines(page, chart_index(page, "modReLU gates: open"), ["dead below 5%"],
                                          "h").values()
        assert dist < 8 and beyond >= 0, (dist, beyond)  # not behind the bars

        go_to(page, "Spectral filters")
        page.locator('[data-testid="stSidebar"] input[role="combobox"][aria-label="Checkpoint"]').first.click()
        page.get_by_role("option", name="caracal-periodic").click()
        settle(page)
        for axis in ("log frequency", "period"):
            page.locator('[data-testid="stMain"] label').filter(has_text=axis).first.click()
            settle(page)
            chart = chart_index(page, "|H(f)| in dB")
            page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
            for text, (dist, _) in labels_at_lines(page, chart, ["period 3", "period 8", "period 20"], "v").items():
                assert dist < 4, (axis, text, dist)
        assert error_texts(page) == []


# The n-th chart's colour bar: its fill's box, the tick labels' boxes, and the box of the
# scrolling container the chart sits in (the window when none)
CBAR_JS = """([n]) => { const gd = document.querySelectorAll('.js-plotly-plot')[n];
  const box = (el) => { const b = el.getBoundingClientRect(); return [b.top, b.bottom]; };
  let c = gd.parentElement; while (c && !(c.scrollHeight > c.clientHeight + 2 &&
    ['auto', 'scroll'].includes(getComputedStyle(c).overflowY))) c = c.parentElement;
  return {fill: box(gd.querySelector('.colorbar .cbfill')),
          ticks: [...gd.querySelectorAll('.colorbar .cbaxis text')].map(box),
          view: c ? box(c) : [0, window.innerHeight]}; }"""


def colour_bar(page, title: str) -> tuple[float, int]:
    """(length of the colour bar in px, number of its tick labels inside the visible box)."""
    chart = chart_index(page, title)
    page.locator(".js-plotly-plot").nth(chart).scroll_into_view_if_needed()
    got = page.evaluate(CBAR_JS, [chart])
    top, bottom = got["view"]
    (a, b) = got["fill"]
    assert top - 1 <= a and b <= bottom + 1, (got["fill"], got["view"])  # all of it in view
    return b - a, sum(top <= t and u <= bottom for t, u in got["ticks"])


@pytest.mark.timeout(500)
@pytest.mark.parametrize("text", ["One short line.", ("to be or not to be, that is the question. " * 100)[:4000]],
                         ids=["one row", "4000 bytes"])
def test_the_loss_grids_colour_bar_is_readable_in_its_box(tmp_path, text):
    """Item 4: a long text scrolls inside a 640 px box; its colour bar spanned the whole grid (one
    tick in view). One to three rows squashed it to 90 px."""
    with app_page(tmp_path, "/") as (page, _):
        box = page.locator('[data-testid="stSidebar"] textarea').first
        box.fill(text)
        box.press("Tab")
        settle(page)
        length, ticks = colour_bar(page, "Loss per byte")
        assert length >= 110 and ticks >= 3, (length, ticks)
        assert error_texts(page) == []


# Every metric label and value and every button label of the main column that the browser cut
# with an ellipsis: a box with text-overflow: ellipsis whose text (measured by a Range, as its
# inline children report no scroll width) is wider than the box.
CUT_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stMetric"] *, '
  + '[data-testid="stMain"] [data-testid^="stBaseButton"] *')]
  .filter(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.textContent.trim())
  .filter(e => { const r = document.createRange(); r.selectNodeContents(e);
                 return r.getBoundingClientRect().width > e.clientWidth + 1; })
  .map(e => e.textContent.trim())"""


@pytest.mark.timeout(500)
def test_no_metric_or_button_label_is_cut_in_a_900_px_window(tmp_path):
    """After the screenshot review at 900 px: the quiz's buttons ("Check m…"), its hidden answers
    ("answe…") and the Interventions page's bits/byte ("2.29…") were cut."""
    with app_page(tmp_path, "/") as (page, _):
        page.set_viewport_size({"width": 900, "height": 900})
        settle(page)
        assert page.evaluate(CUT_JS) == []
        go_to(page, "The causal trick")
        assert page.evaluate(CUT_JS) == []
        page.locator('[data-testid="stMain"]').get_by_role("button", name="Show the answer").click()
        settle(page)
        assert page.evaluate(CUT_JS) == []
        go_to(page, "Interventions")
        assert page.evaluate(CUT_JS) == []
        assert error_texts(page) == []
