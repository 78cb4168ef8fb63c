"""``opencem qoe`` as a user meets it: the model's numbers, one-sentence errors, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

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
    out = run("web", "--fastest-ms", "3000", "--slowest-ms", "1000")
    assert out.exit_code == 2 and "--fastest-ms (3000) must be above 0 and below --slowest-ms (1000)" in flat(out.output)


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


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "qoe" / "video-session.json"


def test_video_prints_a_summary_for_people_and_everything_with_json():
    from opencem.indicators.qoe.p1203 import evaluate_session

    want = evaluate_session(json.loads(EXAMPLE.read_text()))
    out = run("video", "--input", str(EXAMPLE), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == json.loads(json.dumps(want))
    table = run("video", "--input", str(EXAMPLE))
    text = flat(table.stdout)
    assert f"Session MOS (O.46) │ {want['mos']:.2f}" in text
    assert f"{min(want['per_second']):.2f} to {max(want['per_second']):.2f}" in text
    assert f"Stalls (initial loading included) │ {want['num_stalls']}" in text
    notes = flat(table.stderr)
    assert all(f"assumed: {flat(n)}" in notes for n in want["assumptions"])


def test_video_bad_session_is_one_sentence_naming_the_file(tmp_path):
    session = tmp_path / "session.json"
    session.write_text(json.dumps({"I13": {"segments": []}}))
    out = run("video", "--input", str(session))
    assert out.exit_code == 2 and f"{session}: I13.segments must be a non-empty list" in flat(out.output)


def test_video_with_the_real_model_refuses_an_empty_session(tmp_path):
    pytest.importorskip("opencem.indicators.qoe.p1203")
    session = tmp_path / "empty.json"
    session.write_text("{}")
    out = run("video", "--input", str(session))
    assert out.exit_code == 2 and str(session) in flat(out.output)
    assert "Traceback" not in out.output


def test_voice_takes_the_echo_paths_and_every_g107_parameter():
    import math

    out = run("voice", "--codec", "G.711", "--one-way-delay-ms", "0", "--listener-echo-ms", "300",
              "--talker-echo-ms", "0", "--param", "wepl=100", "--param", "TELR=60", "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["listener_echo_ms"] == 300 and got["parameters"] == {"WEPL": 100.0, "TELR": 60.0}
    # G.107 (7-24): Idle = (Ro - Rle)/2 + sqrt((Ro - Rle)^2/4 + 169), Rle = 10.5 (WEPL + 7)(Tr + 1)^-0.25.
    ro = got["components"]["Ro"]
    rle = 10.5 * (100 + 7) * (300 + 1) ** -0.25
    assert got["components"]["Idle"] == pytest.approx((ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169), rel=1e-12)
    same = emodel(0.0, 0.0, "G.711", Tr=300.0, T=0.0, WEPL=100.0, TELR=60.0)
    assert got["mos"] == pytest.approx(float(same["mos"]), rel=1e-12)
    assert got["assumptions"] == []  # both echo paths given, G.711: nothing assumed


@pytest.mark.parametrize("args, sentence", [
    (["--param", "FOO=1"], "--param: unknown E-model parameter FOO"),
    (["--param", "WEPL"], "--param 'WEPL' must be NAME=NUMBER"),
    (["--param", "WEPL=inf"], "--param 'WEPL=inf' must be NAME=NUMBER"),
])
def test_bad_g107_parameters_are_one_sentence(args, sentence):
    out = run("voice", *args)
    assert out.exit_code == 2 and sentence in flat(out.output)


def test_evs_states_its_assumed_impairments():
    out = run("voice", "--codec", "evs", "--json")
    notes = json.loads(out.output)["assumptions"]
    assert any("EVS: G.113 publishes no Ie,WB or Bpl,WB for EVS-WB; scored with AMR-WB 12.65's Ie,WB 13 and Bpl 4.3" in n
               for n in notes)


def test_web_uses_ms_for_every_option_and_refuses_negative_times():
    out = run("web", "--page-load-ms", "2500", "--fastest-ms", "1000", "--slowest-ms", "20000", "--json")
    assert json.loads(out.output)["mos"] == pytest.approx(web_mos(2500, 1.0, 20.0))
    for args in (["--page-load-ms", "-5"], ["--fastest-ms", "-1"], ["--fastest-ms", "0"],
                 ["--fastest-ms", "3000", "--slowest-ms", "2000"]):
        bad = run("web", *args)
        assert bad.exit_code == 2 and "Traceback" not in bad.output, args
