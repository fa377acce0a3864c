"""Damaged and lying checkpoints: every mutation of a valid file either loads correctly (the
weights are what an independent reader finds in the file) or raises CheckpointError with a
one-line message; never another exception, a hang, or a blow-up of peak memory.

First a table of named cases, one per kind of damage, with the outcome each must have; then
hypothesis mutates both formats at random (fixed seed, bounded examples and deadline)."""

from __future__ import annotations

import io
import json
import math
import random
import re
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as safetensors_load

from caracal_viz.checkpoint import Checkpoint, CheckpointError, load_checkpoint, weights_of
from tests.security_helpers import (SMALL, RebuildTensor, Storage, checkpoint_bytes, join_safetensors, peak_rss_growth,
                                    pt_archive_of, pt_fields, small_model, split_safetensors, torch_save_bytes,
                                    write_pt_archive)

MB = 2**20
# The small model's files are ~140 KB; loading one needs a few MB. A copy of a declared shape,
# a decompressed bomb or an expanded object graph would need hundreds.
PEAK_GROWTH_LIMIT = 48 * MB


@pytest.fixture(scope="module")
def model():
    return small_model(seed=1)


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    out = {".safetensors": checkpoint_bytes(model, ".safetensors", tmp), ".pt": checkpoint_bytes(model, ".pt", tmp)}
    for suffix, data in out.items():
        load_checkpoint(data, name=f"warm-up{suffix}", device="cpu")  # torch's one-time set-up: ~70 MB
        assert isinstance(check_outcome(data, suffix), Checkpoint)
    return out


def reference_weights(data: bytes, suffix: str) -> dict[str, torch.Tensor]:
    """The tensors in a file, read by the format's own library (not by caracal-viz)."""
    if suffix == ".safetensors":
        return safetensors_load(data)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["state_dict"]


def check_outcome(data: bytes, suffix: str):
    """Load `data`; assert it loaded correctly or failed with CheckpointError, within the memory
    bound. Returns the Checkpoint or the CheckpointError."""
    result, growth = peak_rss_growth(lambda: load_checkpoint(data, name=f"fuzz{suffix}", device="cpu"))
    assert growth < PEAK_GROWTH_LIMIT, f"peak memory grew by {growth / MB:.0f} MB"
    if isinstance(result, CheckpointError):
        msg = str(result)
        assert msg and "\n" not in msg, msg
        return result
    assert isinstance(result, Checkpoint), f"{type(result).__name__}: {result}"
    ref = reference_weights(data, suffix)
    state = result.model.state_dict()
    assert set(ref) == set(state) - {"head.weight"}
    for k, v in ref.items():  # bit for bit, NaN where the file holds NaN
        torch.testing.assert_close(state[k], v.float(), rtol=0, atol=0, equal_nan=True, msg=k)
    return result


# ---- builders of damaged files ----------------------------------------------------------------
def edit_header(data: bytes, edit) -> bytes:
    header, body = split_safetensors(data)
    edit(header)
    return join_safetensors(header, body)


def header_text_replace(data: bytes, old: str, new: str) -> bytes:
    header, body = split_safetensors(data)
    text = json.dumps(header)
    assert old in text
    return join_safetensors(text.replace(old, new, 1).encode(), body)


def with_config(data: bytes, key: str, value) -> bytes:
    def edit(h):
        cfg = json.loads(h["__metadata__"]["config"])
        cfg[key] = value
        h["__metadata__"]["config"] = json.dumps(cfg)
    return edit_header(data, edit)


def safetensors_of(weights: dict, model, metadata_extra: dict | None = None) -> bytes:
    from safetensors.torch import save
    fields = {k: v for k, v in pt_fields(model).items() if k != "state_dict"}
    return save(weights, metadata={**fields, **(metadata_extra or {})})


def pt_of(weights: dict, model, extra: dict | None = None) -> bytes:
    return torch_save_bytes({**pt_fields(model), "state_dict": weights, **(extra or {})})


def poisoned(model, value: float) -> dict:
    w = weights_of(model)
    w["blocks.1.mlp.fc.weight"] = w["blocks.1.mlp.fc.weight"].clone()
    w["blocks.1.mlp.fc.weight"][3, 5] = value
    return w


def pt_lying(model, key: str, *, numel=None, size=None, stride=None, offset=0) -> bytes:
    obj, records = pt_archive_of(model)
    names = list(weights_of(model))
    i = names.index(key)
    t = weights_of(model)[key]
    obj["state_dict"][key] = RebuildTensor(Storage(str(i), t.numel() if numel is None else numel), offset,
                                           t.shape if size is None else size, t.stride() if stride is None else stride)
    return write_pt_archive(obj, records)


def named_cases(model, files):
    st_, pt = files[".safetensors"], files[".pt"]
    key = "blocks.0.mixer.gate_bias"
    many = {f"k{i}": "v" * 8 for i in range(10_000)}
    w = weights_of(model)
    missing = {k: v for k, v in w.items() if k != "ln_f.bias"}
    extra = {**w, "blocks.7.surprise": torch.ones(3)}
    return [
        # (name, data, suffix, expected: "load" or a regex the CheckpointError must match)
        ("truncated safetensors body", st_[: len(st_) - 100], ".safetensors", "truncated|size"),
        ("truncated safetensors header", st_[:50], ".safetensors", "truncated"),
        ("truncated pt", pt[: len(pt) // 2], ".pt", "archive|truncated|corrupt"),
        ("header size lies (8 GB)", (8 * 2**30).to_bytes(8, "little") + st_[8:], ".safetensors", "header"),
        ("tensor size lies", edit_header(st_, lambda h: h[key].update(data_offsets=[h[key]["data_offsets"][0], h[key]["data_offsets"][1] + 4])), ".safetensors", "size|overlap|gap"),
        ("dtype lies (F16)", edit_header(st_, lambda h: h[key].update(dtype="F16")), ".safetensors", "F16"),
        ("dtype is not a string", edit_header(st_, lambda h: h[key].update(dtype=[1, 2])), ".safetensors", "float32"),
        ("huge declared shape", edit_header(st_, lambda h: h[key].update(shape=[2**39, 2**39])), ".safetensors", "size"),
        # JSON true is a Python bool, an int subclass, and (32, True, 3) == (32, 1, 3)
        ("shape with a boolean", edit_header(st_, lambda h: h["blocks.0.mixer.conv_weight"].update(shape=[32, True, 3])),
         ".safetensors", "shape"),
        ("4,400-digit shape", header_text_replace(st_, '"shape": [4, 65]', '"shape": [' + "9" * 4400 + "]"),
         ".safetensors", "corrupt header"),
        ("header nested 100,000 deep", join_safetensors(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""), ".safetensors", "corrupt header"),
        # NaN/Inf weights load, flagged in Checkpoint.nonfinite (the certificate: "cannot certify")
        ("NaN weight (safetensors)", safetensors_of(poisoned(model, math.nan), model), ".safetensors", "load"),
        ("Inf weight (pt)", pt_of(poisoned(model, math.inf), model), ".pt", "load"),
        ("config: string for an int", with_config(st_, "d_model", "32"), ".safetensors", "config"),
        ("config: bool for an int", with_config(st_, "n_layers", True), ".safetensors", "config"),
        ("config: 5,000-digit int", edit_header(st_, lambda h: h["__metadata__"].update(
            config=h["__metadata__"]["config"].replace('"d_model": 32', '"d_model": ' + "7" * 5000))), ".safetensors", "config"),
        ("config: NaN dropout", with_config(st_, "dropout", math.nan), ".safetensors", "dropout"),
        ("config: list", edit_header(st_, lambda h: h["__metadata__"].update(config="[1, 2]")), ".safetensors", "config"),
        ("config: implausible size", with_config(st_, "context", 2**40), ".safetensors", "implausibly"),
        ("config and weights disagree", with_config(st_, "d_model", 64), ".safetensors", "shape"),
        ("training nested 100,000 deep", edit_header(st_, lambda h: h["__metadata__"].update(training="[" * 100_000 + "]" * 100_000)), ".safetensors", "JSON"),
        ("missing tensor (safetensors)", safetensors_of(missing, model), ".safetensors", "missing"),
        ("extra tensor (pt)", pt_of(extra, model), ".pt", "does not use"),
        ("10,000-key metadata (safetensors)", safetensors_of(w, model, many), ".safetensors", "load"),
        ("10,000-key metadata (pt)", pt_of(w, model, many), ".pt", "load"),
        ("pt storage numel lies", pt_lying(model, key, numel=4 * 65 + 1), ".pt", "declares"),
        ("pt tensor bigger than its storage", pt_lying(model, key, size=(40, 65)), ".pt", "corrupt|shape"),
        ("pt huge shape, stride 0", pt_lying(model, key, size=(2**40,), stride=(0,)), ".pt", "shape"),
        ("pt negative offset", pt_lying(model, key, offset=-3), ".pt", "corrupt"),
        ("pt float64 tensor", pt_of({**w, key: w[key].double()}, model), ".pt", "float32"),
        ("pt int metadata", torch_save_bytes({**pt_fields(model), "format_version": 1}), ".pt", "text"),
        ("pt list, not a dict", torch_save_bytes([1, 2, 3]), ".pt", "not a caracal-viz"),
    ]


def test_named_damage(model, files):
    for name, data, suffix, expected in named_cases(model, files):
        result = check_outcome(data, suffix)
        if expected == "load":
            assert isinstance(result, Checkpoint), f"{name}: {result}"
            assert result.nonfinite == (("blocks.1.mlp.fc.weight",) if " weight (" in name else ()), name
        else:
            assert isinstance(result, CheckpointError), f"{name}: loaded"
            assert re.search(expected, str(result)), f"{name}: {result}"


# ---- random mutations ---------------------------------------------------------------------------
def mutate(data: bytes, suffix: str, ops: list) -> bytes:
    buf = bytearray(data)
    for kind, a, b in ops:
        if not buf:
            break
        if kind == "flip":
            buf[a % len(buf)] ^= (b % 255) + 1
        elif kind == "truncate":
            del buf[a % len(buf):]
        elif kind == "insert":
            buf[a % len(buf):a % len(buf)] = bytes([b % 256]) * (1 + b % 7)
        elif kind == "header" and suffix == ".safetensors":
            buf = bytearray(_lie_in_header(bytes(buf), a, b))
    return bytes(buf)


_LIES = [
    ("shape", lambda r: [r.randrange(0, 2**40) for _ in range(r.randrange(0, 4))]),
    ("shape", lambda r: [r.choice([-1, 0, 1, 2**63, 1.5, "4", None, True])]),
    ("dtype", lambda r: r.choice(["F16", "BF16", "F64", "I64", "U8", "BOOL", "F32", "", None, 7])),
    ("data_offsets", lambda r: [r.randrange(0, 2**20), r.randrange(0, 2**20)]),
    ("data_offsets", lambda r: [r.choice([-1, 2**64, 0.5, None]), 4]),
]


def _lie_in_header(data: bytes, a: int, b: int) -> bytes:
    try:
        header, body = split_safetensors(data)
    except (ValueError, UnicodeDecodeError, struct.error):  # already too damaged to edit
        return data
    if not isinstance(header, dict):
        return data
    keys = sorted(k for k in header if k != "__metadata__" and isinstance(header[k], dict))
    if not keys:
        return data
    r = random.Random(b)
    field, make = _LIES[a % len(_LIES)]
    header[keys[b % len(keys)]][field] = make(r)
    return join_safetensors(header, body)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "header"]),
                         st.integers(0, 2**31), st.integers(0, 2**31)), min_size=1, max_size=4)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=3000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".safetensors", ".pt"]), ops=OPS)
def test_random_mutations_load_or_raise_checkpoint_error(files, suffix, ops):
    check_outcome(mutate(files[suffix], suffix, ops), suffix)


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=3000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(SMALL.to_dict())),
       value=st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                       st.text(max_size=20), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_config_values_of_any_type(files, key, value):
    result = check_outcome(with_config(files[".safetensors"], key, value), ".safetensors")
    if isinstance(result, Checkpoint):  # then the value was valid: the config must hold it
        assert result.config.to_dict()[key] == value
