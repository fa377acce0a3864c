"""Widgets the pages share: figures with a toolbar download and click-to-select, download
buttons, the certificate's verdict, streamed literal text."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

import streamlit as st

from ..checkpoint import Checkpoint
from ..export import markdown_literal, markdown_literal_text
from .caching import guard
from .state import select

VERDICT_STYLE = {"causal": ("green", ":material/check_circle:"), "leaks": ("red", ":material/warning:"),
                 "cannot certify": ("gray", ":material/help:")}
"""Streamlit colour and icon of each certificate verdict: the colours of figures.VERDICT_COLOURS."""


def show_certificate(report, summary: bool = True) -> None:
    """A causality certificate's verdict (causality.CausalityReport) in the certificate's colours,
    the same on every page: green causal, red leaks, grey cannot certify (NaN/Inf). A finding about
    the model, not an app error, so it is a coloured line in a box, never st.error. The one-line
    summary below (shown literally: it holds the checkpoint's file name) unless summary=False."""
    colour, icon = VERDICT_STYLE[report.verdict]
    head = markdown_literal_text(report.headline)
    detail = report.leak_text + (": a later token changes earlier predictions." if report.verdict == "leaks" else ".")
    with st.container(border=True):
        st.markdown(f":{colour}-background[{icon} **{head}**] :{colour}[{detail}]")
        if summary:
            st.caption(markdown_literal_text(report.summary))


def stream_text(pieces: Iterable[str]) -> str:
    """Write text pieces as they come (st.write_stream), shown literally; returns the raw text.
    An error from the generator (e.g. TextError before the first piece) shows as st.error."""
    raw: list[str] = []

    def collect():
        for piece in pieces:
            raw.append(piece)
            yield piece

    with guard():
        st.write_stream(markdown_literal(collect()))
    return "".join(raw)


def stem(ck: Checkpoint) -> str:
    """The checkpoint's file name without its extension, for download file names."""
    return Path(ck.name).stem


def plotly_config(file_name: str, fmt: str = "svg") -> dict:
    """st.plotly_chart's config: no Plotly logo; the toolbar's image download as `fmt` (svg or
    png, scale 2) named `file_name`."""
    return {"displaylogo": False,
            "toImageButtonOptions": {"format": fmt, "filename": file_name, "scale": 2}}


def _on_pick(key: str, names: tuple[str, ...]) -> None:
    """A click on a figure shown with `pick`: the first clicked point whose customdata holds the
    selections' values selects them (heatmaps return no points: figures put a scatter over them)."""
    event = st.session_state.get(key)
    for point in (event.selection.points if event else []):
        data = point.get("customdata")
        if isinstance(data, dict):  # a row of a 2-D customdata array arrives as {"0": ..., "1": ...}
            data = [data.get(str(i)) for i in range(len(data))]
        values = data if isinstance(data, (list, tuple)) else [data]
        if len(values) >= len(names) and all(isinstance(v, (int, float)) for v in values[:len(names)]):
            for name, v in zip(names, values):
                select(name, int(v))
            return


def show_figure(fig, key: str, file_name: str, fmt: str = "svg", max_height: int | None = None,
                pick: str | tuple[str, ...] | None = None) -> None:
    """A Plotly figure at the page's width, in the app's theme, with a toolbar image download.
    A figure taller than `max_height` pixels scrolls inside a box of that height. With `pick`
    (a selection name or a tuple of them), clicking a point selects the values in its customdata."""
    height = fig.layout.height
    box = st.container(height=max_height) if max_height and height and height > max_height else contextlib.nullcontext()
    events = {}
    if pick:
        names = (pick,) if isinstance(pick, str) else tuple(pick)
        events = dict(on_select=lambda: _on_pick(key, names), selection_mode="points")
    with box:
        st.plotly_chart(fig, width="stretch", theme="streamlit", key=key, config=plotly_config(file_name, fmt),
                        **events)


def download_bytes(label: str, make: Callable[[], bytes | str] | bytes | str, file_name: str, mime: str,
                   key: str) -> None:
    """A download button; pass a zero-argument callable `make` to build the data only when clicked
    (in another thread: it must not call Streamlit), or small data directly."""
    st.download_button(label, data=make, file_name=file_name, mime=mime, key=key, on_click="ignore")


def download_csv(label: str, make: Callable[[], bytes | str], file_name: str, key: str) -> None:
    """`download_bytes` of a CSV file."""
    download_bytes(label, make, file_name, "text/csv", key)


def download_npz(label: str, make: Callable[[], bytes], file_name: str, key: str) -> None:
    """`download_bytes` of an NPZ file (numpy arrays)."""
    download_bytes(label, make, file_name, "application/octet-stream", key)
