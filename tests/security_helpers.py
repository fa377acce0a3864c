"""Builders of hostile and damaged checkpoints, and a peak-memory probe, for the security,
fuzz, text, load and state tests. Every file is made by real tools (torch.save, safetensors,
pickle, zipfile); nothing here patches the code under test."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import shlex
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from caracal_viz.checkpoint import save_checkpoint, weights_of
from models import ByteLM, ModelConfig

SMALL = ModelConfig(d_model=32, n_layers=2, n_heads=4, context=64)


def small_model(seed: int = 0, config: ModelConfig = SMALL) -> ByteLM:
    """A small real model with seeded weights (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ByteLM(config).eval()


def checkpoint_bytes(model: ByteLM, suffix: str, tmp_path: Path, training: dict | None = None) -> bytes:
    """The bytes of `model` saved by caracal_viz.save_checkpoint as .safetensors or .pt."""
    path = save_checkpoint(tmp_path / f"model{suffix}", model, training or {"steps": 1})
    return path.read_bytes()


def pt_fields(model: ByteLM, training: dict | None = None) -> dict:
    """The dict that save_checkpoint writes into a .pt file, to be edited and torch.save'd."""
    return {"format": "caracal-viz", "format_version": "1", "config": json.dumps(model.config.to_dict()),
            "tokenizer": json.dumps({"type": "bytes", "vocab_size": 256, "encoding": "utf-8"}),
            "training": json.dumps(training or {"steps": 1}), "state_dict": weights_of(model)}


def torch_save_bytes(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


# ---- code that runs if a file is unpickled -----------------------------------------------------
class RunsShell:
    """Unpickling this calls os.system, which creates `marker`: the classic hostile pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


# ---- safetensors surgery -----------------------------------------------------------------------
def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_safetensors(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


# ---- .pt archives written by hand (to lie about storages, shapes or compression) --------------
class Storage:
    """Pickled as torch.save's persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)."""

    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class RebuildTensor:
    """Pickled as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})."""

    def __init__(self, storage: Storage, offset: int, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def write_pt_archive(obj, records: dict[str, bytes], compress: int = zipfile.ZIP_STORED,
                     pickle_bytes: bytes | None = None) -> bytes:
    """A .pt zip laid out as torch.save lays it out, with `obj` pickled (protocol 2, storages as
    persistent ids) or the given pickle_bytes, and raw records data/<key>."""
    if pickle_bytes is None:
        buf = io.BytesIO()
        _TorchLikePickler(buf, protocol=2).dump(obj)
        pickle_bytes = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, raw in records.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def pt_archive_of(model: ByteLM, training: dict | None = None, **overrides) -> tuple[dict, dict]:
    """(object, records) for write_pt_archive holding `model` as save_checkpoint would, with
    top-level fields replaced by `overrides`."""
    obj = pt_fields(model, training)
    state, records = {}, {}
    for i, (k, t) in enumerate(obj["state_dict"].items()):
        records[str(i)] = t.numpy().tobytes()
        state[k] = RebuildTensor(Storage(str(i), t.numel()), 0, t.shape, t.stride())
    obj["state_dict"] = state
    obj.update(overrides)
    return obj, records


def nested_tuple_key_pickle(depth: int) -> bytes:
    """A protocol-2 pickle of [t_0, ..., t_depth, {t_depth: "x"}] where t_0 = ("x",) and
    t_k = (t_{k-1},) * 10: 10**depth objects once shared references are expanded, and as many
    steps to hash the dict's key. Written opcode by opcode (only opcodes torch's weights_only
    unpickler accepts), since building the dict in Python would itself take that long."""
    out = [b"\x80\x02]("]  # PROTO 2, EMPTY_LIST, MARK
    out.append(b"X\x01\x00\x00\x00x\x85q\x00")  # "x", TUPLE1, BINPUT 0
    for level in range(depth):  # MARK, 10 x BINGET level, TUPLE, BINPUT level + 1
        out += [b"("] + [b"h" + bytes([level])] * 10 + [b"tq" + bytes([level + 1])]
    out.append(b"}h" + bytes([depth]) + b"X\x01\x00\x00\x00xs")  # EMPTY_DICT, key, "x", SETITEM
    out.append(b"e.")  # APPENDS, STOP
    return b"".join(out)


# ---- memory ------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_rss_growth(fn) -> tuple[object, int]:
    """Run fn() and return (its result or the exception it raised, the growth of this process's
    peak resident memory during the call, in bytes). Linux: the peak (VmHWM) is reset first by
    writing 5 to /proc/self/clear_refs, so each call is measured on its own."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    try:
        result = fn()
    except Exception as e:  # the caller asserts on what was raised
        result = e
    return result, (_status_kb("VmHWM") - before) * 1024


# ---- AppTest -----------------------------------------------------------------------------------
def server_pages_manager():
    """A PagesManager under which AppTest runs app.py on every run, as the live server does once
    app.py has called st.navigation: AppTest re-detects the pages/ folder before each run and,
    finding one, would run the current page file alone (Streamlit's legacy multipage mode; see
    https://github.com/streamlit/streamlit/pull/14217). Set it as
    streamlit.testing.v1.app_test.PagesManager (the fixture below; benchmarks/app_latency.py)."""
    from streamlit.runtime.pages_manager import PagesManager

    class ServerPagesManager(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    return ServerPagesManager


@pytest.fixture
def server_like_navigation(monkeypatch):
    """Make AppTest run app.py on every run, as the live server does (`server_pages_manager`)."""
    import streamlit.testing.v1.app_test as app_test_module

    monkeypatch.setattr(app_test_module, "PagesManager", server_pages_manager())


def open_link(page: str, **query):
    """AppTest of the app opened at `page` with `query` as its URL's query parameters, as a shared
    link opens it; fails on any exception the run raised."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at
