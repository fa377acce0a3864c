"""Session state: the chosen checkpoint and text (sidebar callbacks, the widget-mirroring
protocol), the app-wide selections (`linked`, `select`) and the link that carries them
(`st.query_params`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import quote

import streamlit as st

from ..checkpoint import Checkpoint
from ..text import TextError, encode_text
from ..windows import Window, text_window, window_bytes
from .caching import DEFAULT_SAMPLE, SAMPLE_NAMES, CheckpointChoice, example_text, load_checkpoint_choice

# A link carries the sample, the selections and a text of at most this many characters once
# percent-encoded: links of ~2,000 characters pass every browser, chat and mail client.
URL_TEXT_MAX = 1800
SELECTION = ("layer", "head", "pos", "win")  # app-wide selections, each a non-negative int, in the URL
# ("win": the end byte of the window the O(L^2) views show of a long text, `window_picker`)


def current_choice() -> CheckpointChoice:
    """The checkpoint chosen in the sidebar (the default sample for an unknown name), not loaded."""
    sel = st.session_state.get("ck_current", DEFAULT_SAMPLE)
    up = st.session_state.get("uploaded_ck")
    if up is not None and sel == up.label:
        return up
    return CheckpointChoice(name=sel if sel in SAMPLE_NAMES else DEFAULT_SAMPLE)


def current_checkpoint() -> Checkpoint:
    """The checkpoint chosen in the sidebar, loaded on the chosen device (cached).
    Raises CheckpointError (e.g. CUDA chosen but unavailable)."""
    return load_checkpoint_choice(current_choice())


def current_text() -> str:
    """The last valid text (what every page analyses)."""
    return st.session_state.get("text", example_text(DEFAULT_SAMPLE))


def text_problem() -> str | None:
    """Why the text in the sidebar box is not analysed (empty, too long, ...), or None."""
    return st.session_state.get("text_error")


def _read_link() -> None:
    """A session's first run takes the sample, the text and the selections from the URL (a
    shared link or a reload); a value that does not fit (unknown sample, invalid text, not a
    non-negative integer) is ignored."""
    ss, qp = st.session_state, st.query_params
    if ss.get("_link_read"):
        return
    ss["_link_read"] = True
    if qp.get("ck") in SAMPLE_NAMES:
        ss["ck_current"] = qp["ck"]
        ss["text_draft"] = ss["text"] = example_text(qp["ck"])  # the sample's own example, unless the link has a text
    if "text" in qp:
        try:
            encode_text(qp["text"])
            ss["text_draft"] = ss["text"] = qp["text"]
        except TextError:
            pass
    for name in SELECTION:
        raw = qp.get(name, "")
        if raw.isdigit():
            ss[f"sel_{name}"] = int(raw)


def link_params() -> dict[str, str]:
    """What the URL should hold now: the sample (not an upload: a link cannot carry a file), the
    text if it fits (URL_TEXT_MAX) and the selections made so far."""
    ss = st.session_state
    out = {}
    if current_choice().data is None:
        out["ck"] = current_choice().name
    text = current_text()
    if len(quote(text, safe="")) <= URL_TEXT_MAX:
        out["text"] = text
    out.update({name: str(ss[f"sel_{name}"]) for name in SELECTION if f"sel_{name}" in ss})
    return out


def write_link() -> None:
    """Put the current sample, text and selections in the URL (`st.query_params`), when they changed."""
    want = link_params()
    if st.query_params.to_dict() != want:
        st.query_params.from_dict(want)


def select(name: str, value: int) -> None:
    """Make `value` the app-wide selection `name` (one of SELECTION), on every page and in the URL."""
    st.session_state[f"sel_{name}"] = int(value)
    st.query_params[name] = str(int(value))


def linked(name: str, key: str, options: Sequence, render: Callable[[str], object], default=None):
    """A page's widget (drawn by `render(key)`) for the app-wide selection `name`: it shows the
    selection if `options` hold it (else `default`, else the first option), and a change the user
    makes becomes the selection on every page and in the URL. Returns the widget's value."""
    ss = st.session_state
    state, options = f"sel_{name}", list(options)
    fallback = default if default in options else options[0]
    if ss.get(state) not in options:
        ss[state] = fallback
    mirror(key, state, lambda v: ss.__setitem__(state, v) if v in options else None)
    value = render(key)
    if st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)
    return value


def window_picker(ck: Checkpoint, text: str, what: str) -> Window:
    """The window of `text` that the O(L^2) view `what` shows (windows.text_window, at most
    windows.window_bytes(ck) bytes). A longer text gets a slider for the window's end (the
    app-wide selection "win", in the URL; default the text's end) and a line saying which bytes
    are shown; a text that fits is shown whole, without either."""
    size = window_bytes(ck)
    total = len(text.encode("utf-8"))
    if total <= size:
        return text_window(text, size)
    ends = range(size, total + 1)
    end = linked("win", "win_end", ends, lambda k: st.slider(
        f"Window of {size:,} bytes: where it ends (byte offset)", size, total, step=1, key=k), default=total)
    w = text_window(text, size, end)
    st.info(f"{what} costs time and memory as the square of the length, so it shows a window of the text: "
            f"{w.label}, read as a text of its own (the model does not see the bytes before it). Position i "
            f"below is byte {w.start:,} + i of the text. Move the slider to move the window; the window is "
            f"{size:,} bytes on {ck.device.type} (set CARACAL_WINDOW_BYTES to change it).")
    return w


def init_state() -> None:
    """A session's defaults, once: the link's sample, text and selections read first (`st.query_params`)."""
    _read_link()
    ss = st.session_state
    ss.setdefault("ck_current", DEFAULT_SAMPLE)
    ss.setdefault("device", "auto")
    ss.setdefault("text_draft", example_text(DEFAULT_SAMPLE))
    ss.setdefault("text", ss["text_draft"])


def mirror(widget_key: str, state_key: str, on_user_change: Callable[[object], None]) -> None:
    """Keep a widget showing a session value that callbacks may also change.

    Callbacks never write widget keys: a run interrupted by the next event (common under load)
    never sends such a value to the browser, which then sends its stale value back and wins.
    Instead the value lives in `state_key`; a widget value that differs from what was last
    rendered is the user's own change (passed to `on_user_change`), except once right after a
    callback changed the value: a browser that never received that render sends back the value
    it showed before, which is stale. Before the widget renders it is set to the current value."""
    ss = st.session_state
    shown = ss.get(f"_{widget_key}_rendered")
    before = f"_{widget_key}_before"  # what the browser showed before a callback's change
    if widget_key in ss and ss[widget_key] != shown:
        stale = before in ss and ss[widget_key] == ss[before]
        if not stale:
            on_user_change(ss[widget_key])
    ss.pop(before, None)
    if widget_key in ss and ss[state_key] != shown and ss[widget_key] != ss[state_key]:
        ss[before] = shown
    ss[widget_key] = ss[state_key]
    ss[f"_{widget_key}_rendered"] = ss[state_key]
