"""Hostile checkpoints: code in a pickle never runs, object-graph and zip bombs are refused
before torch.load, size limits are checked before a file is read whole, and the real samples
still load exactly as an independent parser (safetensors' own) reads them.

Each hostile file is first shown to be live where that is safe (torch.load with
weights_only=False runs the payload and creates the marker), so "the marker is absent" means
the loader stopped it, not that the payload was broken."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import subprocess
import sys
import zipfile

import pytest
import torch
from safetensors.torch import load_file
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

from caracal_viz.checkpoint import CheckpointError, load_checkpoint, max_checkpoint_bytes, save_checkpoint
from tests.conftest import ROOT, SAMPLE_NAMES, load_sample, sample_path
from tests.security_helpers import (RebuildTensor, RunsShell, Storage, checkpoint_bytes, nested_tuple_key_pickle,
                                    peak_rss_growth, pt_archive_of, pt_fields, server_like_navigation, small_model,
                                    torch_save_bytes, write_pt_archive)

__all__ = ["server_like_navigation"]  # the fixture, used by name below
MB = 2**20


@pytest.fixture(scope="module")
def model():
    return small_model()


def _hostile_variants(model, marker) -> dict[str, bytes]:
    """Five ways to put os.system into a .pt file."""
    fields = pt_fields(model)
    in_state = dict(fields["state_dict"])
    in_state["tok_emb.weight"] = RunsShell(marker)
    obj, records = pt_archive_of(model)
    obj = {k: v for k, v in obj.items() if k != "state_dict"}  # storages need torch's own pickler
    return {
        "in the metadata": torch_save_bytes({**fields, "training": RunsShell(marker)}),
        "in the state dict": torch_save_bytes({**fields, "state_dict": in_state}),
        "as the whole file": torch_save_bytes(RunsShell(marker)),
        # protocol 4 reaches os.system through STACK_GLOBAL, which torch.save never writes
        "protocol-4 pickle": write_pt_archive(None, records, pickle_bytes=pickle.dumps(
            {**obj, "x": RunsShell(marker)}, protocol=4)),
        "legacy (non-zip) format": torch_save_bytes({**fields, "x": RunsShell(marker)},
                                                    _use_new_zipfile_serialization=False),
    }


def test_the_payload_is_live(model, tmp_path):
    marker = tmp_path / "ran"
    for variant, data in _hostile_variants(model, marker).items():
        marker.unlink(missing_ok=True)
        try:
            torch.load(io.BytesIO(data), weights_only=False)
        except Exception:  # the payload runs while unpickling, before anything can fail
            pass
        assert marker.exists(), f"{variant}: the test payload does not run code, so it proves nothing"


def test_loader_refuses_code_and_never_runs_it(model, tmp_path):
    marker = tmp_path / "ran"
    for variant, data in _hostile_variants(model, marker).items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(data, name="evil.pt", device="cpu")
        assert not marker.exists(), f"{variant}: the loader ran code from the file"
        msg = str(err.value)
        assert "evil.pt" in msg and "\n" not in msg
        # refused by our own checks before torch.load, each saying what it found
        expected = {"legacy (non-zip) format": "legacy format", "protocol-4 pickle": "STACK_GLOBAL"}
        assert re.search(expected.get(variant, r"code to load \((posix|nt|os)\.system\)"), msg), (variant, msg)


def test_cli_check_refuses_hostile_pt(model, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(_hostile_variants(model, marker)["in the metadata"])
    proc = subprocess.run([sys.executable, "-m", "caracal_viz", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "evil.pt" in proc.stdout + proc.stderr
    assert not marker.exists()


def test_app_refuses_hostile_upload(model, tmp_path, server_like_navigation):
    from streamlit.testing.v1 import AppTest

    marker = tmp_path / "ran"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    before = at.selectbox("ck_select").value
    at.get("file_uploader")[0].set_value(
        ("evil.pt", _hostile_variants(model, marker)["in the state dict"], "application/octet-stream"))
    at.run()
    assert not marker.exists(), "the app ran code from the upload"
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "evil.pt" in errors[0] and "code" in errors[0], errors
    assert at.selectbox("ck_select").value == before


@pytest.mark.timeout(60)
def test_object_graph_bomb_is_refused_before_torch_load(model):
    # 10**10 objects once expanded, 1.5 KB on disk: torch.load(weights_only=True) spends ~90 s
    # hashing the key on this machine (measured: depth 9 took 8.6 s); the loader refuses at once.
    data = write_pt_archive(None, {}, pickle_bytes=nested_tuple_key_pickle(10))
    assert len(data) < 2000
    with pytest.raises(CheckpointError, match="object graph"):
        load_checkpoint(data, name="bomb.pt", device="cpu")


def test_metadata_that_is_not_text_is_never_formatted(model):
    # 10 KB of shared references to one 64 KB string: str() of it is 640 MB.
    chunk = "x" * 65536
    row = [chunk] * 100
    data = torch_save_bytes({**pt_fields(model), "format_version": [row] * 100})
    assert len(data) < 1 * MB
    err, growth = peak_rss_growth(lambda: load_checkpoint(data, name="strbomb.pt", device="cpu"))
    assert isinstance(err, CheckpointError) and "text" in str(err), err
    assert growth < 64 * MB, f"peak memory grew by {growth / MB:.0f} MB"


def test_zip_bomb_is_refused_before_decompressing(model):
    # An extra 64 MB storage of zeros, deflated to ~64 KB.
    obj, records = pt_archive_of(model)
    n = 16 * MB
    obj["state_dict"]["blocks.9.extra"] = RebuildTensor(Storage("big", n), 0, (n,), (1,))
    records["big"] = bytes(4 * n)
    data = write_pt_archive(obj, records, compress=zipfile.ZIP_DEFLATED)
    assert len(data) < 2 * MB
    err, growth = peak_rss_growth(lambda: load_checkpoint(data, name="zipbomb.pt", device="cpu"))
    assert isinstance(err, CheckpointError) and "compressed" in str(err), err
    assert growth < 32 * MB, f"peak memory grew by {growth / MB:.0f} MB"


# ---- size limits -------------------------------------------------------------------------------
def test_default_limit_fits_every_sample_ten_times(monkeypatch):
    monkeypatch.delenv("CARACAL_MAX_CHECKPOINT_MB", raising=False)
    largest = max(sample_path(n).stat().st_size for n in SAMPLE_NAMES)
    assert max_checkpoint_bytes() >= 10 * largest


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "inf", "nan", ""])
def test_a_bad_limit_setting_falls_back_to_the_default(monkeypatch, raw):
    monkeypatch.delenv("CARACAL_MAX_CHECKPOINT_MB", raising=False)
    default = max_checkpoint_bytes()
    monkeypatch.setenv("CARACAL_MAX_CHECKPOINT_MB", raw)
    assert max_checkpoint_bytes() == default


def test_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("CARACAL_MAX_CHECKPOINT_MB", "1")
    assert max_checkpoint_bytes() == MB
    with pytest.raises(CheckpointError, match="over the 1 MB limit.*CARACAL_MAX_CHECKPOINT_MB"):
        load_checkpoint(sample_path("caracal-shakespeare"), device="cpu")
    assert load_checkpoint(sample_path("caracal-periodic"), device="cpu").config.d_model == 64


def _upload(name: str, data: bytes) -> UploadedFile:
    """A real Streamlit upload object, as st.file_uploader returns it."""
    return UploadedFile(UploadedFileRec(file_id="1", name=name, type="application/octet-stream", data=data), None)


def test_oversized_upload_is_refused_before_it_is_read():
    limit = MB
    big = bytes(3 * limit)
    up = _upload("big.safetensors", big)
    with pytest.raises(CheckpointError, match="over the 1 MB limit"):
        load_checkpoint(up, device="cpu", max_bytes=limit)
    assert up.tell() == 0  # refused on its declared size: not one byte read
    stream = io.BytesIO(big)  # no declared size: read no further than the limit
    with pytest.raises(CheckpointError, match="over the 1 MB limit"):
        load_checkpoint(stream, name="big.safetensors", device="cpu", max_bytes=limit)
    assert stream.tell() == limit + 1


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:  # sparse: 1 GiB on paper, nothing on disk
        f.truncate(1024 * MB)
    err, growth = peak_rss_growth(lambda: load_checkpoint(path, device="cpu"))
    assert isinstance(err, CheckpointError) and "limit" in str(err), err
    assert growth < 16 * MB, f"peak memory grew by {growth / MB:.0f} MB"


def test_an_upload_read_before_is_read_from_the_start():
    data = sample_path("caracal-periodic").read_bytes()
    up = _upload("periodic.safetensors", data)
    up.read()  # an earlier rerun read it to the end
    ck = load_checkpoint(up, device="cpu")
    assert ck.sha256 == hashlib.sha256(data).hexdigest()


# ---- the real samples --------------------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_samples_load_as_safetensors_reads_them(name):
    ck = load_sample(name)
    reference = load_file(str(sample_path(name)))  # safetensors' own parser
    state = ck.model.state_dict()
    assert set(reference) == set(state) - {"head.weight"}
    for k, v in reference.items():
        assert torch.equal(state[k], v), k
    assert torch.equal(state["head.weight"], reference["tok_emb.weight"])
    assert ck.sha256 == hashlib.sha256(sample_path(name).read_bytes()).hexdigest()


def test_a_sample_round_trips_through_pt_and_an_upload(tmp_path):
    ck = load_sample("caracal-periodic")
    path = save_checkpoint(tmp_path / "periodic.pt", ck.model, ck.meta)
    again = load_checkpoint(_upload("periodic.pt", path.read_bytes()), device="cpu")
    ids = torch.tensor([list(b"abcabcabcqwertyui")])
    with torch.no_grad():
        assert torch.equal(again.model(ids), ck.model(ids))
    assert again.meta == ck.meta and again.config == ck.config


def test_small_model_round_trips(model, tmp_path):
    for suffix in (".safetensors", ".pt"):
        ck = load_checkpoint(checkpoint_bytes(model, suffix, tmp_path), name=f"m{suffix}", device="cpu")
        for k, v in model.state_dict().items():
            assert torch.equal(ck.model.state_dict()[k], v), (suffix, k)
