"""Checkpoints and analyses, loaded once and cached where the app can see it: the shipped
samples and their example texts, uploads, the device, `analysis` (st.cache_data keyed by the
checkpoint's sha256 and device) and the certificate; errors in plain words (`guard`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from .. import trace
from ..checkpoint import Checkpoint, CheckpointError, load_checkpoint
from ..export import md_escape, sentence
from ..resources import ResourceError, run_with_fallback

ROOT = Path(__file__).resolve().parents[2]
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

# Bounded caches. Models (cache_resource, shared by all sessions): a sample model is <= 8 MB of
# float32 weights, so 14 entries (7 samples x 2 devices) hold <= 112 MB; uploads are capped at the
# loader's limit (80 MB by default), and 3 entries bound them at <= 240 MB. Analyses
# (cache_data, pickled copies per call): at the 4 KB text limit one entry is between a few KB
# (filters) and ~100 MB (a full trace of a 6-layer model with every internal tensor); 32
# entries with a one-hour TTL keep a working set of a few pages x two checkpoints.
# Forward passes (cache_resource: one object shared by the analyses of a text, read-only, on the
# model's device): one pass of caracal-shakespeare holds ~100 MB at 4,096 bytes, so 6 entries (a
# few texts of a few checkpoints) hold ~0.6 GB at the GPU's interactive length.
MODEL_CACHE_ENTRIES = 14
UPLOAD_CACHE_ENTRIES = 3
ANALYSIS_CACHE_ENTRIES = 32
ANALYSIS_CACHE_TTL_S = 3600
FORWARD_CACHE_ENTRIES = 6


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
        st.error(md_escape(sentence(error_message(e))))
        st.stop()


def _checkpoint_key(ck: Checkpoint) -> tuple[str, str]:
    """What identifies a checkpoint in a cache key: its weights (sha256) and device, never its
    tensors (hash_funcs for st.cache_resource)."""
    return ck.sha256, str(ck.device)


# Keyed by the class's qualified name, so a dev server that reloads checkpoint.py still finds it.
@st.cache_resource(max_entries=FORWARD_CACHE_ENTRIES, ttl=ANALYSIS_CACHE_TTL_S, show_spinner=False,
                   hash_funcs={"caracal_viz.checkpoint.Checkpoint": _checkpoint_key})
def forward_pass(ck: Checkpoint, text: str) -> trace.Forward:
    """The app's one forward pass of ck on `text` (trace.forward_pass), kept for every analysis of
    that text and every session (read-only): the app is the one owner of forward passes.
    Raises TextError for bad text."""
    return trace.forward_pass(ck, text)


_SLOT = "__checkpoint__"  # (_SLOT, sha256, device) stands for a Checkpoint argument in a cache key


def _is_checkpoint(a) -> bool:
    # duck-typed: a dev server that reloads checkpoint.py keeps cached Checkpoints of the old class
    return hasattr(a, "sha256") and hasattr(a, "model") and hasattr(a, "device")


def _on_forward(fn: Callable) -> Callable:
    """fn(ck, fwd, *args) as a function of (ck, text, *args): fwd the app's pass of that text (on
    a CPU copy of ck after a GPU out-of-memory error, its own pass on the CPU)."""
    def run(ck: Checkpoint, text: str, *args, **kwargs):
        return fn(ck, forward_pass(ck, text), *args, **kwargs)
    return run


@st.cache_data(max_entries=ANALYSIS_CACHE_ENTRIES, ttl=ANALYSIS_CACHE_TTL_S, show_spinner=False)
def _cached_analysis(_fn: Callable, fn_key: str, _cks: tuple, args: tuple, kwargs: tuple, on_text: bool = False):
    it = iter(_cks)
    real = [next(it) if isinstance(a, tuple) and a[:1] == (_SLOT,) else a for a in args]
    what = _fn.__name__.replace("_", " ")
    return run_with_fallback(_on_forward(_fn) if on_text else _fn, *real, what=what, release=forward_pass.clear,
                             **dict(kwargs))


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
    return _analysis(fn, ck, args, kwargs, spinner, passthrough, on_text=False)


def text_analysis(fn: Callable, ck: Checkpoint, text: str, *args, spinner: str | None = None,
                  passthrough: tuple[type[BaseException], ...] = (), **kwargs):
    """fn(ck, fwd, *args, **kwargs) for an analysis of a text that takes its forward pass (data
    kernels, gates, energies, ...): fwd is the app's one pass of `text` (`forward_pass`), shared
    by every such analysis; cached, keyed and guarded as `analysis`, with the text in the key."""
    return _analysis(fn, ck, (text, *args), kwargs, spinner, passthrough, on_text=True)


def _analysis(fn: Callable, ck: Checkpoint, args: tuple, kwargs: dict, spinner: str | None,
              passthrough: tuple[type[BaseException], ...], on_text: bool):
    fn_key = f"{fn.__module__}.{fn.__qualname__}"
    all_args = (ck, *args)
    cks = tuple(a for a in all_args if _is_checkpoint(a))
    keyed = tuple((_SLOT, a.sha256, str(a.device)) if _is_checkpoint(a) else a for a in all_args)
    with guard(passthrough):
        done = _with_status(spinner or f"Computing {fn.__name__.replace('_', ' ')}...", _work_details(fn, all_args),
                            lambda: _cached_analysis(fn, fn_key, cks, keyed, tuple(sorted(kwargs.items())), on_text))
    if done.message:
        st.info(done.message)
    return done.value


def certificate(ck: Checkpoint, precision: str = "float32"):
    """The causality certificate of `ck` (causality.causality_report with its default plan), through
    the one analysis cache: the causal trick page, Compare and the Overview show the same numbers."""
    from .. import causality

    return analysis(causality.causality_report, ck, precision=precision,
                    spinner="Certifying causality: perturbing tokens, reading the kernels...")
