"""Streamlit glue shared by app.py and every page: the sidebar, the chosen checkpoint and text,
cached loaders and analyses, plain-words errors, figures and downloads.

This is the only module (with app.py and pages/) that imports Streamlit. Pages use it so:

    import caracal_viz.app_support as ui
    from caracal_viz import filters, figures

    ck, text = ui.page_setup("Spectral filters", "What the picture means ...")
    lf = ui.analysis(filters.learned_filters, ck)              # cached on (sha256, device)
    dk = ui.analysis(filters.data_kernels, ck, text)           # cached on (sha256, device, text)
    ui.show_figure(figures.filter_heatmap(...), key="heat", file_name="filters_layer0")
    ui.download_npz("Filters (NPZ)", lambda: ui.npz_bytes(mag_db=...), "filters.npz", key="dl_npz")

Public API (stable; other engineers' pages import it):
- `SAMPLE_NAMES`, `DEFAULT_SAMPLE`, `EXAMPLE_TEXTS` (sample name -> example text), `example_text(name)`.
- `PAGE_FILES`, `pages()`: the nine page files, listed explicitly, as st.Page objects for
  `st.navigation`; `set_page_config()`: title, icon, wide layout.
- `sidebar()`: render the shared sidebar (checkpoint, text, device, model card). app.py calls it
  once per run, before the page runs; pages never call it (page_setup does, if app.py did not run).
- `current_checkpoint() -> Checkpoint`: the chosen checkpoint, loaded (cached) on the chosen device.
- `current_text() -> str`: the last valid text (the text box may hold an invalid one: see
  `text_problem()`).
- `text_problem() -> str | None`: why the text in the sidebar is not analysed, or None.
- `ensure_entry()`: a page's first call when it does not use page_setup: draws the sidebar (and
  the navigation) if the server ran the page without app.py (a deep link as its first request).
- `linked(name, key, options, render, default=None)`: a page's widget for one of the app-wide
  selections `SELECTION` ("layer", "head", "pos", "win"): every page that shows that setting shows the
  same value, and the value travels in the URL (`st.query_params`), so a view is a link.
  `render(key)` draws the widget with that key. `select(name, value)` sets one (a click handler).
- `window_picker(ck, text, what) -> windows.Window`: the window of a long text an O(L^2) view
  shows, with its slider ("win") and the line naming its bytes.
- `page_setup(title, intro) -> (Checkpoint, str)`: ensure_entry(), title, a short explanation,
  a note if the sidebar text is invalid, then the checkpoint and the text to analyse; stops the
  page with `st.error` if the checkpoint cannot be loaded; `nonfinite_note(ck)`: the one grey line
  naming NaN/Inf weights (page_setup shows it; a page without page_setup calls it).
- `analysis(fn, ck, *args, spinner=None, passthrough=(), **kwargs)`: `fn(ck, *args, **kwargs)`
  through `st.cache_data`, keyed by fn's qualified name, the checkpoint's sha256 and device, args
  and kwargs (hashable by Streamlit: str, numbers, tuples, None; further Checkpoints in args are
  keyed by sha256 + device too). Errors become an `st.error` in plain words and stop the page
  (see `guard`), except the `passthrough` exception types, which are raised to the page.
- `certificate(ck, precision="float32")`: the causality certificate (causality.causality_report),
  cached: every page that shows a verdict asks for it here, so they show the same numbers.
- `show_certificate(report)`: a causality.CausalityReport's verdict in the certificate's colours
  (green causal, red leaks, grey cannot certify) and its summary line.
- `load_checkpoint_choice(choice) -> Checkpoint`: load any `CheckpointChoice` (cached); used by
  the Compare page for its second checkpoint.
- `checkpoint_picker(label, key, default=None) -> CheckpointChoice`: a sample selectbox + upload
  box, for pages that need another checkpoint; keeps the last good upload on a bad one.
- `guard(passthrough=())`: context manager; CheckpointError, TextError, out-of-memory and other
  exceptions become one `st.error` line and `st.stop()`, never a traceback.
- `error_message(exc) -> str`: the plain-words line `guard` shows.
- `stream_text(pieces) -> str`: st.write_stream of text pieces (e.g. predict.stream_generation),
  rendered literally (markdown escaped); returns the raw text. `markdown_literal_text(text)`:
  the same escaping for a finished text; `md_escape(text)`: the same for any user-derived
  string (file and class names, excerpts, error messages) shown through a Markdown element.
- `show_figure(fig, key, file_name, fmt="svg", max_height=None, pick=None)`: `st.plotly_chart` at
  the page's width, Streamlit theme, toolbar download as SVG (`toImageButtonOptions`) named
  `file_name`; a figure taller than `max_height` scrolls in a box of that height. `pick`, a
  selection name or a tuple of them: a click on a point whose customdata holds those values
  selects them (`select`), on every page.
- `download_csv(label, make, file_name, key)`, `download_npz(...)`, `download_bytes(label, make,
  file_name, mime, key)`: `st.download_button`s whose data is built lazily by `make()` (a
  zero-argument callable returning bytes/str) when the user clicks.
- `csv_bytes(columns: dict[str, 1-D array]) -> bytes`, `matrix_csv_bytes(matrix, row_labels,
  col_labels) -> bytes`, `npz_bytes(**arrays) -> bytes`: serialisers for the download helpers.
- `model_card(ck) -> dict[str, str]`: the facts shown in the sidebar's model card.
- `stem(ck) -> str`: the checkpoint's file name without extension, for download names.

Session state keys owned here (pages read them only through the functions above):
"ck_current" (the chosen checkpoint's label) shown by the widget "ck_select", "ck_upload",
"uploaded_ck", "ck_upload_error", "device", "text_draft" (the sidebar's text, maybe invalid) shown
by the widget "text_box", "text" (the last valid text), "text_error", "text_upload",
"text_upload_error", "_sidebar_done", "_link_read", "sel_layer", "sel_head", "sel_pos", "sel_win" (the
app-wide selections, see `linked`), "_ck_select_rendered", "_text_box_rendered", "_ck_upload_seen",
"_ck_select_before", "_text_box_before";
checkpoint_picker(key=K) owns "K_current", "K_select", "K_upload", "K_uploaded", "K_error".
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import quote

import numpy as np
import streamlit as st
import torch
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from .checkpoint import Checkpoint, CheckpointError, check_checkpoint_size, load_checkpoint, max_checkpoint_bytes
from .resources import ResourceError, run_with_fallback
from .text import TextError, decode_text_file, encode_text, max_text_bytes
from .windows import Window, text_window, window_bytes

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = ROOT / "sample_checkpoints"
SAMPLE_NAMES = ("caracal-shakespeare", "caracal-periodic", "caracal-circular-leaky", "fftnet-shakespeare",
                # issue 14's comparison: the hybrid and the Transformer (same budget), a context-2,048 Caracal
                "caracal-hybrid-shakespeare", "transformer-shakespeare", "caracal-long")
DEFAULT_SAMPLE = "caracal-shakespeare"
_SHAKESPEARE = ("GRUMIO:\nFirst, know, my horse is tired; my master and\nmistress fallen out.\n\n"
                "CURTIS:\nHow?\n\nGRUMIO:\nOut of their saddles into the dirt; and thereby\nhangs a tale.\n")
EXAMPLE_TEXTS = {
    "caracal-shakespeare": _SHAKESPEARE,
    "caracal-circular-leaky": _SHAKESPEARE,
    "fftnet-shakespeare": _SHAKESPEARE,
    "caracal-hybrid-shakespeare": _SHAKESPEARE,
    "transformer-shakespeare": _SHAKESPEARE,
    "caracal-long": _SHAKESPEARE,
    # the periodic model was trained on lowercase patterns repeating with period 3, 8 or 20
    "caracal-periodic": "abc" * 12 + "qwertyui" * 6 + "thequickbrownfoxjump" * 3,
}
UPLOAD_PREFIX = "Uploaded: "
# A link carries the sample, the selections and a text of at most this many characters once
# percent-encoded: links of ~2,000 characters pass every browser, chat and mail client.
URL_TEXT_MAX = 1800
SELECTION = ("layer", "head", "pos", "win")  # app-wide selections, each a non-negative int, in the URL
# ("win": the end byte of the window the O(L^2) views show of a long text, `window_picker`)
_SIDEBAR_DONE = "_sidebar_done"  # set by sidebar(), cleared by page_setup(): once per run

# Bounded caches. Models (cache_resource, shared by all sessions): a sample model is <= 8 MB of
# float32 weights, so 14 entries (7 samples x 2 devices) hold <= 112 MB; uploads are capped at the
# loader's limit (80 MB by default), and 3 entries bound them at <= 240 MB. Analyses
# (cache_data, pickled copies per call): at the 4 KB text limit one entry is between a few KB
# (filters) and ~100 MB (a full trace of a 6-layer model with every internal tensor); 32
# entries with a one-hour TTL keep a working set of a few pages x two checkpoints.
MODEL_CACHE_ENTRIES = 14
UPLOAD_CACHE_ENTRIES = 3
ANALYSIS_CACHE_ENTRIES = 32
ANALYSIS_CACHE_TTL_S = 3600


# ---- checkpoint choice and loading --------------------------------------------------------
@dataclass(frozen=True)
class CheckpointChoice:
    """Which checkpoint: a shipped sample (`data` None) or an upload (`data` its bytes)."""

    name: str
    sha256: str = ""
    data: bytes | None = None

    @property
    def label(self) -> str:
        """The name shown in the checkpoint picker (uploads marked as such)."""
        return self.name if self.data is None else f"{UPLOAD_PREFIX}{self.name}"


def sample_path(name: str) -> Path:
    """The shipped sample checkpoint file of that name (sample_checkpoints/NAME.safetensors)."""
    return SAMPLES_DIR / f"{name}.safetensors"


def example_text(name: str) -> str:
    """An example text that suits the named sample (Shakespeare for unknown checkpoints)."""
    return EXAMPLE_TEXTS.get(name, _SHAKESPEARE)


@st.cache_resource(max_entries=MODEL_CACHE_ENTRIES, show_spinner=False)
def _load_sample(name: str, device: str) -> Checkpoint:
    return load_checkpoint(sample_path(name), device=device)


@st.cache_resource(max_entries=UPLOAD_CACHE_ENTRIES, show_spinner=False)
def _load_upload(_data: bytes, sha256: str, name: str, device: str) -> Checkpoint:
    return load_checkpoint(_data, device=device, name=name)


def device_options() -> list[str]:
    """The device picker's choices: auto, cpu, and cuda when a GPU is available."""
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def resolve_device(choice: str | None) -> str:
    """The torch device name for a picker choice: "auto" (or None) is cuda when available, else cpu."""
    if choice in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def current_device() -> str:
    """The device this session's sidebar chose, resolved ("cpu" or "cuda")."""
    return resolve_device(st.session_state.get("device", "auto"))


def load_checkpoint_choice(choice: CheckpointChoice, device: str | None = None) -> Checkpoint:
    """Load a sample or an uploaded checkpoint on `device` (default: the sidebar's), cached.
    Raises CheckpointError."""
    device = device or current_device()
    with st.spinner(f"Loading {choice.name} on {device}..."):
        if choice.data is None:
            if choice.name not in SAMPLE_NAMES:
                raise CheckpointError(f"unknown sample checkpoint {choice.name!r}")
            return _load_sample(choice.name, device)
        return _load_upload(choice.data, choice.sha256, choice.name, device)


def _try_upload(file, kept: str) -> tuple[CheckpointChoice | None, str | None]:
    """Validate an uploaded checkpoint by loading it; (choice, None) or (None, error message)."""
    try:
        size = getattr(file, "size", None)
        if isinstance(size, int):  # before the bytes are copied out of the upload
            check_checkpoint_size(size, file.name)
        data = file.getvalue()
        choice = CheckpointChoice(name=file.name, sha256=hashlib.sha256(data).hexdigest(), data=data)
        load_checkpoint_choice(choice)
    except CheckpointError as e:
        return None, f"Could not load the upload, kept {kept}: {e}"
    except Exception as e:  # noqa: BLE001 -- a hostile file must never crash the app
        return None, f"Could not load the upload, kept {kept}: {error_message(e)}"
    return choice, None


def _on_checkpoint_upload() -> None:
    file = st.session_state.get("ck_upload")
    if file is None:  # the user removed the file: its error goes with it
        st.session_state["ck_upload_error"] = None
        return
    choice, err = _try_upload(file, kept=st.session_state.get("ck_current", DEFAULT_SAMPLE))
    st.session_state["ck_upload_error"] = err
    if choice is not None:
        st.session_state["uploaded_ck"] = choice
        _choose_checkpoint(choice.label)


def _choose_checkpoint(label: str) -> None:
    """Make `label` the current checkpoint; an example text left as it was follows it to the new
    checkpoint's example."""
    ss = st.session_state
    old = _current_choice().name
    ss["ck_current"] = label
    if ss.get("text_draft") == example_text(old):
        ss["text_draft"] = example_text(_current_choice().name)
        ss["text_upload_error"] = None


def _mirror(widget_key: str, state_key: str, on_user_change: Callable[[object], None]) -> None:
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


def _current_choice() -> CheckpointChoice:
    sel = st.session_state.get("ck_current", DEFAULT_SAMPLE)
    up = st.session_state.get("uploaded_ck")
    if up is not None and sel == up.label:
        return up
    return CheckpointChoice(name=sel if sel in SAMPLE_NAMES else DEFAULT_SAMPLE)


def current_checkpoint() -> Checkpoint:
    """The checkpoint chosen in the sidebar, loaded on the chosen device (cached).
    Raises CheckpointError (e.g. CUDA chosen but unavailable)."""
    return load_checkpoint_choice(_current_choice())


# ---- text -----------------------------------------------------------------------------------
def _on_text_upload() -> None:
    file = st.session_state.get("text_upload")
    if file is None:
        st.session_state["text_upload_error"] = None
        return
    try:
        if file.size > 4 * max_text_bytes() + 4:  # never decode a huge file just to reject it
            raise TextError(f"{file.name} is {file.size} bytes, over the limit of {max_text_bytes()} bytes: "
                            "upload a shorter text")
        text = decode_text_file(file.getvalue(), file.name)
        encode_text(text)
    except TextError as e:
        st.session_state["text_upload_error"] = f"Kept the previous text: {e}"
        return
    st.session_state["text_upload_error"] = None
    st.session_state["text_draft"] = text


def _on_example_text() -> None:
    st.session_state["text_draft"] = example_text(_current_choice().name)
    st.session_state["text_upload_error"] = None


def _set_draft(text) -> None:
    st.session_state["text_draft"] = text


def _validate_text_box() -> None:
    raw = st.session_state.get("text_draft", "")
    try:
        encode_text(raw)
    except TextError as e:
        st.session_state["text_error"] = str(e)
        return
    st.session_state["text_error"] = None
    st.session_state["text"] = raw


def current_text() -> str:
    """The last valid text (what every page analyses)."""
    return st.session_state.get("text", example_text(DEFAULT_SAMPLE))


def text_problem() -> str | None:
    """Why the text in the sidebar box is not analysed (empty, too long, ...), or None."""
    return st.session_state.get("text_error")


# ---- navigation -------------------------------------------------------------------------------
# Every page file, listed explicitly: st.navigation ignores pages/ discovery. (file, title)
# No icons: a page's icon is also its tab's favicon, fetched from a CDN, and the app runs offline.
PAGE_FILES = (
    ("pages/1_overview.py", "Overview"),
    ("pages/2_spectral_filters.py", "Spectral filters"),
    ("pages/3_modrelu_gates.py", "modReLU gates"),
    ("pages/4_causal_trick.py", "The causal trick"),
    ("pages/5_parseval_energy.py", "Parseval energy"),
    ("pages/6_token_influence.py", "Token influence"),
    ("pages/7_compare.py", "Compare"),
    ("pages/8_interventions.py", "Interventions"),
    ("pages/9_reach.py", "Reach"),
)


def pages() -> list:
    """The app's pages as st.Page objects (the first is the default), for st.navigation."""
    return [st.Page(path, title=title, default=(i == 0)) for i, (path, title) in enumerate(PAGE_FILES)]


def set_page_config() -> None:
    """Every page's title and wide layout."""
    # No page_icon: a material or emoji favicon is fetched from a CDN (see PAGE_FILES).
    st.set_page_config(page_title="caracal-viz", layout="wide")


# ---- sidebar ----------------------------------------------------------------------------------
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
    if _current_choice().data is None:
        out["ck"] = _current_choice().name
    text = current_text()
    if len(quote(text, safe="")) <= URL_TEXT_MAX:
        out["text"] = text
    out.update({name: str(ss[f"sel_{name}"]) for name in SELECTION if f"sel_{name}" in ss})
    return out


def _write_link() -> None:
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
    _mirror(key, state, lambda v: ss.__setitem__(state, v) if v in options else None)
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


def _init_state() -> None:
    _read_link()
    ss = st.session_state
    ss.setdefault("ck_current", DEFAULT_SAMPLE)
    ss.setdefault("device", "auto")
    ss.setdefault("text_draft", example_text(DEFAULT_SAMPLE))
    ss.setdefault("text", ss["text_draft"])


def model_card(ck: Checkpoint) -> dict[str, str]:
    """The model card's facts, as display strings."""
    c, m = ck.config, ck.meta
    mixer = {"mhf": "Caracal MHF", "fftnet": "FFTNet", "attention": "attention"}.get(c.mixer, c.mixer)
    if c.mixer == "mhf":
        mixer += f" ({c.causal_mode})"
        if c.swa_every:
            mixer += f" + SWA every {c.swa_every}"
    bpb = m.get("val_bits_per_byte")
    return {
        "mixer": mixer,
        "layers": str(c.n_layers),
        "heads": f"{c.n_heads} x {c.head_dim} (width {c.d_model})",
        "parameters": f"{ck.num_params / 1e6:.2f} M",
        "training context": f"{m.get('context', c.context)} bytes",
        "val bits/byte": f"{bpb:.3f}" if isinstance(bpb, (int, float)) else "not recorded",
        "causal": "yes, by construction" if c.is_causal else "NO: it reads the future",
        "device": str(ck.device),
        "sha256": ck.sha256[:16],
    }


def sidebar() -> None:
    """The sidebar shared by every page: checkpoint, device, text, model card.
    app.py calls it on every run, before the page runs."""
    st.session_state[_SIDEBAR_DONE] = True
    _init_state()
    ss = st.session_state
    sb = st.sidebar
    # The upload is handled here, not in an on_change callback: a rerun requested while the model
    # loads interrupts a callback, and Streamlit never calls it again for that file.
    pending = ss.get("ck_upload")
    pending_id = None if pending is None else pending.file_id
    if pending_id != ss.get("_ck_upload_seen"):
        _on_checkpoint_upload()
        ss["_ck_upload_seen"] = pending_id
    up = ss.get("uploaded_ck")
    options = list(SAMPLE_NAMES) + ([up.label] if up is not None else [])
    _mirror("ck_select", "ck_current", lambda label: _choose_checkpoint(label) if label in options else None)
    if ss["ck_current"] not in options:
        ss["ck_current"] = ss["ck_select"] = ss["_ck_select_rendered"] = DEFAULT_SAMPLE
    sb.selectbox("Checkpoint", options, key="ck_select", help="A shipped sample, or the last checkpoint you uploaded")
    sb.file_uploader("Upload a checkpoint (.safetensors or .pt)", type=["safetensors", "pt"],
                     key="ck_upload",
                     help=f"At most {max_checkpoint_bytes() / 2**20:.0f} MB. Pickled code is never run.")
    if ss.get("ck_upload_error"):
        sb.error(md_escape(ss["ck_upload_error"]))
    sb.selectbox("Device", device_options(), key="device",
                 format_func=lambda d: f"auto ({resolve_device('auto')})" if d == "auto" else d)

    _mirror("text_box", "text_draft", _set_draft)
    sb.text_area(f"Text (UTF-8, at most {max_text_bytes()} bytes)", key="text_box", height=160)
    _validate_text_box()
    if text_problem():
        sb.error(md_escape(f"{_sentence(text_problem())} The pages show the last valid text."))
    c1, c2 = sb.columns([1, 1])
    c1.caption(f"{len(current_text().encode('utf-8'))} bytes analysed")
    c2.button("Example text", on_click=_on_example_text, help="Load an example that suits the checkpoint")
    # Streamlit states an uploader's limit in whole MB; the text limit is in bytes, so the label
    # says it and the MB line is hidden (the server still refuses anything over 1 MB unread)
    sb.html("<style>.st-key-text_upload [data-testid='stFileUploaderDropzoneInstructions'] small "
            "{display: none}</style>")
    sb.file_uploader(f"Or upload a .txt file (at most {max_text_bytes():,} bytes)", type=["txt"], key="text_upload",
                     on_change=_on_text_upload, max_upload_size=1)
    if ss.get("text_upload_error"):
        sb.error(md_escape(ss["text_upload_error"]))
    _write_link()
    link = link_params()
    left_out = ([] if "ck" in link else ["an uploaded checkpoint"]) + ([] if "text" in link else ["a text this long"])
    if left_out:
        sb.caption(f"The address bar links to this view, except {' and '.join(left_out)}: a link cannot carry it.")

    try:
        ck = current_checkpoint()
    except CheckpointError as e:
        sb.error(md_escape(str(e)))
        return
    with sb.expander("Model card", expanded=True):
        st.markdown("\n".join(f"- **{k}**: {md_escape(v)}" for k, v in model_card(ck).items()))
        desc = ck.meta.get("description")
        if desc:
            st.caption(md_escape(str(desc)))


# ---- pages ------------------------------------------------------------------------------------
def ensure_entry() -> None:
    """Do app.py's part (page config, navigation, sidebar) if app.py did not run before this page.

    A server whose first request is a deep link (/spectral_filters) runs in Streamlit's legacy
    pages/ mode until st.navigation has been called once: the page file runs without app.py.
    The st.navigation call here switches the server to running app.py from the next run on (and
    shows the app's own page list now). Every page calls this first (page_setup does)."""
    if not st.session_state.pop(_SIDEBAR_DONE, False):
        set_page_config()
        st.navigation(pages())
        sidebar()
        st.session_state.pop(_SIDEBAR_DONE, None)


def page_setup(title: str, intro: str) -> tuple[Checkpoint, str]:
    """Title, a short explanation (markdown), and the checkpoint and text to analyse.
    Shows a note when the sidebar text is invalid, and one grey line when the checkpoint's weights
    hold NaN/Inf; stops the page if the checkpoint can't load."""
    ensure_entry()
    st.title(title)
    st.markdown(intro)
    if text_problem():
        st.warning("The text in the sidebar is not analysed (see the message there); "
                   "this page shows the last valid text.")
    with guard():
        ck = current_checkpoint()
    nonfinite_note(ck)
    return ck, current_text()


def nonfinite_note(ck: Checkpoint) -> None:
    """One grey line (the certificate's colour for NaN/Inf: a finding about the checkpoint, not an
    app error) naming the tensors whose weights hold NaN/Inf; nothing for a healthy checkpoint."""
    if ck.nonfinite:
        st.markdown(f":gray-background[:material/help: **NaN/Inf weights**] "
                    f":gray[{markdown_literal_text(_sentence(ck.nonfinite_text))}]")


def _sentence(msg: str) -> str:
    msg = msg.strip()
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith((".", "!", "?")) else ".")


def error_message(exc: BaseException) -> str:
    """One line in plain words for an exception (no traceback)."""
    # CheckpointError, TextError, CompareError and the library's other ValueErrors, and
    # ResourceError, carry one line meant for the user
    if isinstance(exc, (ValueError, ResourceError)) and str(exc).strip():
        return str(exc).strip().splitlines()[0]
    if isinstance(exc, torch.OutOfMemoryError) or isinstance(exc, MemoryError) or \
            "out of memory" in str(exc).lower():
        return ("out of memory: shorten the text, choose the CPU in the sidebar (more memory than the GPU), "
                "or lower CARACAL_MAX_TEXT_BYTES")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}{': ' + first if first else ''}"


@contextlib.contextmanager
def guard(passthrough: tuple[type[BaseException], ...] = ()):
    """Turn any exception inside the block into one st.error line and stop the page.
    Exceptions of the `passthrough` types propagate, for the page to handle itself."""
    try:
        yield
    except ScriptControlException:  # st.stop / st.rerun / st.switch_page pass through
        raise
    except Exception as e:  # noqa: BLE001 -- the user sees one line, never a traceback
        if passthrough and isinstance(e, passthrough):
            raise
        if torch.cuda.is_available() and isinstance(e, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
        st.error(md_escape(_sentence(error_message(e))))
        st.stop()


_SLOT = "__checkpoint__"  # (_SLOT, sha256, device) stands for a Checkpoint argument in a cache key


def _is_checkpoint(a) -> bool:
    # duck-typed: a dev server that reloads checkpoint.py keeps cached Checkpoints of the old class
    return hasattr(a, "sha256") and hasattr(a, "model") and hasattr(a, "device")


@st.cache_data(max_entries=ANALYSIS_CACHE_ENTRIES, ttl=ANALYSIS_CACHE_TTL_S, show_spinner=False)
def _cached_analysis(_fn: Callable, fn_key: str, _cks: tuple, args: tuple, kwargs: tuple):
    it = iter(_cks)
    real = [next(it) if isinstance(a, tuple) and a[:1] == (_SLOT,) else a for a in args]
    return run_with_fallback(_fn, *real, **dict(kwargs))


def _work_details(fn: Callable, args: tuple) -> str:
    """What an analysis works on, in words: the function, the checkpoints (name, device) and the
    length of any text."""
    parts = [f"`{fn.__name__}`"]
    parts += [f"{Path(a.name).name} on {a.device}" for a in args if _is_checkpoint(a)]
    parts += [f"a text of {len(a.encode('utf-8')):,} bytes" for a in args if isinstance(a, str)]
    return ", ".join(parts) + ". The result is cached: the next visit is immediate."


def _with_status(label: str, details: str, work: Callable):
    """Run `work()` inside an st.status box that says what is being computed (not a bare
    spinner), removed when the work is done (a cached result flashes it for one render)."""
    slot = st.empty()
    with slot.status(label, expanded=True):
        st.caption(details)
        out = work()
    slot.empty()
    return out


def analysis(fn: Callable, ck: Checkpoint, *args, spinner: str | None = None,
             passthrough: tuple[type[BaseException], ...] = (), **kwargs):
    """fn(ck, *args, **kwargs) through st.cache_data, keyed by fn's qualified name, each
    checkpoint's sha256 and device (checkpoints may also appear in `args`, e.g. a comparison),
    and the other arguments, which must be hashable by Streamlit (str, numbers, tuples, None).
    A CUDA out-of-memory error reruns it on a CPU copy (resources.run_with_fallback) with an
    st.info saying so. Errors are shown with st.error and stop the page, except the
    `passthrough` types, which are raised. The result is a copy (cache_data pickles it)."""
    fn_key = f"{fn.__module__}.{fn.__qualname__}"
    all_args = (ck, *args)
    cks = tuple(a for a in all_args if _is_checkpoint(a))
    keyed = tuple((_SLOT, a.sha256, str(a.device)) if _is_checkpoint(a) else a for a in all_args)
    with guard(passthrough):
        done = _with_status(spinner or f"Computing {fn.__name__.replace('_', ' ')}...", _work_details(fn, all_args),
                            lambda: _cached_analysis(fn, fn_key, cks, keyed, tuple(sorted(kwargs.items()))))
    if done.message:
        st.info(done.message)
    return done.value


def certificate(ck: Checkpoint, precision: str = "float32"):
    """The causality certificate of `ck` (causality.causality_report with its default plan), through
    the one analysis cache: the causal trick page, Compare and the Overview show the same numbers."""
    from . import causality

    return analysis(causality.causality_report, ck, precision=precision,
                    spinner="Certifying causality: perturbing tokens, reading the kernels...")


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


def checkpoint_picker(label: str, key: str, default: str | None = None) -> CheckpointChoice:
    """A second checkpoint chooser (samples + an upload) on the page, for comparisons.
    Session keys are prefixed with `key`. Returns the chosen sample or the last good upload.
    A bad upload shows st.error and keeps the previous choice."""
    ss = st.session_state
    up_key, store_key, err_key = f"{key}_upload", f"{key}_uploaded", f"{key}_error"
    sel_key, cur_key = f"{key}_select", f"{key}_current"

    def on_upload() -> None:
        file = ss.get(up_key)
        if file is None:
            ss[err_key] = None
            return
        choice, err = _try_upload(file, kept=ss.get(cur_key, "the previous checkpoint"))
        ss[err_key] = err
        if choice is not None:
            ss[store_key] = choice
            ss[cur_key] = choice.label

    up = ss.get(store_key)
    options = list(SAMPLE_NAMES) + ([up.label] if up is not None else [])
    ss.setdefault(cur_key, default if default in options else options[0])
    _mirror(sel_key, cur_key, lambda v: ss.__setitem__(cur_key, v) if v in options else None)
    if ss[cur_key] not in options:
        ss[cur_key] = ss[sel_key] = ss[f"_{sel_key}_rendered"] = options[0]
    st.selectbox(label, options, key=sel_key)
    st.file_uploader("Or upload it (.safetensors or .pt)", type=["safetensors", "pt"], key=up_key,
                     on_change=on_upload)
    if ss.get(err_key):
        st.error(md_escape(ss[err_key]))
    if up is not None and ss[cur_key] == up.label:
        return up
    return CheckpointChoice(name=ss[cur_key])


# ---- literal text in markdown ------------------------------------------------------------------
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


# ---- figures and downloads ----------------------------------------------------------------------
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


def npz_bytes(**arrays) -> bytes:
    """Named numpy arrays -> compressed .npz bytes."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


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
