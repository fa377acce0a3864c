"""The checkpoint format: round trips, and every loader error case with its message."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import pytest
import torch

from caracal_viz import CheckpointError, load_checkpoint, save_checkpoint
from caracal_viz.checkpoint import weights_of
from models import ByteLM, ModelConfig
from tests.conftest import SAMPLE_NAMES, sample_path

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=4, context=64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ByteLM(CFG).eval()


def st_bytes(header: dict, tensors: dict[str, torch.Tensor], metadata: dict | None) -> bytes:
    """Write a .safetensors file by hand (independent of the safetensors library)."""
    body, entries, pos = b"", {}, 0
    for k, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        entries[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        body += raw
        pos += len(raw)
    entries.update(header)
    if metadata is not None:
        entries["__metadata__"] = metadata
    h = json.dumps(entries).encode()
    return struct.pack("<Q", len(h)) + h + body


def metadata(model: ByteLM, **over) -> dict:
    meta = {"format": "caracal-viz", "format_version": "1", "config": json.dumps(model.config.to_dict()),
            "tokenizer": json.dumps({"type": "bytes", "vocab_size": 256}), "training": json.dumps({"steps": 1})}
    meta.update(over)
    return meta


def expect_error(data: bytes, name: str, *phrases: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(data, name=name, device="cpu")
    msg = str(info.value)
    assert "\n" not in msg
    for p in phrases:
        assert p in msg, msg
    return msg


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip_is_exact(model, tmp_path, suffix):
    path = save_checkpoint(tmp_path / f"m{suffix}", model, {"steps": 7, "loss_curve": [[0, 8.0]]})
    ck = load_checkpoint(path, device="cpu")
    assert ck.config == CFG and ck.meta["steps"] == 7 and ck.name == f"m{suffix}"
    assert not ck.model.training
    for k, v in weights_of(model).items():
        assert torch.equal(weights_of(ck.model)[k], v)
    ids = torch.randint(0, 256, (1, 30))
    assert torch.equal(ck.model(ids), model(ids))
    again = load_checkpoint(path.read_bytes(), name=path.name, device="cpu")
    assert again.sha256 == ck.sha256
    with open(path, "rb") as f:  # a file-like upload
        assert load_checkpoint(f, device="cpu").sha256 == ck.sha256


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_samples_load_and_generate(name):
    ck = load_checkpoint(sample_path(name), device="cpu")
    assert ck.meta["val_bits_per_byte"] > 0 and ck.meta["loss_curve"] and ck.meta["steps"] > 0
    out = ck.tokenizer.decode(list(ck.model.generate_stream(ck.tokenizer.encode("The "), 12, temperature=0.8, top_k=20,
                                                            generator=torch.Generator().manual_seed(0))))
    assert len(out) >= 1


def test_save_is_atomic_and_leaves_no_temporary(model, tmp_path):
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, model, {"steps": 1})
    first = path.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "a.bin", model, {})
    save_checkpoint(path, model, {"steps": 2})
    assert path.read_bytes() != first
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]


def test_wrong_extension(model, tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", model, {})
    renamed = tmp_path / "m.bin"
    p.rename(renamed)
    with pytest.raises(CheckpointError, match=r"not a checkpoint file: expected a \.safetensors or \.pt"):
        load_checkpoint(renamed)


def test_missing_file():
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint("/nonexistent/x.safetensors")


@pytest.mark.parametrize("cut", [0, 4, 100, -1, -1000])
def test_truncated_safetensors(model, tmp_path, cut):
    data = save_checkpoint(tmp_path / "m.safetensors", model, {}).read_bytes()
    part = data[:cut] if cut > 0 else data[:len(data) + cut] if cut else b""
    msg = expect_error(part, "m.safetensors")
    assert any(w in msg for w in ("truncated", "empty")), msg


def test_truncated_pt(model, tmp_path):
    data = save_checkpoint(tmp_path / "m.pt", model, {}).read_bytes()
    expect_error(data[: len(data) // 2], "m.pt", "truncated")


def test_not_a_caracal_file(model):
    plain = st_bytes({}, {"w": torch.zeros(2)}, None)
    expect_error(plain, "x.safetensors", "not a caracal-viz checkpoint")
    expect_error(b"hello world, not a model" * 10, "x.safetensors")


def test_missing_config_key(model):
    cfg = model.config.to_dict()
    del cfg["n_heads"]
    data = st_bytes({}, weights_of(model), metadata(model, config=json.dumps(cfg)))
    expect_error(data, "m.safetensors", "missing config key", "n_heads")


def test_unknown_config_key(model):
    cfg = {**model.config.to_dict(), "rotary": True}
    data = st_bytes({}, weights_of(model), metadata(model, config=json.dumps(cfg)))
    expect_error(data, "m.safetensors", "unknown config key", "rotary")


def test_wrong_config_type(model):
    cfg = {**model.config.to_dict(), "d_model": "32"}
    data = st_bytes({}, weights_of(model), metadata(model, config=json.dumps(cfg)))
    expect_error(data, "m.safetensors", "d_model", "must be int")


def test_unknown_mixer(model):
    cfg = {**model.config.to_dict(), "mixer": "mamba"}
    data = st_bytes({}, weights_of(model), metadata(model, config=json.dumps(cfg)))
    expect_error(data, "m.safetensors", "unknown mixer", "mamba")


def test_tensor_shape_mismatch(model):
    w = weights_of(model)
    w["blocks.0.mixer.w_v.weight"] = torch.zeros(32, 16)
    expect_error(st_bytes({}, w, metadata(model)), "m.safetensors", "blocks.0.mixer.w_v.weight", "shape", "(32, 16)")


def test_missing_and_extra_tensors(model):
    w = weights_of(model)
    del w["ln_f.weight"]
    expect_error(st_bytes({}, w, metadata(model)), "m.safetensors", "missing", "ln_f.weight")
    w = {**weights_of(model), "extra.bias": torch.zeros(3)}
    expect_error(st_bytes({}, w, metadata(model)), "m.safetensors", "does not use", "extra.bias")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_nan_and_inf_weights_load_flagged_and_bit_exact(model, tmp_path, suffix):
    """Weights holding NaN/Inf are a finding about the model (the certificate says "cannot certify"),
    not a damaged file: they load, every value as stored, with the tensors named in file order."""
    bad = ByteLM(CFG).eval()
    bad.load_state_dict(model.state_dict())
    with torch.no_grad():
        bad.ln_f.bias[3] = float("nan")
        bad.blocks[0].mixer.w_v.weight[1, 2] = float("-inf")
        bad.blocks[1].mlp.fc.weight[0, 0] = float("inf")
    ck = load_checkpoint(save_checkpoint(tmp_path / f"bad{suffix}", bad, {}), device="cpu")
    assert ck.nonfinite == ("blocks.0.mixer.w_v.weight", "blocks.1.mlp.fc.weight", "ln_f.bias")
    stored = weights_of(ck.model)
    for k, v in weights_of(bad).items():
        assert torch.equal(stored[k].isnan(), v.isnan()) and torch.equal(stored[k].nan_to_num(), v.nan_to_num()), k
    assert "\n" not in ck.nonfinite_text and "3 tensors hold NaN/Inf" in ck.nonfinite_text
    assert "ln_f.bias" in ck.nonfinite_text and "cannot be certified" in ck.nonfinite_text
    healthy = load_checkpoint(save_checkpoint(tmp_path / f"ok{suffix}", model, {}), device="cpu")
    assert healthy.nonfinite == () and healthy.nonfinite_text is None


def test_nan_weights_are_still_checked_like_any_other(model):
    """NaN/Inf is no pass: names, shapes and dtypes are checked as for finite weights."""
    w = weights_of(model)
    w["ln_f.bias"] = torch.full((32,), float("nan"))
    assert load_checkpoint(st_bytes({}, w, metadata(model)), name="m.safetensors", device="cpu").nonfinite == (
        "ln_f.bias",)
    w["ln_f.bias"] = torch.full((31,), float("nan"))
    expect_error(st_bytes({}, w, metadata(model)), "m.safetensors", "ln_f.bias", "shape", "(31,)")
    w["ln_f.bias"] = torch.full((32,), float("inf"), dtype=torch.float64)
    data = st_bytes({}, w, metadata(model))
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["ln_f.bias"]["dtype"] = "F64"
    h = json.dumps(header).encode()
    expect_error(struct.pack("<Q", len(h)) + h + data[8 + n:], "m.safetensors", "ln_f.bias", "F64")


def test_header_lying_about_sizes(model):
    w = weights_of(model)
    data = bytearray(st_bytes({}, w, metadata(model)))
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["ln_f.bias"]["shape"] = [10**9]
    h = json.dumps(header).encode()
    expect_error(struct.pack("<Q", len(h)) + h + bytes(data[8 + n:]), "m.safetensors", "ln_f.bias", "size")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/caracal-viz-pwned",))


def test_pickle_that_needs_code_is_refused_and_never_runs(model, tmp_path):
    marker = Path("/tmp/caracal-viz-pwned")
    marker.unlink(missing_ok=True)
    buf = io.BytesIO()
    torch.save({"format": "caracal-viz", "state_dict": weights_of(model), "payload": Exploit()}, buf)
    expect_error(buf.getvalue(), "evil.pt", "need code to load", "never runs code")
    assert not marker.exists()


def test_pt_without_state_dict(tmp_path):
    buf = io.BytesIO()
    torch.save({"format": "caracal-viz", "weights": [1, 2]}, buf)
    expect_error(buf.getvalue(), "m.pt", "state_dict")


def test_size_limit_refused_before_reading(model, tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", model, {})
    with pytest.raises(CheckpointError, match="over the .* limit"):
        load_checkpoint(p, max_bytes=1000)


def test_cuda_request_loads_on_gpu_or_says_there_is_none(model, tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", model, {})
    if torch.cuda.is_available():
        assert load_checkpoint(p, device="cuda").device.type == "cuda"
    else:
        with pytest.raises(CheckpointError, match="no GPU"):
            load_checkpoint(p, device="cuda")
