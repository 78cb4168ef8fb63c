"""Exit codes a scheduler can act on: 0 done, 1 a check found problems, 2 bad input, 3 partly
loaded, 4 nothing loaded. Each code is produced for real, and the lake says what happened."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from opencem.cli.output import EXIT_ERROR, EXIT_NOTHING_LOADED, EXIT_OK, EXIT_PARTIAL, EXIT_PROBLEMS
from opencem.lake import Lake
from opencem.workspace import Workspace
from tests.cli.conftest import cli
from tests.indicators.test_definitions import FIXTURES

HEADER = "subscriber_id,churned_at,churn_type,stated_reason\n"
GOOD = HEADER + "S1,2026-11-02T10:00:00Z,voluntary,price\nS2,2026-11-02T11:00:00Z,voluntary,network\n"
# One row with a time that is no time: quarantined, the other loads.
HALF = HEADER + "S3,2026-11-02T10:00:00Z,voluntary,price\nS4,yesterday,voluntary,price\n"
ALL_BAD = HEADER + "S5,not a time,voluntary,price\n,2026-11-02T10:00:00Z,voluntary,price\n"


def landing(tmp_path, **files: str):
    folder = tmp_path / "landing"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def rows(ws: Workspace, table: str) -> int:
    return Lake(ws.root / "lake").rows(table) if ws.exists else 0


def test_everything_loaded_is_0_and_loading_it_again_is_0(tmp_path):
    ws = Workspace(tmp_path / "ws")
    folder = landing(tmp_path, **{"churn_events.csv": GOOD})
    assert cli("ingest", folder, ws=ws).exit_code == EXIT_OK
    again = cli("ingest", folder, ws=ws)
    assert again.exit_code == EXIT_OK and "1 already loaded" in again.output
    assert rows(ws, "churn_events") == 2


def test_a_rejected_file_beside_good_ones_is_3_and_the_good_ones_commit(tmp_path):
    ws = Workspace(tmp_path / "ws")
    folder = landing(tmp_path, **{"churn_events.csv": GOOD, "mystery.csv": "a,b\n1,2\n"})
    out = cli("ingest", folder, ws=ws)
    assert out.exit_code == EXIT_PARTIAL, out.output
    assert "rejected:" in out.stderr and "mystery.csv" in out.stderr
    assert rows(ws, "churn_events") == 2


def test_quarantined_rows_are_3_and_counted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = cli("ingest", landing(tmp_path, **{"churn_events.csv": HALF}), ws=ws)
    assert out.exit_code == EXIT_PARTIAL and "1 row quarantined" in out.output
    assert rows(ws, "churn_events") == 1 and rows(ws, "quarantine") == 1


def test_nothing_loaded_is_4(tmp_path):
    ws = Workspace(tmp_path / "ws")
    only_bad = landing(tmp_path, **{"mystery.csv": "a,b\n1,2\n"})
    assert cli("ingest", only_bad, ws=ws).exit_code == EXIT_NOTHING_LOADED
    every_row_bad = tmp_path / "churn_events.csv"
    every_row_bad.write_text(ALL_BAD)
    out = cli("ingest", every_row_bad, ws=ws)
    assert out.exit_code == EXIT_NOTHING_LOADED, out.output
    assert rows(ws, "churn_events") == 0 and rows(ws, "quarantine") == 2  # nothing lost: all quarantined


def test_bad_input_is_2_with_one_sentence(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for args, said in [(["ingest", tmp_path / "nope.csv"], "no such file or folder"),
                       (["ingest"], "give at least one file or folder"),
                       (["ingest", tmp_path, "--mapping", tmp_path / "missing.yaml"], "cannot be read"),
                       (["ingest", tmp_path, "--as-of", "31/01/2026"], "--as-of '31/01/2026' is not a date"),
                       (["ingest", tmp_path, "--bogus"], "No such option: --bogus")]:
        out = cli(*args, ws=ws)
        assert out.exit_code == EXIT_ERROR, (args, out.output)
        assert said in " ".join(out.stderr.split()) and "Traceback" not in out.output, args


def test_a_check_that_finds_problems_is_1(loaded):
    out = cli("kpi", "check", FIXTURES / "typos.bad.yaml", ws=loaded)
    assert out.exit_code == EXIT_PROBLEMS and "error:" in out.stderr


@pytest.mark.parametrize("files, code", [({"churn_events.csv": GOOD}, EXIT_OK),
                                         ({"churn_events.csv": HALF}, EXIT_PARTIAL),
                                         ({"mystery.csv": "x\n"}, EXIT_NOTHING_LOADED)])
def test_dry_run_gives_the_code_a_load_would_and_commits_nothing(tmp_path, files, code):
    ws = Workspace(tmp_path / "ws")
    folder = landing(tmp_path, **files)
    out = cli("ingest", folder, "--dry-run", "--format", "json", ws=ws)
    assert out.exit_code == code, out.output
    assert not ws.exists and not (ws.root / "rejected").exists()  # not even a lake folder
    report = json.loads(out.stdout)
    assert report["files"] and all(r["dry_run"] for r in report["files"])
    assert cli("ingest", folder, ws=ws).exit_code == code  # the real load agrees


def test_dry_run_shows_why_and_where_rows_would_be_quarantined(tmp_path, loaded):
    bad = tmp_path / "churn_events.csv"
    bad.write_text(HALF)
    before = loaded.lake.manifest().version
    out = cli("ingest", bad, "--dry-run", ws=loaded)
    assert out.exit_code == EXIT_PARTIAL
    text = " ".join(out.stderr.split())
    assert "Would be quarantined" in text and "churned_at" in text and "yesterday" in text
    assert "First bad rows" in text and " 3 " in text  # line 3 of the file
    assert loaded.lake.manifest().version == before


def test_dry_run_of_a_bad_mapping_is_2_before_reading_anything(tmp_path, loaded):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("source: {format: csv}\ntargets:\n  - table: churn_evnts\n    columns: {}\n")
    out = cli("ingest", tmp_path, "--mapping", mapping, "--dry-run", ws=loaded)
    assert out.exit_code == EXIT_ERROR and "did you mean 'churn_events'" in out.stderr


def test_exit_codes_reach_the_shell(tmp_path):
    (tmp_path / "mystery.csv").write_text("x\n")
    proc = subprocess.run([sys.executable, "-m", "opencem", "ingest", str(tmp_path / "mystery.csv"),
                           "--workspace", str(tmp_path / "ws")], capture_output=True, text=True)
    assert proc.returncode == EXIT_NOTHING_LOADED and "Traceback" not in proc.stderr


def test_dry_run_in_machine_formats_gives_the_quarantine_reasons_and_first_bad_rows(tmp_path, loaded):
    bad = tmp_path / "churn_events.csv"
    bad.write_text(HALF)
    out = cli("ingest", bad, "--dry-run", "--format", "json", ws=loaded)
    assert out.exit_code == EXIT_PARTIAL, out.output
    found = json.loads(out.stdout)
    assert list(found) == ["files", "would_quarantine", "first_bad_rows"]
    (file,) = found["files"]
    assert file["rows_quarantined"] == 1 and file["source_path"] == str(bad)
    assert found["would_quarantine"] == [{"table": "churn_events", "field": "churned_at",
                                          "reason": "'yesterday' is not an ISO 8601 time", "rows": 1}]
    assert found["first_bad_rows"] == [{"file": str(bad), "row": 3, "field": "churned_at", "value": "yesterday",
                                        "reason": "'yesterday' is not an ISO 8601 time"}]
    lines = [json.loads(x) for x in cli("ingest", bad, "--dry-run", "-f", "jsonl", ws=loaded).stdout.splitlines()]
    assert [x["section"] for x in lines] == ["files", "would_quarantine", "first_bad_rows"]
    assert lines[2]["value"] == "yesterday"
    assert "pick one with --section" in cli("ingest", bad, "--dry-run", "-f", "csv", ws=loaded).stderr
    rows = cli("ingest", bad, "--dry-run", "-f", "csv", "--section", "would_quarantine", ws=loaded).stdout
    assert list(csv.DictReader(io.StringIO(rows))) == [
        {"table": "churn_events", "field": "churned_at", "reason": "'yesterday' is not an ISO 8601 time", "rows": "1"}]


def test_dry_run_gives_the_first_ten_bad_rows_unless_limit_says_otherwise(tmp_path, loaded):
    bad = tmp_path / "churn_events.csv"
    bad.write_text(GOOD + "".join(f"S{i},yesterday,voluntary,price\n" for i in range(12)))
    first = json.loads(cli("ingest", bad, "--dry-run", "-f", "json", ws=loaded).stdout)
    assert [r["row"] for r in first["first_bad_rows"]] == list(range(4, 14))  # after the header and two good lines
    assert first["would_quarantine"][0]["rows"] == 12
    every = json.loads(cli("ingest", bad, "--dry-run", "-f", "json", "--limit", "0", ws=loaded).stdout)
    assert [r["row"] for r in every["first_bad_rows"]] == list(range(4, 16))


def test_dry_run_tables_right_align_their_counts(tmp_path, loaded):
    bad = tmp_path / "churn_events.csv"
    bad.write_text(HALF)
    err = cli("ingest", bad, "--dry-run", ws=loaded).stderr
    assert "│    1 │" in err  # rows: 1 under a four-letter header, on the right
    assert "│   3 │" in err  # row: line 3
