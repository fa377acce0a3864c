"""The linked influence view: the token influence map and the text side by side in one HTML
document, where hovering a row of the map colours the bytes that prediction reads and hovering a
byte colours the predictions that read it (what BertViz and CircuitsVis users value most).

Plotly figures in Streamlit report clicks and selections back to Python but not hovers, so this
view is a self-contained document (a canvas, the text as spans, a short script; no network, no
library) that a page shows with `st.components.v1.html`. No Streamlit here.

Encoding: the map is sent as one byte per entry, base64: level = round(254 (log10 v - top + D) / D)
with top the log10 of the map's largest entry and D = LOG_DECADES (values below 10^(top - D) are
level 0, the floor); level 255 marks an entry with no value (the last row: nothing follows the
last byte). Every string from the text reaches the page as JSON and is set with textContent,
never as markup.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np
import plotly.colors

from ..text import utf8_spans
from .influence import LOG_DECADES, _log_influence
from .style import FUTURE, MAGNITUDE
from .text import char_glyph

LINKED_MAX_SIDE = 1024  # one byte an entry: 1 MB of map, 1.4 MB in the page, at this side
NO_VALUE = 255


def influence_levels(values: np.ndarray) -> np.ndarray:
    """The map as the view's colour levels: (L, L) uint8, 0..254 over LOG_DECADES decades below the
    largest finite entry (0: at or below the floor), NO_VALUE where the entry is NaN or infinite:
    the map figure's own log scale (`_log_influence`), in 254 steps."""
    z, zmin, _ = _log_influence(values)
    ok = np.isfinite(z)
    levels = np.rint(254 * np.clip((np.where(ok, z, zmin) - zmin) / LOG_DECADES, 0.0, 1.0)).astype(np.uint8)
    levels[~ok] = NO_VALUE
    return levels


def _palette(n: int = 255) -> list[list[int]]:
    """n colours of the magnitude scale (Cividis) as [r, g, b] in 0..255, as the map's colour bar
    draws them."""
    rgb = plotly.colors.sample_colorscale(MAGNITUDE, [i / (n - 1) for i in range(n)], colortype="tuple")
    return [[round(255 * c) for c in col] for col in rgb]


def _chars(ids: np.ndarray, offset: int) -> list[dict]:
    """The text as the view shows it: one entry per UTF-8 character (its glyph, its byte range
    a..b-1 within the view, its position in the text for the hover, a line break after a newline)."""
    out = []
    for a, b, ch in utf8_spans(ids):
        glyph = html.unescape(char_glyph(ch))  # char_glyph escapes for Plotly; here textContent does it
        out.append({"g": glyph, "a": a, "b": b, "p": a + offset, "nl": ch == "\n"})
    return out


def linked_influence_html(m, start: int = 0, max_side: int = LINKED_MAX_SIDE) -> tuple[str, str]:
    """The linked view of an `influence.InfluenceMap` (values (L, L), ids (L,)) of bytes
    start..start+L-1 of a text (a window's start; positions shown are the text's). Over
    `max_side` bytes the view holds the map's last `max_side` positions (rows and columns), and
    says so.

    Returns (html, note): the self-contained document, and one line for the page saying what the
    view holds (positions of the text, the colour scale)."""
    values = np.asarray(m.values)
    L = values.shape[0]
    first = max(0, L - max_side)
    levels = influence_levels(values[first:, first:])
    n = L - first
    offset = int(start) + first
    data = {
        "n": n, "offset": offset, "decades": LOG_DECADES,
        "levels": base64.b64encode(np.ascontiguousarray(levels).tobytes()).decode("ascii"),
        "chars": _chars(np.asarray(m.ids)[first:], offset),
        "palette": _palette(), "future": FUTURE,
    }
    payload = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")  # no "</script>" can end the block
    note = (f"positions {offset}..{offset + n - 1} of the text" + (f" (the last {n} of the map's {L})" if first else "")
            + f"; colour over {LOG_DECADES:.0f} decades below the map's largest value, as on the map above")
    return _TEMPLATE.replace("__DATA__", payload), note


_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body { margin: 0; font-family: "Source Sans Pro", sans-serif; font-size: 14px; color: #31333f; }
#wrap { display: flex; gap: 12px; align-items: flex-start; }
#holder { position: relative; flex: none; line-height: 0; }
#map { width: min(400px, 55vw); height: min(400px, 55vw); image-rendering: pixelated; cursor: crosshair;
       border: 1px solid #ccc; }
#cursor { position: absolute; left: 0; right: 0; height: 0; border-top: 1px solid __FUTURE__; display: none;
          pointer-events: none; }
#text { flex: 1; min-width: 160px; max-height: min(400px, 55vw); overflow: auto; font-family: monospace;
        font-size: 13px; line-height: 1.6; white-space: pre-wrap; word-break: break-all; }
#text span { padding: 0 1px; border-radius: 2px; cursor: pointer; }
#text span.reader { outline: 2px solid __FUTURE__; }
#text span.target { text-decoration: underline 2px; }
#text span.source { outline: 2px solid #31333f; }
#readout { margin-top: 6px; min-height: 3.2em; }
</style></head><body>
<div id="wrap"><div id="holder"><canvas id="map"></canvas><div id="cursor"></div></div><div id="text" aria-label="the text"></div></div>
<div id="readout">Hover a row of the map: the bytes that prediction reads light up in the text.
Hover a byte: the predictions that read it light up.</div>
<script type="application/json" id="data">__DATA__</script>
<script>
(function () {
  const d = JSON.parse(document.getElementById("data").textContent);
  const n = d.n, raw = atob(d.levels), lv = new Uint8Array(n * n);
  for (let k = 0; k < n * n; k++) lv[k] = raw.charCodeAt(k);
  const rgb = d.palette;
  const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  canvas.width = n; canvas.height = n;
  const img = ctx.createImageData(n, n);
  for (let k = 0; k < n * n; k++) {
    const c = lv[k] === 255 ? [212, 212, 212] : rgb[lv[k]];
    img.data.set([c[0], c[1], c[2], 255], 4 * k);
  }
  ctx.putImageData(img, 0, 0);
  const box = document.getElementById("text"), spanOf = new Array(n), spans = [];
  for (const ch of d.chars) {
    const s = document.createElement("span");
    s.textContent = ch.g;
    s.title = ch.b - ch.a > 1 ? `positions ${ch.p}..${ch.p + ch.b - ch.a - 1}` : `position ${ch.p}`;
    s.dataset.a = ch.a; s.dataset.b = ch.b;
    for (let j = ch.a; j < ch.b; j++) spanOf[j] = s;
    box.appendChild(s); spans.push(s);
    if (ch.nl) box.appendChild(document.createElement("br"));
  }
  const readout = document.getElementById("readout"), cursor = document.getElementById("cursor");
  const rel = l => Math.pow(10, d.decades * (l / 254 - 1));
  function paint(level) {  // level(j) of each byte j -> its character's colour (the largest of its bytes)
    for (const s of spans) {
      let best = -1;
      for (let j = +s.dataset.a; j < +s.dataset.b; j++) { const l = level(j); if (l !== 255 && l > best) best = l; }
      s.dataset.level = best;
      s.classList.remove("reader", "target", "source");
      if (best > 0) {
        const c = rgb[best];
        s.style.background = `rgb(${c[0]},${c[1]},${c[2]})`;
        s.style.color = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) > 140 ? "#000" : "#fff";
      } else { s.style.background = ""; s.style.color = ""; }
    }
  }
  function top(level, count) {
    const js = [];
    for (let j = 0; j < n; j++) { const l = level(j); if (l !== 255 && l > 0) js.push(j); }
    js.sort((a, b) => level(b) - level(a));
    return js.slice(0, count);
  }
  function name(j) { const s = spanOf[j]; return `'${s.textContent}' at ${j + d.offset}`; }
  function row(i) {
    paint(j => lv[i * n + j]);
    spanOf[i].classList.add("reader");
    if (i + 1 < n) spanOf[i + 1].classList.add("target");
    const t = top(j => lv[i * n + j], 5);
    readout.textContent = i + 1 < n
      ? `Prediction after position ${i + d.offset} (of position ${i + 1 + d.offset}) reads most: ` +
        t.map(j => `${name(j)} (${rel(lv[i * n + j]).toPrecision(2)} of the max${j > i ? ", in the future" : ""})`).join(", ")
      : `Position ${i + d.offset} is the last: nothing follows it.`;
    readout.dataset.row = i; delete readout.dataset.col;
  }
  function col(j) {  // each prediction i that reads byte j colours the byte it predicts, i + 1
    paint(k => (k >= 1 ? lv[(k - 1) * n + j] : 0));
    spanOf[j].classList.add("source");
    const t = top(k => (k >= 1 ? lv[(k - 1) * n + j] : 0), 5);
    readout.textContent = `Byte ${name(j)} is read most by the predictions of: ` +
      t.map(k => `${name(k)} (${rel(lv[(k - 1) * n + j]).toPrecision(2)} of the max${k - 1 < j ? ", in the future" : ""})`).join(", ");
    readout.dataset.col = j; delete readout.dataset.row;
  }
  canvas.addEventListener("mousemove", e => {
    const r = canvas.getBoundingClientRect();
    const i = Math.min(n - 1, Math.max(0, Math.floor((e.clientY - r.top) / r.height * n)));
    if (+readout.dataset.row !== i) row(i);
    cursor.style.display = "block";
    cursor.style.top = `${1 + (i + 0.5) / n * r.height}px`;
  });
  box.addEventListener("mouseover", e => {
    if (e.target.tagName === "SPAN") { col(+e.target.dataset.a); cursor.style.display = "none"; }
  });
})();
</script></body></html>
""".replace("__FUTURE__", FUTURE)
