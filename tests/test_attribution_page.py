"""The token influence page's Methods section under AppTest with every shipped checkpoint: a strip
per method over the text, the deletion/insertion curves of all methods on one plot, the AOPC and
rank-correlation tables, downloads of every array; the method and baseline choices change what is
computed. The numbers shown are the library's (tests/test_attribution.py checks those)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from caracal_viz import attribution
from tests.conftest import ROOT, SAMPLE_NAMES, load_sample

PAGE = "pages/6_token_influence.py"
TEXT = "abcabcabcabc qwertyuiqwertyui"
TIMEOUT_S = 300


def open_page(sample: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    at.session_state["ck_select"] = sample
    at.session_state["text_box"] = TEXT
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # a first visit computes no method: the section waits for its button
    assert not [s for s in charts(at) if ": prediction after position" in title(s)] and not at.dataframe
    at.button("ti_methods_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def title(spec: dict) -> str:
    return spec["layout"]["title"]["text"]


def section(at: AppTest) -> tuple[list[dict], dict]:
    specs = charts(at)
    strips = [s for s in specs if ": prediction after position" in title(s)]
    curves = next(s for s in specs if title(s) == "Deletion and insertion curves")
    return strips, curves


@pytest.mark.parametrize("sample", SAMPLE_NAMES)
def test_methods_section_with_every_sample(sample):
    at = open_page(sample)
    assert "Methods" in [s.value for s in at.subheader]
    position = at.session_state["ti_pos"]
    expected = [m for m in attribution.METHODS if m != "linear_path" or load_sample(sample).config.layer_kind(0) == "mhf"]
    strips, curves = section(at)
    names = [attribution.METHOD_NAMES[m].capitalize() for m in expected]
    assert [title(s).split(":")[0] for s in strips] == names
    assert all(f"after position {position}" in title(s) for s in strips)
    # one deletion and one insertion trace per method and for the random order, on one plot
    traces = [(t["name"], t["line"]["dash"]) for t in curves["data"]]
    assert traces == [(attribution.METHOD_NAMES[m], dash) for m in [*expected, "random"] for dash in ("solid", "dash")]
    aopc, corr = at.dataframe
    rows = aopc.value
    assert list(rows["method"]) == [attribution.METHOD_NAMES[m] for m in [*expected, "random"]]
    rep = attribution.attribute(load_sample(sample), TEXT, position, tuple(expected))
    np.testing.assert_allclose(rows["deletion AOPC (nats)"], [rep.aopc_deletion[m] for m in [*expected, "random"]],
                               atol=1e-6)
    assert corr.value.shape == (len(expected), len(expected) + 1)
    subtitles = [s["layout"]["title"]["subtitle"]["text"].replace("<br>", " ") for s in strips]  # wrapped lines
    if sample == "caracal-circular-leaky" or sample == "fftnet-shakespeare":
        assert all("READS THE FUTURE" in s for s in subtitles)
    else:
        assert not any("READS THE FUTURE" in s for s in subtitles) and all(", rounding" in s for s in subtitles)
    labels = {b.label for b in at.get("download_button")}
    assert {"All attribution arrays (NPZ)", "Scores (CSV)", "Curves (CSV)"} <= labels
    if "linear_path" not in expected:
        assert any("No linear path" in c.value for c in at.caption)


def test_choosing_methods_and_the_baseline_byte():
    at = open_page("caracal-periodic")
    at.multiselect(key="ti_methods").set_value(["occlusion", "grad_norm"]).run()
    assert not at.exception and not at.error
    strips, curves = section(at)
    assert [title(s).split(":")[0] for s in strips] == ["Gradient norm", "Occlusion"]
    assert len(curves["data"]) == 6  # two methods and the random order, two curves each
    before = at.dataframe[0].value["deletion AOPC (nats)"].tolist()
    at.selectbox(key="ti_baseline").set_value(0x00).run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["deletion AOPC (nats)"].tolist() != before
    assert "baseline byte value 0x00" in section(at)[1]["layout"]["title"]["subtitle"]["text"].replace("<br>", " ")
    at.multiselect(key="ti_methods").set_value([]).run()
    assert any("Choose at least one method" in i.value for i in at.info)
    assert not [s for s in charts(at) if ": prediction after position" in title(s)]
