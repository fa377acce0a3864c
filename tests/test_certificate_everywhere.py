"""One certificate in every entry point: the CLI's verdicts and exit codes, report and analyze on a
checkpoint whose activations overflow (output still written, NaN views marked), the influence map's
NaN, and the app's pages with the same checkpoint uploaded (grey "cannot certify", no exception).
Checkpoint files whose weights hold NaN or Inf, written by save_checkpoint, go through the same
entry points: every command exits 4 with its output written, every page says so in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from caracal_viz import load_checkpoint
from caracal_viz.causality import causality_report
from caracal_viz.cli import EXIT_BAD_INPUT, EXIT_CANNOT_CERTIFY, EXIT_LEAK, EXIT_OK
from caracal_viz.influence import token_influence
from models import ModelConfig
from tests.conftest import ROOT
from tests.test_app import in_order, verdicts
from tests.test_causality import built, overflow, scale_logits, set_two_sided_kernel
from tests.test_cli import finish, start

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def set_weight(param: str, index: tuple, value: float):
    def edit(model):
        model.get_parameter(param)[index] = value
    return edit


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    small = dict(d_model=32, n_layers=3, n_heads=2, context=64)
    cks = {
        "overflow": built(d, ModelConfig(**small), overflow, name="overflow"),
        "circular-small-logits": built(d, ModelConfig(**small, causal_mode="circular"), scale_logits(1e-3),
                                       name="circular-small-logits"),
        "far-lag": built(d, ModelConfig(d_model=16, n_layers=1, n_heads=2, context=1024, modrelu=False,
                                        causal_mode="two_sided"), set_two_sided_kernel({0: 1.0, -700: 0.5}),
                         name="far-lag"),
        "pad": built(d, ModelConfig(**small), name="pad"),
        "nan-weights": built(d, ModelConfig(**small), set_weight("blocks.1.mixer.w_v.weight", (0, 0), float("nan")),
                             name="nan-weights"),
        "inf-weights": built(d, ModelConfig(**small), set_weight("blocks.1.mlp.fc.bias", (3,), float("inf")),
                             name="inf-weights"),
    }
    for k, ck in cks.items():  # `built` saved each as <name>.safetensors in d
        ck.path = str(d / f"{k}.safetensors")
    return cks


def test_cli_check_exit_codes(checkpoints, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    expected = {"overflow": EXIT_CANNOT_CERTIFY, "circular-small-logits": EXIT_LEAK, "far-lag": EXIT_LEAK,
                "pad": EXIT_OK}
    runs = {k: start("check", checkpoints[k].path, "--json", "--text-file", str(text), "--device", "cpu")
            for k in expected}
    for k, p in runs.items():
        rc, out, err = finish(p)
        assert rc == expected[k], (k, rc, err)
        assert err == "" and EXIT_CANNOT_CERTIFY not in (EXIT_BAD_INPUT, EXIT_LEAK, EXIT_OK)
        result = json.loads(out)
        assert result["verdict"] == {EXIT_OK: "causal", EXIT_LEAK: "leaks"}.get(rc, "cannot certify")
        assert result["verdict"] != "leaks" or any(p["verdict"] == "leaks" for p in result["per_layer"])
        if k == "overflow":
            assert result["headline"] == "Cannot certify: NaN/Inf from block 1" and result["model_leak"] is None
        if k == "far-lag":
            assert "lag -700" in result["per_layer"][0]["structure_text"]
    rc, out, err = finish(start("check", checkpoints["overflow"].path, "--device", "cpu"))
    assert rc == EXIT_CANNOT_CERTIFY and err == "" and "CANNOT CERTIFY: NAN/INF FROM BLOCK 1" in out


def test_report_and_analyze_still_write_their_output_with_the_nan_views_marked(checkpoints, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    ckpt = checkpoints["overflow"].path
    html_path, out_dir = tmp_path / "r.html", tmp_path / "analysis"
    runs = [start("report", ckpt, "--text-file", str(text), "--out", str(html_path), "--device", "cpu"),
            start("analyze", ckpt, "--text-file", str(text), "--out", str(out_dir), "--device", "cpu")]
    (rc_r, out_r, err_r), (rc_a, out_a, err_a) = (finish(p) for p in runs)
    assert (rc_r, err_r) == (EXIT_CANNOT_CERTIFY, "") and "Cannot certify" in out_r
    doc = html_path.read_text(encoding="utf-8")
    assert 'class="verdict cannot"' in doc and "CANNOT CERTIFY: NAN/INF FROM BLOCK 1" in doc
    assert doc.count('class="nan"') >= 2  # the predictions and the influence map say NaN
    assert (rc_a, err_a) == (EXIT_CANNOT_CERTIFY, "")
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["verdict"] == "cannot certify" and summary["nonfinite_from"] == "block 1"
    assert "trace.logits" in summary["nonfinite_arrays"]
    assert np.isnan(np.load(out_dir / "analysis.npz")["trace.logits"]).any()


@pytest.mark.parametrize("which,param", [("nan-weights", "blocks.1.mixer.w_v.weight"),
                                         ("inf-weights", "blocks.1.mlp.fc.bias")])
def test_every_command_on_a_file_with_nan_or_inf_weights_exits_4_with_its_output(checkpoints, tmp_path, which, param):
    ck = checkpoints[which]
    assert ck.nonfinite == (param,)
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    common = ("--text-file", str(text), "--device", "cpu")
    html_path, out_dir, npz, csv = tmp_path / "r.html", tmp_path / "a", tmp_path / "attr.npz", tmp_path / "s.csv"
    commands = {
        "check": ("check", "--json"), "check-text": ("check",),
        "report": ("report", "--out", str(html_path)), "analyze": ("analyze", "--out", str(out_dir)),
        "attribute": ("attribute", "--position", "20", "--json", "--out", str(npz)),
        "attribute-text": ("attribute", "--position", "20"),
        "ablate": ("ablate", "--layer", "0", "--head", "1"), "sweep": ("ablate", "--sweep", "--out", str(csv), "--json"),
    }
    runs = {k: start(c[0], ck.path, *common, *c[1:]) for k, c in commands.items()}
    done = {k: finish(p) for k, p in runs.items()}
    for k, (rc, _out, err) in done.items():
        assert (rc, err) == (EXIT_CANNOT_CERTIFY, ""), (k, rc, err)
    headline = f"Cannot certify: NaN/Inf from the weights of block 1 ({param})"
    result = json.loads(done["check"][1])
    assert result["verdict"] == "cannot certify" and result["headline"] == headline
    assert result["nonfinite_weights"] == [param] and result["model_leak"] is None
    assert headline.upper() in done["check-text"][1]
    doc = html_path.read_text(encoding="utf-8")
    assert 'class="verdict cannot"' in doc and headline.upper() in doc and doc.count('class="nan"') >= 2
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["verdict"] == "cannot certify" and summary["nonfinite_weights"] == [param]
    assert np.isnan(np.load(out_dir / "analysis.npz")["trace.logits"]).all()
    assert json.loads(done["attribute"][1])["nonfinite_weights"] == [param] and npz.is_file()
    assert json.loads(done["sweep"][1])["nonfinite_weights"] == [param] and csv.is_file()
    for k in ("attribute-text", "ablate"):
        assert done[k][1].rstrip().splitlines()[-1] == f"NaN/Inf: {ck.nonfinite_text}", k


def test_influence_map_of_nan_activations_is_nan_never_zero(checkpoints):
    m = token_influence(checkpoints["overflow"], TEXT[:24])
    assert np.isnan(m.upper_rel)
    assert token_influence(checkpoints["pad"], TEXT[:24]).upper_rel < 1e-5


def upload(at: AppTest, ck) -> None:
    data = open(ck.path, "rb").read()
    at.get("file_uploader")[0].set_value((ck.name, data, "application/octet-stream"))
    at.run()
    assert not at.exception, at.exception


PAGES = ("pages/1_overview.py", "pages/2_spectral_filters.py", "pages/3_modrelu_gates.py", "pages/4_causal_trick.py",
         "pages/5_parseval_energy.py", "pages/6_token_influence.py", "pages/7_compare.py", "pages/8_interventions.py")


def test_every_page_says_in_one_line_that_the_weights_hold_nan(checkpoints):
    ck = checkpoints["nan-weights"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.text_area("text_box").input(TEXT).run()
    upload(at, ck)
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])  # a finding, never an app error
        grey = [m.value for m in in_order(at.main, ("markdown",)) if m.value.startswith(":gray-background[")]
        notes = [v for v in grey if "NaN/Inf weights" in v]
        assert len(notes) == 1 and "\n" not in notes[0], (page, grey)
        assert "blocks\\.1\\.mixer\\.w\\_v\\.weight" in notes[0] and "cannot be certified" in notes[0], notes
        if page in ("pages/1_overview.py", "pages/4_causal_trick.py", "pages/7_compare.py"):
            assert any("Cannot certify\\: NaN/Inf from the weights of block 1" in v for v in grey), (page, grey)
            assert verdicts(at).count("gray") >= 2  # the note and the certificate


@pytest.mark.parametrize("which,colour", [("overflow", "gray"), ("circular-small-logits", "red")])
def test_pages_show_the_certificate_in_its_colour(checkpoints, which, colour):
    ck = checkpoints[which]
    cert = causality_report(load_checkpoint(ck.path, device="cpu"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.text_area("text_box").input(TEXT).run()
    upload(at, ck)
    for page, n in (("pages/1_overview.py", 1), ("pages/4_causal_trick.py", 1), ("pages/7_compare.py", 2)):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        shown = verdicts(at)
        assert shown[0] == colour, (page, shown)  # the uploaded checkpoint is A (or the page's only one)
        assert len([c for c in shown if c in ("green", "red", "gray")]) >= n
        lines = [m.value for m in in_order(at.main, ("markdown",)) if m.value.startswith(f":{colour}-background")]
        if which == "overflow":
            assert any("Cannot certify" in v and "block 1" in v for v in lines), (page, lines)
        else:
            assert any(f"up to {cert.model_leak:.3g} " in v for v in lines), (page, lines)
