"""`python -m caracal_viz ablate` as a user runs it (real subprocesses, real checkpoints): the
printed numbers against the library's, the sweep CSV, one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from caracal_viz import interventions as iv
from .conftest import load_sample, sample_path
from .test_cli import finish, start

TEXT = "abcdefgh" * 12


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("ablate") / "text.txt"
    p.write_text(TEXT)
    return p


def test_ablate_json_and_sweep_csv_agree_with_the_library(text_file, tmp_path):
    ck = load_sample("caracal-periodic")
    csv_path = tmp_path / "sweep.csv"
    runs = {
        "head": start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(text_file), "--layer", "1",
                      "--head", "2", "--json", "--device", "cpu"),
        "band": start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(text_file), "--layer", "0",
                      "--head", "1", "--band", "0.1", "0.2", "--json", "--device", "cpu"),
        "sweep": start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(text_file), "--sweep",
                       "--bands", "4", "--out", str(csv_path), "--device", "cpu"),
        "text": start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(text_file), "--layer", "1",
                      "--device", "cpu"),
    }
    out = {name: finish(p) for name, p in runs.items()}
    assert all(rc == 0 and err == "" for rc, _, err in out.values()), out
    head = json.loads(out["head"][1])
    want = iv.ablate_head(ck, TEXT, 1, 2)
    assert head["bits_per_byte_before"] == pytest.approx(want.bits_before, abs=1e-6)
    assert head["bits_per_byte_after"] == pytest.approx(want.bits_after, abs=1e-6)
    assert head["topk_after"][0]["byte"] == want.topk_after[0][0]
    band = json.loads(out["band"][1])
    assert band["change"] == pytest.approx(iv.filter_band(ck, TEXT, 0, 1, (0.1, 0.2)).delta_bits, abs=1e-6)
    rows = list(csv.DictReader(csv_path.open()))
    sweep = iv.sweep(ck, TEXT, n_bands=4)
    assert len(rows) == 2 * 4 * 5
    got = np.array([float(r["delta_bits_per_byte"]) for r in rows if r["ablation"] == "head zeroed"]).reshape(2, 4)
    np.testing.assert_allclose(got, sweep.head_delta, atol=1e-6)
    assert "every head" in out["text"][1] and "bits/byte: before" in out["text"][1]


@pytest.mark.parametrize("args, message", [
    (["--layer", "0", "--head", "9"], "head must be an integer from 0 to 3"),
    (["--layer", "0", "--head", "0", "--band", "0.2", "0.9"], "outside 0..0.5"),
    (["--layer", "0", "--band", "0.1", "0.2"], "--band needs --head"),
    (["--sweep"], "--sweep needs --out"),
    ([], "give --layer"),
])
def test_ablate_bad_requests_exit_2_with_one_line(args, message, text_file):
    rc, out, err = finish(start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(text_file),
                                *args, "--device", "cpu"))
    assert rc == 2 and out == "" and message in err and err.count("\n") == 1


def test_ablate_refuses_a_one_byte_text(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("a")
    rc, _, err = finish(start("ablate", str(sample_path("caracal-periodic")), "--text-file", str(f), "--layer", "0",
                              "--head", "0", "--device", "cpu"))
    assert rc == 2 and "one byte long" in err
