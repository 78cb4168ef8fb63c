"""Options as an operator's engineer scripts them, and folders opencem must never destroy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opencem import __version__
from opencem.cli.main import hoist_global_options
from opencem.workspace import Workspace
from tests.cli.conftest import cli


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.docx").write_text("three years of work")
    (path / "notes").mkdir()
    (path / "notes" / "todo.txt").write_text("call the NOC")
    return path


def test_simulate_refuses_a_users_folder_and_leaves_it_as_it_was(tmp_path):
    mine = user_folder(tmp_path / "mine")
    out = cli("simulate", "--subscribers", "100", "--days", "1", "--out", mine)
    assert out.exit_code == 2
    assert "is not empty and was not written by opencem simulate" in " ".join(out.stderr.split())
    assert (mine / "thesis.docx").read_text() == "three years of work"
    assert sorted(p.name for p in mine.rglob("*")) == ["notes", "thesis.docx", "todo.txt"]


def test_simulate_replaces_its_own_output_and_a_forced_folder(tmp_path):
    out_dir = tmp_path / "sim"
    assert cli("simulate", "--subscribers", "100", "--days", "1", "--out", out_dir).exit_code == 0
    (out_dir / "stale.txt").write_text("left from before")
    assert cli("simulate", "--subscribers", "100", "--days", "1", "--out", out_dir).exit_code == 0
    assert not (out_dir / "stale.txt").exists() and (out_dir / "manifest.json").exists()
    forced = user_folder(tmp_path / "scratch")
    assert cli("simulate", "--subscribers", "100", "--days", "1", "--out", forced, "--force").exit_code == 0
    assert not (forced / "thesis.docx").exists() and (forced / "manifest.json").exists()


@pytest.mark.parametrize("target", ["..", ".", "~"])
def test_no_flag_lets_simulate_replace_the_current_folder_its_parents_or_home(tmp_path, target, monkeypatch):
    here = user_folder(tmp_path / "work" / "here")
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path / "work"))
    out = cli("simulate", "--subscribers", "100", "--days", "1", "--out", target, "--force")
    assert out.exit_code == 2 and "will not replace it, even with --force" in " ".join(out.stderr.split())
    assert (here / "thesis.docx").exists() and (tmp_path / "work").is_dir()


def test_simulate_refuses_a_file_as_its_folder(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_text("%PDF")
    out = cli("simulate", "--subscribers", "100", "--out", path, "--force")
    assert out.exit_code == 2 and "is a file, not a folder" in out.stderr and path.read_text() == "%PDF"


def test_an_interrupted_simulation_can_be_redone_in_place(tmp_path):
    from opencem.simulate.run import MARKER

    half = tmp_path / "sim"
    half.mkdir()
    (half / MARKER).write_text("{}")  # what a run writes first; it died before anything else
    (half / "tables").mkdir()
    assert cli("simulate", "--subscribers", "100", "--days", "1", "--out", half).exit_code == 0


def test_global_options_work_after_the_subcommand(loaded):
    before = cli("--workspace", loaded.root, "sql", "SELECT count(*) AS n FROM cells", "--format", "json")
    after = cli("sql", "SELECT count(*) AS n FROM cells", "--format", "json", "--workspace", loaded.root)
    short = cli("sql", "SELECT count(*) AS n FROM cells", "-w", loaded.root, "--format", "json")
    joined = cli("sql", "SELECT count(*) AS n FROM cells", f"--workspace={loaded.root}", "--format", "json")
    assert before.exit_code == after.exit_code == short.exit_code == joined.exit_code == 0
    assert json.loads(before.stdout) == json.loads(after.stdout) == json.loads(short.stdout) \
        == json.loads(joined.stdout) != []


def test_hoisting_stops_at_a_double_dash():
    assert hoist_global_options(["sql", "Q", "-w", "W"]) == ["-w", "W", "sql", "Q"]
    assert hoist_global_options(["sql", "--", "-w"]) == ["sql", "--", "-w"]
    assert hoist_global_options(["kpi", "preview", "cei", "--worst"]) == ["kpi", "preview", "cei", "--worst"]


def test_version_and_completion():
    out = cli("--version")
    assert out.exit_code == 0 and out.stdout.strip() == f"opencem {__version__}"
    help_text = cli("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_flags_read_as_flags_in_help():
    text = cli("evaluate", "--help").stdout
    assert "--full" in text and "<bool>" not in text and "--no-full" not in text


def test_commands_that_read_the_lake_say_when_there_is_none(tmp_path):
    empty = Workspace(tmp_path / "nothing-here")
    for args in (["tables"], ["sql", "SELECT 1"], ["ingest", "--report"], ["evaluate"], ["kpi", "preview", "cei"]):
        out = cli(*args, ws=empty)
        assert out.exit_code == 2, args
        assert f"no opencem workspace in {empty.root}" in " ".join(out.stderr.split()), args
    assert not empty.root.exists()  # looking did not create it


def test_sql_shows_duckdbs_whole_message(loaded):
    out = cli("sql", "SELECT celll FROM cells", ws=loaded)
    assert out.exit_code == 2
    assert 'Referenced column "celll" not found' in out.stderr and "Candidate bindings" in out.stderr
    assert "LINE 1: SELECT celll FROM cells" in out.stderr and "^" in out.stderr


def test_a_missing_spark_extra_is_one_sentence_naming_it(loaded):
    code = ("import sys; sys.modules['pyspark'] = None; from opencem.cli.main import run; "
            f"sys.argv = ['opencem', '-w', {str(loaded.root)!r}, 'kpi', 'preview', 'cei', '--engine', 'spark']; run()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'opencem[spark]'" in proc.stderr and "Traceback" not in proc.stderr


def test_progress_bars_stay_off_stdout_of_a_pipe(tmp_path, sim_dir):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "opencem", "-w", str(tmp_path / "ws"), "ingest",
                           str(sim_dir / "tables" / "cells.parquet"), "--format", "csv"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("source_path,table,status")
    assert "━" not in proc.stdout and "ingesting" not in proc.stdout


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_an_empty_current_folder_is_refused_as_simulate_output_the_first_time_too(tmp_path, force, monkeypatch):
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    out = cli("simulate", "--subscribers", "100", "--days", "1", "--out", ".", *force)
    assert out.exit_code == 2 and "is the current folder" in " ".join(out.stderr.split())
    assert list(here.iterdir()) == []  # not even the marker


@pytest.mark.parametrize("words, offered", [
    ("opencem evaluate --engine ", ["duckdb", "spark"]), ("opencem kpi preview cei --engine s", ["spark"]),
    ("opencem evaluate --grain ", ["1min", "5min", "15min", "hour", "day"]), ("opencem kpi preview cei --grain h", ["hour"]),
    ("opencem ingest --section ", ["summary", "quarantine", "rejected", "files", "would_quarantine", "first_bad_rows"]),
    ("opencem ingest --vendor nok", ["nokia"]), ("opencem cei calibrate --target ", ["nps", "complaints"]),
    ("opencem qoe voice --codec AMR-WB-2", ["AMR-WB-23.85"]), ("opencem tables --format js", ["json", "jsonl"])])
def test_options_that_take_one_of_a_list_complete_their_values(words, offered, tmp_path):
    env = {**os.environ, "_OPENCEM_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
           "OPENCEM_WORKSPACE": str(tmp_path / "ws")}
    proc = subprocess.run([sys.executable, "-m", "opencem"], env=env, capture_output=True, text=True)
    assert proc.stdout.split() == offered, proc.stderr


def test_the_demo_hint_names_the_command_as_it_was_run(tmp_path, monkeypatch):
    from opencem.cli.demo import invoked_as

    on_path = tmp_path / "bin" / "opencem"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert invoked_as(str(on_path)) == "opencem"
    elsewhere = tmp_path / "venv dir" / "opencem"
    assert invoked_as(str(elsewhere)) == f"'{elsewhere}'"  # not on PATH: the path typed, quoted for a shell
    assert invoked_as("/src/opencem/__main__.py").endswith(" -m opencem")
