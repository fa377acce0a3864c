"""The causal trick on a checkpoint: kernel and mixer impulse responses, the aliased terms of a
circular product, and the causality certificate (`caracal_viz.impulse`, `caracal_viz.causality`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import FUTURE, OK, SIGNED, esc, head_colour, head_list, layout, rounded


def kernel_impulse_figure(ki, head: int | None = None) -> go.Figure:
    """Two-sided kernel (before the causal mask) against the causal kernel (after it), by lag,
    from an `impulse.KernelImpulse`; the masked (future) half is shaded."""
    fig = go.Figure()
    fig.add_vrect(x0=float(ki.lags.min()) - 0.5, x1=-0.5, fillcolor=FUTURE, opacity=0.08, line_width=0,
                  annotation_text="negative lags: the future", annotation_position="top left")
    causal_lags = np.arange(ki.causal.shape[-1])
    for h in head_list(ki.two_sided.shape[0], head):
        c = head_colour(h)
        fig.add_scatter(x=ki.lags, y=rounded(ki.two_sided[h], 6), mode="lines", name=f"head {h}: two-sided",
                        line=dict(color=c, width=1.2, dash="dot"),
                        hovertemplate=f"head {h} two-sided<br>lag %{{x}}<br>%{{y:.4g}}<extra></extra>")
        fig.add_scatter(x=causal_lags, y=rounded(ki.causal[h], 6), mode="lines", name=f"head {h}: causal",
                        line=dict(color=c, width=2),
                        hovertemplate=f"head {h} causal<br>lag %{{x}}<br>%{{y:.4g}}<extra></extra>")
    fig.update_xaxes(title_text="lag m (tokens back; negative = future)")
    fig.update_yaxes(title_text="kernel weight")
    masked = ", ".join(f"head {h}: {100 * float(ki.masked_fraction[h]):.2g}%"
                       for h in head_list(ki.two_sided.shape[0], head))
    return layout(fig, f"Impulse response before and after the causal mask ({ki.kind})", 400,
                  f"energy the mask removes: {masked}")


def mixer_impulse_figure(mi) -> go.Figure:
    """One mixer's response to an impulse at t0 (`impulse.MixerImpulse`): output change per
    position (all channels) and per head; anything left of t0 is a leak."""
    fig = go.Figure()
    t = np.arange(mi.length)
    if mi.t0 > 0:
        fig.add_vrect(x0=-0.5, x1=mi.t0 - 0.5, fillcolor=FUTURE, opacity=0.08, line_width=0,
                      annotation_text="before the impulse: must stay 0", annotation_position="top left")
    fig.add_scatter(x=t, y=rounded(mi.norm, 6), mode="lines+markers", name="mixer output (all channels)",
                    line=dict(color="black", width=2), marker=dict(size=4),
                    hovertemplate="position %{x}<br>|change| %{y:.4g}<extra></extra>")
    if mi.head_response is not None:
        for h in range(mi.head_response.shape[0]):
            fig.add_scatter(x=t, y=rounded(mi.head_response[h], 6), mode="lines", name=f"head {h} (FFT output)",
                            line=dict(color=head_colour(h), width=1.2),
                            hovertemplate=f"head {h}<br>position %{{x}}<br>%{{y:.4g}}<extra></extra>")
    fig.add_vline(x=mi.t0, line=dict(color=OK, width=1, dash="dash"))
    fig.update_xaxes(title_text="position t (tokens)")
    fig.update_yaxes(title_text="L2 norm of the output change")
    rel = mi.leak / mi.peak if mi.peak > 0 else 0.0
    return layout(fig, f"Block {mi.layer} mixer: response to an impulse at t0 = {mi.t0}", 380,
                  f"largest change before t0: {mi.leak:.3g} ({rel:.2g} of the peak)")


def aliasing_figure(a, head: int = 0) -> go.Figure:
    """The mixing matrix that "pad to n_fft, FFT, multiply, inverse FFT, keep the first L" applies
    with one head's learned kernel (`impulse.Aliasing`), next to its aliased part (the matrix
    minus the exact causal Toeplitz matrix), each signed and centred at zero on its own range:
    aliased terms a hundredth of the weights would be blank on the matrix's range. Exactly no
    aliasing (n_fft large enough): the matrix alone, the subtitle says so."""
    M, A = a.matrix[head], a.alias[head]
    amax = float(np.max(np.abs(A)))
    panels = [(M, float(np.max(np.abs(M))) or 1.0, "weight")] + ([(A, amax, "aliased")] if amax > 0 else [])
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.16,
                        subplot_titles=(f"matrix at N = {a.n_fft}", "aliased terms (matrix − exact), own colour range")
                        [:len(panels)])
    for col, (z, zmax, name) in enumerate(panels, start=1):
        fig.add_heatmap(z=rounded(z, 6), colorscale=SIGNED, reversescale=True, zmid=0.0, zmin=-zmax, zmax=zmax,
                        colorbar=dict(title=dict(text=name), x=0.42 if col == 1 and len(panels) == 2 else 1.02,
                                      len=0.9), row=1, col=col,
                        hovertemplate="output t=%{y}<br>input j=%{x}<br>%{z:.4g}<extra></extra>")
    fig.update_xaxes(title_text="input position j")
    fig.update_yaxes(title_text="output position t", autorange="reversed")
    sub = (f"aliased energy {100 * float(a.alias_fraction[head]):.3g}%, above the diagonal "
           f"{100 * float(a.future_fraction[head]):.3g}%; no aliasing from N = {a.safe_n_fft}" if amax > 0 else
           f"no aliased terms: N = {a.n_fft} is long enough (from N = {a.safe_n_fft}), the matrix is the exact one")
    return layout(fig, f"Aliasing of block {a.layer} head {head} at L = {a.length}, N = {a.n_fft}", 480,
                  gap=30, subtitle=sub)
VERDICT_COLOURS = {"causal": OK, "leaks": FUTURE, "cannot certify": "#888888"}
"""The certificate's colours, the same in every view: green causal, red (vermilion) leaks, grey cannot certify."""


def causality_figure(report) -> go.Figure:
    """The causality certificate (`causality.CausalityReport`): per block (its mixer alone) and for
    the whole model (the logits), the largest change of an earlier output relative to the response
    (log scale), coloured by verdict, with the rounding threshold (floor_factor rounding floors, in
    the same relative units) as a black tick on each bar. An exact zero sits on the axis' floor."""
    rows = [(f"block {p.layer} ({p.kind} {p.causal_mode})", p.leak, p.response, p.floor, p.verdict,
             p.structure.status) for p in report.per_layer]
    rows.append(("whole model (logits)", report.model_leak, report.model_response, report.floor, report.verdict,
                 "perturbation"))
    rel = [leak / resp if resp > 0 and np.isfinite(leak) else (0.0 if leak == 0 else np.nan)
           for _, leak, resp, *_ in rows]
    thresh = [report.floor_factor * floor / resp if resp > 0 else np.nan for _, _, resp, floor, *_ in rows]
    finite = [v for v in rel + thresh if np.isfinite(v) and v > 0]
    bottom = min(finite, default=1e-12) / 100
    names = [r[0] for r in rows]
    shown = [max(v, bottom) if np.isfinite(v) else bottom for v in rel]
    hover = [f"{r[4]}<br>structure: {r[5]}<br>" + ("leak: NaN/Inf" if not np.isfinite(v) else
             f"earlier outputs move by {r[1]:.3g} ({v:.3g} of the response {r[2]:.3g})<br>rounding floor {r[3]:.3g}")
             for r, v in zip(rows, rel)]
    fig = go.Figure(go.Bar(x=names, y=shown, marker_color=[VERDICT_COLOURS[r[4]] for r in rows],
                           customdata=hover, hovertemplate="%{x}<br>%{customdata}<extra></extra>", name="leak"))
    fig.add_scatter(x=names, y=[t if np.isfinite(t) and t > 0 else None for t in thresh], mode="markers",
                    marker=dict(symbol="line-ew-open", size=28, line=dict(width=3, color="black")),
                    name=f"{report.floor_factor:g} rounding floors", hovertemplate="threshold %{y:.3g}<extra></extra>")
    fig.update_yaxes(type="log", title_text="change of earlier outputs / response", exponentformat="e")
    fig.update_xaxes(title_text="where the change is measured")
    verdict = report.verdict.upper() + ("" if report.verdict != "causal" or report.model_leak == 0 else
                                        f" up to {report.precision} rounding")
    if report.verdict == "cannot certify":
        verdict += f": NaN/Inf from {esc(report.nonfinite)}"
    return layout(fig, f"Causality certificate: {verdict}", 420,
                  f"{report.leak_text}; lengths {', '.join(map(str, report.lengths))}")
