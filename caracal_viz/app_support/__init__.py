"""Streamlit glue shared by app.py and every page: the sidebar, the chosen checkpoint and text,
cached loaders and analyses, plain-words errors, figures and downloads.

This package (with app.py and pages/) is the only code that imports Streamlit; this module is its
public entry. By job: `caching` (samples, uploads, devices, the analysis cache, plain-words
errors), `state` (the session's checkpoint, text and selections, the link), `sidebar` (the
sidebar, the page list, `page_setup`), `widgets` (figures, downloads, the verdict, streamed
text). The CSV/NPZ/Markdown serialisers are Streamlit-free, in `caracal_viz.export`, shared with
the CLI. Pages use it so:

    import caracal_viz.app_support as ui
    from caracal_viz import export, filters, figures

    ck, text = ui.page_setup("Spectral filters", "What the picture means ...")
    lf = ui.analysis(filters.learned_filters, ck)              # cached on (sha256, device)
    dk = ui.text_analysis(filters.data_kernels, ck, text)      # on the app's pass; (sha256, device, text)
    ui.show_figure(figures.filter_heatmap(...), key="heat", file_name="filters_layer0")
    ui.download_npz("Filters (NPZ)", lambda: export.npz_bytes(mag_db=...), "filters.npz", key="dl_npz")

Public API (stable; other engineers' pages import it):
- `SAMPLE_NAMES`, `DEFAULT_SAMPLE`, `EXAMPLE_TEXTS` (sample name -> example text), `example_text(name)`.
- `PAGE_FILES`, `pages()`: every pages/N_name.py (found in the folder), as st.Page objects for
  `st.navigation`; `set_page_config()`: title, icon, wide layout.
- `sidebar()`: render the shared sidebar (checkpoint, text, device, model card). app.py calls it
  once per run, before the page runs; pages never call it (page_setup does, if app.py did not run).
- `current_checkpoint() -> Checkpoint`: the chosen checkpoint, loaded (cached) on the chosen device.
- `current_text() -> str`: the last valid text (the text box may hold an invalid one: see
  `text_problem()`).
- `text_problem() -> str | None`: why the text in the sidebar is not analysed, or None.
- `ensure_entry()`: draws the sidebar (and the navigation) if the server ran the page without
  app.py (a deep link as its first request); `page_header` and `page_setup` call it, pages never do.
- `page_header(title, intro)`: ensure_entry(), the title and a short explanation, for a page whose
  top needs no checkpoint (the causal trick); the others use `page_setup`.
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
- `text_analysis(fn, ck, text, *args, ...)`: the same for an analysis of a text that takes its
  forward pass, `fn(ck, fwd, *args)` (filters.data_kernels, gates.gate_report, ...): fwd is
  `forward_pass(ck, text)`, the app's one pass of that text (st.cache_resource, checkpoints
  hashed by sha256 and device): the app owns the forward-pass cache, the library keeps none.
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
  rendered literally (markdown escaped); returns the raw text. `export.markdown_literal_text(text)`:
  the same escaping for a finished text; `export.md_escape(text)`: the same for any user-derived
  string (file and class names, excerpts, error messages) shown through a Markdown element.
- `show_figure(fig, key, file_name, fmt="svg", max_height=None, pick=None)`: `st.plotly_chart` at
  the page's width, Streamlit theme, toolbar download as SVG (`toImageButtonOptions`) named
  `file_name`; a figure taller than `max_height` scrolls in a box of that height. `pick`, a
  selection name or a tuple of them: a click on a point whose customdata holds those values
  selects them (`select`), on every page.
- `download_csv(label, make, file_name, key)`, `download_npz(...)`, `download_bytes(label, make,
  file_name, mime, key)`: `st.download_button`s whose data is built lazily by `make()` (a
  zero-argument callable returning bytes/str) when the user clicks.
- `export.csv_bytes(columns: dict[str, 1-D array]) -> bytes`, `export.matrix_csv_bytes(matrix,
  row_labels, col_labels) -> bytes`, `export.rows_csv_bytes(rows)`, `export.npz_bytes(**arrays)
  -> bytes`: the serialisers for the download helpers (and the CLI's files).
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

from .caching import (
    DEFAULT_SAMPLE, EXAMPLE_TEXTS, SAMPLE_NAMES, CheckpointChoice, analysis, certificate, current_device,
    error_message, example_text, forward_pass, guard, load_checkpoint_choice, text_analysis,
)
from .sidebar import (
    PAGE_FILES, checkpoint_picker, ensure_entry, model_card, nonfinite_note, page_header, page_setup, pages,
    set_page_config, sidebar,
)
from .state import SELECTION, URL_TEXT_MAX, current_checkpoint, current_text, linked, select, text_problem, window_picker
from .widgets import (
    VERDICT_STYLE, download_bytes, download_csv, download_npz, plotly_config, show_certificate, show_figure, stem,
    stream_text,
)

__all__ = [
    "DEFAULT_SAMPLE", "EXAMPLE_TEXTS", "SAMPLE_NAMES", "CheckpointChoice", "analysis", "certificate",
    "current_device", "error_message", "example_text", "forward_pass", "guard", "load_checkpoint_choice",
    "text_analysis", "PAGE_FILES",
    "checkpoint_picker", "ensure_entry", "model_card", "nonfinite_note", "page_header", "page_setup", "pages", "set_page_config",
    "sidebar", "SELECTION", "URL_TEXT_MAX", "current_checkpoint", "current_text", "linked", "select",
    "text_problem", "window_picker", "VERDICT_STYLE", "download_bytes", "download_csv", "download_npz", "plotly_config",
    "show_certificate", "show_figure", "stem", "stream_text"
]
