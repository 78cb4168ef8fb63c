"""``opencem qoe`` as a user meets it: the model's numbers, one-sentence errors, exit code 2."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from opencem.cli.qoe import app as qoe_app
from opencem.indicators.qoe.emodel import emodel
from opencem.indicators.qoe.web import web_mos

runner = CliRunner()


def run(*args: str):
    return runner.invoke(qoe_app, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


def test_voice_table_shows_r_nb_equivalent_components_and_mos():
    out = run("voice", "--codec", "AMR-WB", "--one-way-delay-ms", "150",
              "--packet-loss-pct", "1", "--burst-ratio", "1")
    assert out.exit_code == 0, out.output
    want = emodel(150.0, 1.0, "AMR-WB")
    text = flat(out.output)
    assert f"R │ {want['r']:.2f}" in text and f"{want['r_nb']:.2f}" in text
    assert "narrowband-equivalent" in text and "0-129 scale" in text
    for key in ("Ro", "Id", "Idte", "Idle", "Idd", "Ie_eff"):
        assert f"{want[key]:.2f}" in text, key
    assert f"MOS │ {want['mos']:.2f}" in text


def test_voice_json_is_the_model_output():
    out = run("voice", "--codec", "g.711", "--one-way-delay-ms", "0", "--packet-loss-pct", "2",
              "--json")
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["codec"] == "G.711" and payload["band"] == "nb"
    assert payload["components"]["Ie_eff"] == pytest.approx(95 * 2 / 27.1)
    assert payload["r"] == pytest.approx(93.206 - 7.011, abs=0.005)
    assert payload["r"] == payload["r_nb"]
    assert payload["mos"] == pytest.approx(emodel(0.0, 2.0, "G.711")["mos"])


def test_narrowband_voice_has_no_equivalent_row():
    out = run("voice", "--codec", "AMR-NB")
    assert out.exit_code == 0 and "narrowband-equivalent" not in out.output


def test_unknown_codec_is_one_sentence_listing_known_codecs():
    out = run("voice", "--codec", "opus")
    assert out.exit_code == 2
    text = flat(out.output)
    assert "error: unknown codec 'opus'; known codecs: G.711," in text and "EVS" in text
    assert "Traceback" not in out.output


def test_out_of_range_loss_is_refused():
    out = run("voice", "--packet-loss-pct", "120")
    assert out.exit_code == 2 and "--packet-loss-pct" in out.output


def test_web():
    out = run("web", "--page-load-ms", "2500")
    assert out.exit_code == 0, out.output
    assert f"MOS {web_mos(2500.0):.2f}" in flat(out.output)
    payload = json.loads(run("web", "--page-load-ms", "800", "--json").output)
    assert payload["mos"] == pytest.approx(web_mos(800.0))
    out = run("web", "--fastest-s", "3", "--slowest-s", "1")
    assert out.exit_code == 2 and "fastest_s < slowest_s" in out.output


def test_video_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    out = run("video", "--input", str(missing))
    assert out.exit_code == 2 and f"{missing}: no such file" in flat(out.output)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = run("video", "--input", str(broken))
    assert out.exit_code == 2
    assert f"{broken} is not valid JSON" in flat(out.output) and "Traceback" not in out.output
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    out = run("video", "--input", str(listing))
    assert out.exit_code == 2 and "must hold a JSON object" in flat(out.output)


@pytest.fixture
def fake_p1203(monkeypatch):
    """A stand-in honouring p1203's contract, so the command's plumbing is tested on its own."""
    module = types.ModuleType("opencem.indicators.qoe.p1203")

    def evaluate_session(session: dict) -> dict:
        if "segments" not in session:
            raise ValueError("the session has no segments")
        return {"per_second": [4.5, 4.25, 3.0], "mos": 3.875, "stalls": 1}

    module.evaluate_session = evaluate_session
    monkeypatch.setitem(sys.modules, "opencem.indicators.qoe.p1203", module)


def test_video_prints_the_model_result_as_json(tmp_path, fake_p1203):
    session = tmp_path / "session.json"
    session.write_text(json.dumps({"segments": []}))
    out = run("video", "--input", str(session), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"per_second": [4.5, 4.25, 3.0], "mos": 3.875, "stalls": 1}
    pretty = run("video", "--input", str(session))
    assert pretty.exit_code == 0 and json.loads(pretty.output)["mos"] == 3.875
    session.write_text("{}")
    out = run("video", "--input", str(session))
    assert out.exit_code == 2 and f"{session}: the session has no segments" in flat(out.output)


def test_video_with_the_real_model_refuses_an_empty_session(tmp_path):
    pytest.importorskip("opencem.indicators.qoe.p1203")
    session = tmp_path / "empty.json"
    session.write_text("{}")
    out = run("video", "--input", str(session))
    assert out.exit_code == 2 and str(session) in flat(out.output)
    assert "Traceback" not in out.output
