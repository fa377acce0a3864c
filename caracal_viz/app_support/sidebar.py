"""The shared sidebar (checkpoint, text, device, model card), the page list for st.navigation,
and what every page calls first (`page_setup`)."""

from __future__ import annotations

import ast
import hashlib

import streamlit as st

from ..checkpoint import Checkpoint, CheckpointError, check_checkpoint_size, max_checkpoint_bytes
from ..export import markdown_literal_text, md_escape, sentence
from ..text import TextError, decode_text_file, encode_text, max_text_bytes
from .caching import (
    DEFAULT_SAMPLE,
    ROOT,
    SAMPLE_NAMES,
    CheckpointChoice,
    device_options,
    error_message,
    example_text,
    guard,
    load_checkpoint_choice,
    resolve_device,
)
from .state import (
    current_checkpoint,
    current_choice,
    current_text,
    init_state,
    link_params,
    mirror,
    text_problem,
    write_link,
)

_SIDEBAR_DONE = "_sidebar_done"  # set by sidebar(), cleared by page_setup(): once per run


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
    old = current_choice().name
    ss["ck_current"] = label
    if ss.get("text_draft") == example_text(old):
        ss["text_draft"] = example_text(current_choice().name)
        ss["text_upload_error"] = None


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
    st.session_state["text_draft"] = example_text(current_choice().name)
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


def _page_files() -> tuple[tuple[str, str], ...]:
    """(file relative to the repository root, title) of every pages/N_name.py, in the order of N.
    The title is the page's docstring up to its first colon (each page's docstring starts
    "Title: what it shows"), else the file name in words: a new page file is in the app at once."""
    found = []
    for path in (ROOT / "pages").glob("[0-9]*_*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        title = doc.split(":", 1)[0].strip() if ":" in doc.split("\n", 1)[0] else ""
        found.append((int(path.name.split("_", 1)[0]), f"pages/{path.name}",
                      title or path.stem.split("_", 1)[1].replace("_", " ").capitalize()))
    return tuple((name, title) for _, name, title in sorted(found))


# Every page file of pages/ (st.navigation needs them listed: it does no discovery). No icons: a
# page's icon is also its tab's favicon, fetched from a CDN, and the app runs offline.
PAGE_FILES = _page_files()


def pages() -> list:
    """The app's pages as st.Page objects (the first is the default), for st.navigation."""
    return [st.Page(path, title=title, default=(i == 0)) for i, (path, title) in enumerate(PAGE_FILES)]


def set_page_config() -> None:
    """Every page's title and wide layout."""
    # No page_icon: a material or emoji favicon is fetched from a CDN (see PAGE_FILES).
    st.set_page_config(page_title="caracal-viz", layout="wide")


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
    init_state()
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
    mirror("ck_select", "ck_current", lambda label: _choose_checkpoint(label) if label in options else None)
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

    mirror("text_box", "text_draft", _set_draft)
    sb.text_area(f"Text (UTF-8, at most {max_text_bytes()} bytes)", key="text_box", height=160)
    _validate_text_box()
    if text_problem():
        sb.error(md_escape(f"{sentence(text_problem())} The pages show the last valid text."))
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
    write_link()
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


def page_header(title: str, intro: str) -> None:
    """What every page shows first: the app's entry (`ensure_entry`), its title and a short
    explanation (markdown). For a page that needs no checkpoint at its top (the causal trick's toy);
    the others call `page_setup`."""
    ensure_entry()
    st.title(title)
    st.markdown(intro)


def page_setup(title: str, intro: str) -> tuple[Checkpoint, str]:
    """`page_header`, then the checkpoint and text to analyse. Shows a note when the sidebar text
    is invalid, and one grey line when the checkpoint's weights hold NaN/Inf; stops the page if
    the checkpoint can't load."""
    page_header(title, intro)
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
                    f":gray[{markdown_literal_text(sentence(ck.nonfinite_text))}]")


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
    mirror(sel_key, cur_key, lambda v: ss.__setitem__(cur_key, v) if v in options else None)
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
