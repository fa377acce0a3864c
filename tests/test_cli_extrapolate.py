"""`python -m caracal_viz extrapolate` as a user runs it: bits/byte per position bin against a
float64 log-softmax of the plain forward pass on the same windows, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import torch

from .conftest import ROOT, load_sample, sample_path
from .test_cli import finish, start

TEXT = (ROOT / "data" / "tinyshakespeare.txt").read_bytes()[:1500]


def brute_bits(name: str, starts: list[int], length: int) -> np.ndarray:
    """(length,) bits per predicted byte, averaged over the windows, from the model's logits."""
    ck = load_sample(name)
    data = np.frombuffer(TEXT, dtype=np.uint8).astype(np.int64)
    rows = []
    for s in starts:
        ids = torch.as_tensor(data[s:s + length + 1], device=ck.device)[None]
        with torch.no_grad():
            logp = torch.log_softmax(ck.model(ids[:, :-1]).double(), dim=-1)[0]
        rows.append(-logp[torch.arange(length), ids[0, 1:]].cpu().numpy() / np.log(2))
    return np.mean(rows, axis=0)


def test_extrapolate_bins_agree_with_the_plain_forward(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT)
    names = ("caracal-periodic", "caracal-shakespeare")
    rc, out, err = finish(start("extrapolate", *(str(sample_path(n)) for n in names), "--text-file", str(path),
                                "--length", "600", "--windows", "2", "--device", "cpu", "--json"))
    assert rc == 0 and err == ""
    result = json.loads(out)
    assert [c["checkpoint"] for c in result["checkpoints"]] == [sample_path(n).name for n in names]
    for name, c in zip(names, result["checkpoints"]):
        assert c["length"] == 600 and len(c["window_starts"]) == 2
        bits = brute_bits(name, c["window_starts"], 600)
        edges = c["bin_edges"]
        want = [bits[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(c["bits_per_byte"], want, rtol=1e-4)
        assert abs(c["mean_bits_per_byte"] - bits.mean()) < 1e-4

    rc, out, err = finish(start("extrapolate", str(sample_path("caracal-periodic")), "--text-file", str(path),
                                "--length", "600", "--windows", "2", "--device", "cpu"))
    assert rc == 0 and err == ""
    assert "context 256" in out and "*" in out  # bins past the training context are marked


def test_extrapolate_bad_input_is_one_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT)
    runs = [start("extrapolate", str(sample_path("caracal-periodic")), "--text-file", str(path), "--length", "5000"),
            start("extrapolate", str(tmp_path / "missing.safetensors"), "--text-file", str(path)),
            start("extrapolate", str(sample_path("caracal-periodic")), "--text-file", str(path), "--windows", "3")]
    for p in runs:
        rc, out, err = finish(p)
        assert rc == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("caracal-viz: error:") and "Traceback" not in err
