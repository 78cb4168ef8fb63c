"""What a hostile or careless user did to the command line in review, each now a test."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime

import pytest

from opencem.cli.output import EXIT_BUSY, EXIT_ERROR, EXIT_NOTHING_LOADED, EXIT_OK
from opencem.lake import MANIFEST, Lake
from opencem.workspace import Workspace
from tests.cli.conftest import cli

EVENTS = "subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\nS2,2026-11-02T11:00:00Z,voluntary\n"


def said(out) -> str:
    return " ".join(out.stderr.split())


@pytest.mark.parametrize("query", [
    "EXPLAIN ANALYZE COPY (SELECT 'x' AS hacked) TO '{lake}/_manifest.json' (FORMAT csv)",
    "explain analyze CREATE TABLE t AS SELECT 1",
    "/* hidden */ EXPLAIN   ANALYSE COPY cells TO '{lake}/x.csv'",
])
def test_sql_cannot_write_through_explain_analyze(loaded, query):
    manifest = (loaded.root / "lake" / MANIFEST).read_bytes()
    out = cli("sql", query.format(lake=loaded.root / "lake"), ws=loaded)
    assert out.exit_code == EXIT_ERROR and "only read-only queries are allowed here" in said(out)
    assert (loaded.root / "lake" / MANIFEST).read_bytes() == manifest
    assert not (loaded.root / "lake" / "x.csv").exists()


def test_sql_explain_of_a_query_still_works(loaded):
    for query in ("EXPLAIN SELECT count(*) FROM cells", "EXPLAIN ANALYZE SELECT count(*) FROM cells"):
        assert cli("sql", query, ws=loaded).exit_code == EXIT_OK, query


def test_simulate_never_replaces_a_folder_holding_a_workspace(tmp_path, sim_dir):
    outer = tmp_path / "sim2"
    assert cli("simulate", "--subscribers", "100", "--days", "1", "--out", outer).exit_code == 0
    ws = Workspace(outer / "ws")
    assert cli("ingest", outer / "tables" / "cells.parquet", ws=ws).exit_code == 0
    for extra in ([], ["--force"]):
        out = cli("simulate", "--subscribers", "100", "--days", "1", "--out", outer, *extra)
        assert out.exit_code == EXIT_ERROR and "holds an opencem lake" in said(out)
        assert ws.exists


def test_the_folder_holding_the_home_folder_is_protected(tmp_path, monkeypatch):
    homes = tmp_path / "home"
    (homes / "me").mkdir(parents=True)
    (homes / "someone-else").mkdir()
    (homes / "someone-else" / "mail").write_text("private")
    monkeypatch.setenv("HOME", str(homes / "me"))
    out = cli("simulate", "--subscribers", "100", "--out", homes, "--force")
    assert out.exit_code == EXIT_ERROR and (homes / "someone-else" / "mail").exists()


def test_a_workspace_inside_the_landing_folder_is_not_read_as_input(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "churn_events.csv").write_text(EVENTS)
    (landing / "mystery.csv").write_text("x\n")  # rejected: a copy goes to the workspace's rejected/
    ws = Workspace(landing / "ws")
    for _ in range(3):  # a cron job, run after run
        out = cli("ingest", landing, "--format", "json", ws=ws)
        names = sorted(os.path.basename(r["source_path"]) for r in json.loads(out.stdout))
        assert names == ["churn_events.csv", "mystery.csv"], names
    assert len(list((ws.root / "rejected").rglob("*.csv"))) == 3  # one copy per run, never of the lake


def test_a_redelivery_whose_every_row_is_quarantined_keeps_the_good_rows(tmp_path):
    ws = Workspace(tmp_path / "ws")
    path = tmp_path / "churn_events.csv"
    path.write_text(EVENTS)
    assert cli("ingest", path, ws=ws).exit_code == EXIT_OK
    path.write_text("subscriber_id,churned_at,churn_type\n,2026-11-02T10:00:00Z,voluntary\n,yesterday,x\n")
    out = cli("ingest", path, ws=ws)
    assert out.exit_code == EXIT_NOTHING_LOADED
    assert Lake(ws.root / "lake").rows("churn_events") == 2 and Lake(ws.root / "lake").rows("quarantine") == 2
    again = cli("ingest", path, ws=ws)  # the same bad content again: known, not quarantined twice
    assert "1 already loaded" in again.output and Lake(ws.root / "lake").rows("quarantine") == 2


@pytest.mark.parametrize("args", [["tables", "--output", "/nonexistent/dir/t.csv", "--format", "csv"],
                                  ["tables", "--output", "{tmp}"],
                                  ["sql", "SELECT 1", "--format", "json", "--output", "/nonexistent/x.json"]])
def test_an_output_file_that_cannot_be_written_is_one_sentence(loaded, tmp_path, args):
    out = cli(*[a.format(tmp=tmp_path) for a in args], ws=loaded)
    assert out.exit_code == EXIT_ERROR and "cannot write" in said(out)


def test_a_manifest_json_that_is_not_the_simulators_is_just_a_file(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "churn_events.csv").write_text(EVENTS)
    ws = Workspace(tmp_path / "ws")
    for text in ("{not json", "[1, 2]", '{"config": {"start_date": "yesterday"}}'):
        (folder / "manifest.json").write_text(text)
        out = cli("ingest", folder, ws=ws)
        assert out.exit_code in (EXIT_OK, 3) and "Traceback" not in out.output, text


def test_a_fifo_is_rejected_not_waited_on(tmp_path):
    fifo = tmp_path / "xdr_voice.csv"
    os.mkfifo(fifo)
    out = cli("ingest", fifo, ws=Workspace(tmp_path / "ws"))
    assert out.exit_code == EXIT_NOTHING_LOADED and "not a regular file" in said(out)


def test_an_unknown_vendor_or_a_broken_workspace_dictionary_is_bad_input(tmp_path):
    ws = Workspace(tmp_path / "ws")
    pm = tmp_path / "A.xml"
    pm.write_text("<measCollecFile/>")
    out = cli("ingest", pm, "--vendor", "nokiax", ws=ws)
    assert out.exit_code == EXIT_ERROR and "--vendor 'nokiax': no such counter dictionary" in said(out)
    (ws.root / "dictionaries").mkdir(parents=True)
    (ws.root / "dictionaries" / "zz.yaml").write_text("vendor: zz\nformat: xml_32435\ncountres: {}\n")
    out = cli("ingest", pm, ws=ws)
    assert out.exit_code == EXIT_ERROR and "zz.yaml" in said(out) and not (ws.root / "rejected").exists()


def test_two_rejected_files_of_one_name_keep_both_copies(tmp_path):
    for sub in ("d1", "d2"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "mystery.csv").write_text(f"from {sub}\n")
    ws = Workspace(tmp_path / "ws")
    assert cli("ingest", tmp_path / "in", ws=ws).exit_code == EXIT_NOTHING_LOADED
    copies = sorted(p.read_text() for p in (ws.root / "rejected").rglob("mystery*.csv"))
    assert copies == ["from d1\n", "from d2\n"]


def test_a_damaged_manifest_is_one_sentence_everywhere(tmp_path, lake):
    import shutil

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    (ws.root / "lake" / MANIFEST).write_text("x,y\nhacked\n")
    for args in (["tables"], ["sql", "SELECT 1"], ["ingest", "--report"], ["evaluate"]):
        out = cli(*args, ws=ws)
        assert out.exit_code == EXIT_ERROR and "the lake is damaged: its manifest" in said(out), args


def test_a_busy_lake_has_its_own_exit_code(tmp_path):
    ws = Workspace(tmp_path / "ws")
    path = tmp_path / "churn_events.csv"
    path.write_text(EVENTS)
    with Lake(ws.root / "lake").transaction():  # another writer holds the lock
        out = cli("ingest", path, ws=ws)
    assert out.exit_code == EXIT_BUSY and "another opencem process is writing" in said(out)
    assert cli("ingest", path, ws=ws).exit_code == EXIT_OK  # the retry a scheduler makes


def test_a_file_as_the_workspace_is_one_sentence(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    out = cli("tables", ws=Workspace(path))
    assert out.exit_code == EXIT_ERROR and "is a file, not a folder" in said(out)


def test_a_reader_that_leaves_early_is_not_an_error(loaded):
    for fmt in ("table", "jsonl"):
        proc = subprocess.run(f"{sys.executable} -m opencem -w {loaded.root} sql 'SELECT * FROM xdr_data' "
                              f"--limit 20000 -f {fmt} | head -1", shell=True, capture_output=True, text=True,
                              executable="/bin/bash")
        assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr


def test_machine_formats_agree_on_float32_times_and_intervals(loaded):
    query = ("SELECT raised_at, cleared_at - raised_at AS lasted, 29.85::FLOAT AS x FROM alarms "
             "WHERE cleared_at IS NOT NULL ORDER BY alarm_id LIMIT 3")
    rows_csv = list(csv.DictReader(io.StringIO(cli("sql", query, "-f", "csv", ws=loaded).stdout)))
    rows_json = json.loads(cli("sql", query, "-f", "json", ws=loaded).stdout)
    assert rows_json and len(rows_csv) == len(rows_json)
    for c, j in zip(rows_csv, rows_json):
        assert float(c["x"]) == j["x"] == 29.850000381469727
        assert c["lasted"] == j["lasted"] and c["lasted"].startswith("PT") and c["lasted"].endswith("S")
        assert "T" in c["raised_at"] and c["raised_at"].endswith("Z")  # ISO 8601 in both
        assert datetime.fromisoformat(c["raised_at"]) == datetime.fromisoformat(j["raised_at"])


def test_repeated_column_names_are_refused_in_machine_formats(loaded):
    out = cli("sql", "SELECT 1 AS a, 2 AS a", "--format", "json", ws=loaded)
    assert out.exit_code == EXIT_ERROR and "more than one column named a" in said(out)


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_empty_workspace_option_is_refused_not_taken_as_the_current_folder(tmp_path, where, monkeypatch):
    """``-w "$WS"`` with WS unset would have made the folder the command runs in the workspace."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    args = ["-w", "", "demo", "--force"] if where == "before" else ["demo", "--force", "-w", ""]
    out = cli(*args)
    assert out.exit_code == EXIT_ERROR and "'--workspace' / '-w'" in said(out) and "is empty" in said(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
