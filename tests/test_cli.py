"""`python -m caracal_viz` as a user runs it: real subprocesses, real checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import CAUSAL_SAMPLES, LEAKY_SAMPLES, ROOT, SAMPLE_NAMES, load_sample, sample_path
from .test_causality import brute_force_leak


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "caracal_viz", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def test_check_exit_codes_and_leak_agree_with_brute_force():
    runs = {name: start("check", str(sample_path(name)), "--json", "--lengths", "16,48", "--trials", "2",
                        "--device", "cpu") for name in SAMPLE_NAMES}  # all at once: startup dominates
    for name, p in runs.items():
        rc, out, err = finish(p)
        result = json.loads(out)
        brute = brute_force_leak(load_sample(name), 16, seed=7)
        assert err == ""
        assert result["checkpoint"] == sample_path(name).name and result["parseval"]["ok"]
        if name in CAUSAL_SAMPLES:
            assert rc == 0 and result["causal"]
            assert result["model_leak"] <= 1e-5 and brute <= 1e-5
        else:
            assert name in LEAKY_SAMPLES
            assert rc == 1 and not result["causal"]
            assert brute / 5 < result["leak_by_length"]["16"] < brute * 5
            assert result["model_leak"] > 1e-2 and not result["per_layer"][0]["causal"]


def test_check_human_output(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be: that is the question.\n", encoding="utf-8")
    rc, out, err = finish(start("check", str(sample_path("caracal-circular-leaky")), "--text-file", str(text),
                                "--lengths", "16", "--trials", "1"))
    assert rc == 1 and err == ""
    assert "causality: LEAKS" in out and "wrap-around" in out and "parseval: ok" in out and "43 bytes" in out


def bad_inputs(tmp_path) -> dict[str, tuple[list[str], dict, str]]:
    ckpt = str(sample_path("caracal-periodic"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    long = tmp_path / "long.txt"
    long.write_text("x" * 40)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    cases = {
        "missing checkpoint": (["check", str(tmp_path / "nope.safetensors")], {}, "no checkpoint file"),
        "bad checkpoint": (["check", str(garbage)], {}, "garbage.safetensors"),
        "not a checkpoint": (["check", str(latin1)], {}, "not a checkpoint file"),
        "text not utf-8": (["check", ckpt, "--text-file", str(latin1)], {}, "not valid UTF-8"),
        "empty text": (["analyze", ckpt, "--text-file", str(empty), "--out", str(tmp_path / "o")], {}, "empty"),
        "text too long": (["check", ckpt, "--text-file", str(long)], {"CARACAL_MAX_TEXT_BYTES": "10"},
                          "over the limit"),
        "missing text": (["report", ckpt, "--text-file", str(tmp_path / "no.txt"), "--out", str(tmp_path / "r.html")],
                         {}, "no text file"),
        "no command": ([], {}, "required"),
        "bad trials": (["check", ckpt, "--trials", "0"], {}, "positive integer"),
        "bad lengths": (["check", ckpt, "--lengths", "1,x"], {}, "lengths"),
        "out is a file": (["analyze", ckpt, "--text-file", str(long), "--out", str(afile)], {}, "is a file"),
    }
    if not torch.cuda.is_available():
        cases["no gpu"] = (["check", ckpt, "--device", "cuda"], {}, "CUDA")
    return cases


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    cases = bad_inputs(tmp_path)
    runs = {name: start(*args, env=env) for name, (args, env, _) in cases.items()}
    for name, p in runs.items():
        rc, out, err = finish(p)
        assert rc == 2, (name, rc, err)
        assert out == "", name
        assert err.count("\n") == 1 and err.startswith("caracal-viz: error: "), (name, err)
        assert "Traceback" not in err and cases[name][2] in err, (name, err)


def test_analyze_writes_arrays_and_summary(tmp_path):
    text = "abcabcabc 12312312 hello"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    rc, out, err = finish(start("analyze", str(sample_path("caracal-periodic")), "--text-file",
                                str(tmp_path / "t.txt"), "--out", str(tmp_path / "out"), "--device", "cpu"))
    assert rc == 0 and err == "" and "analysis.npz" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    arrays = np.load(tmp_path / "out" / "analysis.npz")
    assert sorted(arrays.files) == sorted(summary["arrays"])
    assert all(list(arrays[k].shape) == shape for k, shape in summary["arrays"].items())
    ck = load_sample("caracal-periodic")
    ids = list(text.encode())
    with torch.no_grad():
        logits = ck.model(torch.tensor([ids]))[0].numpy()
    np.testing.assert_array_equal(arrays["trace.logits"], logits)
    np.testing.assert_array_equal(arrays["trace.ids"], ids)
    np.testing.assert_allclose(arrays["block1.filters.kernel"],
                               ck.model.blocks[1].mixer.causal_kernel().detach().numpy(), atol=1e-6)
    assert arrays["block0.energy.esd_input"].shape == (ck.config.n_heads, len(ids) // 2 + 1)
    assert summary["causal"] and summary["text_bytes"] == len(ids) and len(summary["blocks"]) == 2
    assert summary["parseval"]["ok"] and summary["blocks"][0]["dead_heads"] == []


@pytest.mark.parametrize("name", ["caracal-periodic"])
def test_report_writes_html(tmp_path, name):
    (tmp_path / "t.txt").write_text("abcabcabc hello", encoding="utf-8")
    out = tmp_path / "report.html"
    rc, stdout, err = finish(start("report", str(sample_path(name)), "--text-file", str(tmp_path / "t.txt"),
                                   "--out", str(out)))
    assert rc == 0 and err == "", err
    html = out.read_text(encoding="utf-8")
    assert "<html" in html.lower() and name in html


def test_usage_errors_suggest_a_command_that_runs():
    """Issue 13 item 11: the hint after a usage error is a command a user can paste (no doubled
    "caracal_viz"), naming the subcommand when the error is the subcommand's; and it runs."""
    cases = {(): "python3 -m caracal_viz --help", ("check",): "python3 -m caracal_viz check --help",
             ("report", str(sample_path("caracal-periodic"))): "python3 -m caracal_viz report --help"}
    runs = {args: start(*args) for args in cases}
    for args, hint in cases.items():
        rc, out, err = finish(runs[args])
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert f"(see {hint})" in err, (args, err)
        rc, out, _ = finish(subprocess.Popen([sys.executable, *hint.split()[1:]], cwd=ROOT, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True))
        assert rc == 0 and "usage: python3 -m caracal_viz" in out
