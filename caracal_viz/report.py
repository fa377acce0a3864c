"""The offline HTML report: one self-contained file with every view of the app for one
checkpoint and one text, as interactive Plotly figures.

Self-contained means: plotly.js is inlined once, no other script, style, font or image is
fetched, and a Content-Security-Policy forbids the page from loading anything over the network
(it opens from a USB stick on a machine with no internet). Every string that comes from the
user or from the checkpoint file (text, file name, training record) is HTML-escaped, and
Plotly's figure JSON escapes "<", so nothing in them can become markup or script.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import json
from pathlib import Path

import numpy as np
import plotly.io as pio
import plotly.offline

from models.files import atomic_write

from . import figures
from .causality import CANNOT, CAUSAL, CausalityReport, causality_report
from .checkpoint import Checkpoint
from .energy import energy_bands, parseval_report
from .filters import data_kernels, fftnet_filters, learned_filters
from .gates import gate_report
from .impulse import aliasing, kernel_impulses, mixer_impulse
from .influence import influence_limit, mixing_matrices, token_influence
from .predict import next_token_view
from .text import encode_text, utf8_prefix, visible_label
from .trace import forward_pass

INFLUENCE_BYTES = 256
"""The influence map covers the text's first 256 bytes (L backward passes of length L: it grows
as L^2; a 256 x 256 map is a few seconds on a CPU)."""
MIXING_BYTES = 64
"""Mixing matrices cover the first 64 bytes ((H, L, L) per block, about 0.2 MB each in the file)."""
KERNEL_LENGTH = 256
IMPULSE_LENGTH = 64
ALIASING_LENGTH = 48
TOP_K = 5
TABLE_ROWS = 32  # positions in the top-k table (the loss figure's hover has every position)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "svg", "scale": 2}}
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 2rem 4rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
h3 { margin-top: 1.6rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
pre.text { white-space: pre-wrap; word-break: break-all; background: #f7f7f7; padding: 0.8rem;
           border: 1px solid #ddd; max-height: 24rem; overflow: auto; }
.verdict { padding: 0.8rem 1rem; border-radius: 6px; font-weight: 600; margin: 0.8rem 0; }
.causal { background: #e3f4ec; border: 2px solid #009E73; }
.leaky { background: #fbe6dc; border: 2px solid #D55E00; }
.cannot { background: #eeeeee; border: 2px solid #888888; }
.nan { color: #555; background: #eeeeee; padding: 0.4rem 0.6rem; border-left: 4px solid #888888; }
.note { color: #555; font-size: 0.92rem; }
nav a { margin-right: 1rem; }
.figure { margin: 0.6rem 0 1.2rem; }
.blocks { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1.5rem; }
.blocks > section { min-width: 0; }
@media (max-width: 1100px) { .blocks { grid-template-columns: 1fr; } }
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


class _Page:
    """Collects HTML parts; every figure goes in as a div with its own newPlot script."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n_figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        ident = f' id="{_e(anchor)}"' if anchor else ""
        self.add(f"<h{level}{ident}>{_e(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        self.add(f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{_e(text)}</p>')

    def figure(self, fig) -> None:
        self.n_figures += 1
        _compact(fig)
        div = pio.to_html(fig, full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG,
                          div_id=f"figure-{self.n_figures}", default_width="100%")
        self.add(f'<div class="figure">{div}</div>')

    @contextlib.contextmanager
    def blocks(self):
        """Per-block panels side by side (two columns, one below 1,100 px): the report's height was
        mostly one block after another at full width. The columns are fixed, not auto-fit, because
        each figure is drawn at its cell's width when its inline script runs, before the next
        cell exists."""
        self.add('<div class="blocks">')
        try:
            yield
        finally:
            self.add("</div>")

    @contextlib.contextmanager
    def block(self, title: str):
        """One cell of `blocks`: a heading and the figures added inside it."""
        self.add("<section>")
        self.heading(3, title)
        try:
            yield
        finally:
            self.add("</section>")

    def table(self, rows: list[tuple], header: tuple | None = None) -> None:
        head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.add(f"<table>{head}{body}</table>")


def _compact(fig) -> None:
    """Float arrays go into the figure JSON as float32: Plotly writes numpy arrays as base64 of
    their bytes, so this halves them, and 7 significant digits are more than any hover shows."""
    for trace in fig.data:
        for name in ("x", "y", "z", "customdata"):
            v = trace[name] if name in trace else None
            if isinstance(v, np.ndarray) and v.dtype == np.float64:
                trace[name] = v.astype(np.float32)


def _meta_value(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 200 else s[:200] + "…"


def _curve(v) -> list | None:
    """A training curve from the (untrusted) training record: a list of [step, value] pairs."""
    if not isinstance(v, list) or not v or len(v) > 100_000:
        return None
    ok = all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          and np.isfinite(x) for x in p) for p in v)
    return v if ok else None


def write_report(ck: Checkpoint, text: str, path, *, influence_bytes: int = INFLUENCE_BYTES,
                 mixing_bytes: int = MIXING_BYTES, certificate: CausalityReport | None = None) -> Path:
    """Write one self-contained, offline HTML report of `ck` on `text` to `path` (replaced
    atomically) and return its Path.

    Sections: model card and training record; the causality certificate with its verdict;
    next-byte predictions (loss per byte, top-k); spectral filters (every block x head at a
    glance, heads x frequency per block, data-dependent kernels or FFTNet's adapted filter);
    modReLU gates (open map, passed energy, dead heads); the causal trick (kernel before/after the
    mask, mixer impulse responses, aliasing); Parseval energy (identity, energy by band and head,
    gain); token influence (the map on the first `influence_bytes` bytes, the row of the
    worst-predicted byte, per-head mixing matrices on the first `mixing_bytes` bytes). Figures
    are sized to their content: no panel is drawn blank, float arrays go in as float32, plotly.js
    once; per-head detail that would be a tangle of lines (phase, group delay, ESD) is left to
    the app, said in one line. certificate: the `causality_report(ck)` when the caller
    has it already (the default computes it). A model whose activations are NaN/Inf still gets
    its report: the verdict says "cannot certify" and each view that holds NaN says so.
    Raises TextError for bad text; OSError when the file cannot be written.
    """
    ids = encode_text(text, device=ck.device)
    path = Path(path)
    page = _Page()
    cfg = ck.config
    fwd = forward_pass(ck, text)  # the one pass every view of the text reads
    cert = certificate if certificate is not None else causality_report(ck)
    view = next_token_view(ck, fwd, k=TOP_K)

    _header(page, ck, text, ids, cert)
    _model_card(page, ck)
    _certificate(page, cert)
    _predictions(page, view)
    _filters(page, ck, fwd)
    _gates(page, ck, fwd)
    _causal_trick(page, ck)
    _energy(page, ck, fwd)
    _influence(page, ck, fwd, view, influence_bytes, mixing_bytes)
    page.para(f"Generated by caracal-viz on {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M UTC} "
              f"on {ck.device.type}; {page.n_figures} figures. Every number above was measured on this "
              f"checkpoint ({cfg.mixer}, {cfg.n_layers} blocks) and this text.", "note")
    _write(path, _document(ck, page))
    return path


def _document(ck: Checkpoint, page: _Page) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>caracal-viz report: {_e(ck.name)}</title>", f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
        "</head><body>", *page.parts, "</body></html>",
    ])


def _write(path: Path, document: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(document)

    atomic_write(path, write)


# ---- sections ----------------------------------------------------------------------------------
SECTIONS = (("card", "Model card"), ("certificate", "Causality certificate"), ("predictions", "Next-byte predictions"),
            ("filters", "Spectral filters"), ("gates", "modReLU gates"), ("causal-trick", "The causal trick"),
            ("energy", "Parseval energy"), ("influence", "Token influence"))


def _header(page: _Page, ck: Checkpoint, text: str, ids: list[int], cert) -> None:
    page.heading(1, f"caracal-viz report: {ck.name}")
    page.para(f"{ck.config.mixer} model, {ck.num_params:,} parameters; a text of {len(ids)} bytes.", "note")
    page.add("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in SECTIONS) + "</nav>")
    cls = {CAUSAL: "causal", CANNOT: "cannot"}.get(cert.verdict, "leaky")
    page.add(f'<div class="verdict {cls}">{_e(cert.headline.upper())}: {_e(cert.summary)}</div>')
    page.heading(3, "The text")
    page.add(f'<pre class="text">{_e(text)}</pre>')


def _model_card(page: _Page, ck: Checkpoint) -> None:
    page.heading(2, "Model card", "card")
    page.table([("file", ck.name), ("sha256", ck.sha256), ("parameters", f"{ck.num_params:,}"),
                ("causal by construction (config)", "yes" if ck.config.is_causal else "no")]
               + [(k, v) for k, v in ck.config.to_dict().items()], header=("field", "value"))
    meta = ck.meta if isinstance(ck.meta, dict) else {}
    rows = [(k, _meta_value(v)) for k, v in meta.items() if k not in ("loss_curve", "val_curve")]
    if rows:
        page.heading(3, "Training record (as stored in the file)")
        page.table(rows, header=("field", "value"))
    loss, val = _curve(meta.get("loss_curve")), _curve(meta.get("val_curve"))
    if loss or val:
        page.figure(figures.training_curve_figure(loss or [], val or []))


def _certificate(page: _Page, cert) -> None:
    page.heading(2, "Causality certificate", "certificate")
    page.para(cert.rule)
    page.para(f"Covered: {cert.coverage}. Precision: {cert.precision_text}.", "note")
    page.figure(figures.causality_figure(cert))
    page.table([(f"block {p.layer}", f"{p.kind} ({p.causal_mode})", p.structure.status, f"{p.relative_leak:.3g}",
                 f"{p.floor_ratio:.3g}", p.verdict, p.source) for p in cert.per_layer],
               header=("block", "mixer", "structure", "relative leak", "leak / floor", "verdict", "evidence"))


def _predictions(page: _Page, view) -> None:
    page.heading(2, "Next-byte predictions", "predictions")
    page.figure(figures.token_loss_figure(view))
    if not np.isfinite(view.loss_bits[:-1]).all():
        page.para("NaN/Inf: the model's activations overflow on this text, so some losses (and the figures "
                  "built on them) are missing.", "nan")
    if len(view.ids) > 1 and np.isfinite(view.loss_bits).any():
        worst = int(np.nanargmax(view.loss_bits))
        page.para(f"The worst-predicted byte follows position {worst}: what the model expected there.")
        page.figure(figures.topk_figure(view, worst))
    rows = []
    for i in range(min(len(view.ids), TABLE_ROWS)):
        guesses = ", ".join(f"{visible_label(lab)} {p:.0%}" for lab, p in zip(view.topk_labels[i], view.topk_probs[i]))
        nxt = view.labels[i + 1] if i + 1 < len(view.ids) else "(end)"
        loss = f"{view.loss_bits[i]:.2f}" if np.isfinite(view.loss_bits[i]) else "n/a"
        rows.append((i, visible_label(view.labels[i]), visible_label(nxt), loss, guesses))
    page.heading(3, f"Top {view.topk_ids.shape[1]} next bytes, first {len(rows)} positions")
    page.table(rows, header=("position", "byte", "next byte", "loss (bits)", "model's top guesses"))


def _filters(page: _Page, ck: Checkpoint, fwd) -> None:
    page.heading(2, "Spectral filters", "filters")
    lf = learned_filters(ck)
    dks = data_kernels(ck, fwd)
    ffs = fftnet_filters(ck, fwd)
    if all(f is None for f in lf):
        page.para("This checkpoint has no learned spectral filters.")
        return
    page.figure(figures.filter_grid_figure(lf))
    page.para("Phase and group delay, one head at a time: the app's Spectral filters page (every head's on one "
              "plot is a tangle).", "note")
    with page.blocks():
        for i, f in enumerate(lf):
            if f is None:
                continue
            with page.block(f"Block {i}"):
                page.figure(figures.filter_heatmap(f.freqs, f.magnitude_db, title=f"|H(f)| in dB, block {i} ({f.kind})"))
                if dks[i] is not None:
                    page.figure(figures.data_kernel_figure(dks[i]))
                if ffs[i] is not None:
                    page.figure(figures.fftnet_filter_figure(ffs[i]))


def _gates(page: _Page, ck: Checkpoint, fwd) -> None:
    page.heading(2, "modReLU gates", "gates")
    report = gate_report(ck, fwd)
    if all(g is None for g in report):
        page.para("This checkpoint has no modReLU gates.")
        return
    page.figure(figures.gate_summary_figure(report))
    with page.blocks():
        for i, g in enumerate(report):
            if g is not None:
                with page.block(f"Block {i}"):
                    page.figure(figures.gate_map_figure(g, title=f"modReLU gates, block {i} ({g.kind})"))
                    page.figure(figures.passed_energy_figure(g, title=f"Energy passed by the gates, block {i}"))


def _causal_trick(page: _Page, ck: Checkpoint) -> None:
    page.heading(2, "The causal trick", "causal-trick")
    page.para("Zero-pad, FFT, multiply, inverse FFT, keep the first L outputs: a causal convolution, as long "
              "as the learned kernel has no negative lags and the FFT is long enough not to wrap around.")
    impulses = kernel_impulses(ck, min(ck.config.context, KERNEL_LENGTH))
    with page.blocks():
        for i, ki in enumerate(impulses):
            if ki is not None:
                with page.block(f"Block {i}: learned kernel before and after the mask"):
                    page.figure(figures.kernel_impulse_figure(ki))
    page.heading(3, "Mixer impulse responses")
    with page.blocks():
        for i in range(ck.config.n_layers):
            with page.block(f"Block {i}"):
                page.figure(figures.mixer_impulse_figure(mixer_impulse(ck, i, IMPULSE_LENGTH // 2, IMPULSE_LENGTH)))
    layer = next((i for i, ki in enumerate(impulses) if ki is not None and ki.kind == "mhf"), None)
    if layer is not None:
        page.heading(3, f"Aliasing: block {layer}'s kernel with no padding (N = L)")
        page.figure(figures.aliasing_figure(aliasing(ck, layer, ALIASING_LENGTH, ALIASING_LENGTH)))


def _energy(page: _Page, ck: Checkpoint, fwd) -> None:
    page.heading(2, "Parseval energy", "energy")
    rep = parseval_report(ck, fwd)
    page.figure(figures.energy_identity_figure(rep))
    if any(e is not None for e in rep.layers):
        page.figure(figures.energy_bands_figure(energy_bands(rep)))
        page.figure(figures.energy_gain_figure(rep))
        page.para("Each head's energy spectral density, input against output: the app's Parseval energy page.",
                  "note")


def _influence(page: _Page, ck: Checkpoint, fwd, view, influence_bytes: int, mixing_bytes: int) -> None:
    text = fwd.text
    page.heading(2, "Token influence", "influence")
    n = min(influence_bytes, influence_limit(ck))
    part = utf8_prefix(text, n)
    if not part:
        page.para("The text's first character is longer than the influence budget: no influence map.")
        return
    if part != text:
        page.para(f"On the text's first {len(part.encode('utf-8'))} bytes (the map costs one backward pass "
                  "per byte).", "note")
    m = token_influence(ck, part)
    if np.isnan(m.upper_rel):
        page.para("NaN/Inf: the influence map holds NaN (the model's activations overflow), so whether a "
                  "prediction reads a later byte cannot be read from it.", "nan")
    page.figure(figures.influence_figure(m, hover_context=False))
    L = len(m.labels)
    scored = view.loss_bits[: L - 1]
    if L > 1 and np.isfinite(scored).any():
        row = int(np.nanargmax(scored))
        page.figure(figures.influence_strip_figure(m, row))
    part = utf8_prefix(text, min(mixing_bytes, n))
    mats = mixing_matrices(ck, fwd if part == text else forward_pass(ck, part))
    labels = [ck.tokenizer.label(b) for b in part.encode("utf-8")]
    page.heading(3, f"Mixing matrices per block and head (first {len(labels)} bytes)")
    with page.blocks():
        for i, mm in enumerate(mats):
            if mm is not None:
                with page.block(f"Block {i}"):
                    page.figure(figures.mixing_matrix_figure(mm, labels, i, ck.config.layer_kind(i), hover_bytes=0))
