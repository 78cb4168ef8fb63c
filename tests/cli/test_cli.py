"""The opencem command as a user meets it: clear output, one-sentence errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from opencem.cli.main import app

runner = CliRunner()


def run(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_simulate_ingest_sql_round_trip(tmp_path):
    ws, sim = tmp_path / "ws", tmp_path / "sim"
    out = run("simulate", "--subscribers", "800", "--days", "1", "--out", str(sim))
    assert out.exit_code == 0, out.output
    assert "xdr_voice" in out.output and "records/s" in out.output
    out = run("--workspace", str(ws), "ingest", str(sim))
    assert out.exit_code == 0, out.output
    assert "0 rejected" in out.output
    out = run("-w", str(ws), "sql", "SELECT count(*) AS n FROM subscribers", "--format", "json")
    assert json.loads(out.output) == [{"n": 800}]
    # The workspace can come from the environment too.
    out = run("sql", "SELECT count(*) AS n FROM subscribers", "--format", "csv",
              env={"OPENCEM_WORKSPACE": str(ws)})
    assert out.output.splitlines() == ["n", "800"]
    out = run("-w", str(ws), "ingest", "--report")
    assert "xdr_voice" in out.output and "loaded" in out.output
    again = run("-w", str(ws), "ingest", str(sim))
    assert "0 files loaded" in again.output and "0 rows" in again.output
    out = run("-w", str(ws), "tables")
    assert "800" in out.output


@pytest.mark.parametrize("args, message", [
    (["sql", "DROP TABLE cells"], "only read-only queries are allowed here, not DROP"),
    (["ingest", "/nonexistent/file.parquet"], "/nonexistent/file.parquet: no such file or folder"),
    (["simulate", "--subscribers", "5"], "subscribers: Input should be greater than or equal to 100"),
    (["simulate", "--start-date", "yesterday"], "--start-date 'yesterday' is not a date"),
    (["sql", "SELECT 1", "--format", "xml"], "'xml' is not one of 'table', 'csv',"),
    (["schema", "nope"], "unknown table 'nope'"),
])
def test_bad_input_gives_one_sentence_and_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "opencem", "-w", str(tmp_path), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert message in text
    assert "Traceback" not in proc.stderr + proc.stdout


def test_schema_command_lists_columns_with_units():
    out = run("schema", "xdr_voice")
    assert "one_way_delay_ms" in out.output and "ms" in out.output


def test_ibm_telco_churn_imports_through_the_shipped_mapping(tmp_path):
    from tests.conftest import PROJECT, external

    csv = external("ibm-telco-churn", "Telco-Customer-Churn.csv")
    out = run("-w", str(tmp_path), "ingest", str(csv), "--mapping",
              str(PROJECT / "examples" / "ibm-telco" / "mapping.yaml"), "--as-of", "2024-01-31")
    assert out.exit_code == 0, out.output
    assert "0 rejected" in out.output and "0 rows quarantined" in out.output
    counts = run("-w", str(tmp_path), "sql", "SELECT (SELECT count(*) FROM subscribers) AS s, "
                 "(SELECT count(*) FROM churn_events) AS c, (SELECT min(churned_at)::DATE::VARCHAR "
                 "FROM churn_events) AS d", "--format", "json")
    assert json.loads(counts.output) == [{"s": 7043, "c": 1869, "d": "2024-01-31"}]


def test_demo_runs_end_to_end_and_puts_faults_beside_the_worst_cells(tmp_path):
    ws = tmp_path / "ws"
    out = run("--workspace", str(ws), "demo", "--subscribers", "3000", "--days", "1")
    assert out.exit_code == 0, out.output
    for step in ("1. simulate", "2. ingest", "3. a first look", "4. evaluate", "Worst cell-days",
                 "Customer experience by segment"):
        assert step in out.output
    from opencem.cli.demo import invoked_as

    assert f"Try: {invoked_as()} kpi preview call_drop_pct" in out.output  # as run, not a fixed .venv path
    # What the table shows, read back from the lake and the truth area: the worst cell-day by
    # CEI sits in a fault.
    from opencem.simulate.truth import query_truth
    from opencem.workspace import Workspace

    worst = query_truth(Workspace(ws).lake, ws / "truth", """
        SELECT c.cell_id, c.cei, count(g.fault_type) AS faults
        FROM (SELECT * FROM cube_cell_day WHERE cei IS NOT NULL ORDER BY cei LIMIT 1) c
        JOIN cells k ON k.cell_id = c.cell_id
        LEFT JOIN truth.faults g ON g.location_id IN (k.cell_id, k.site_id, k.city, k.province)
             AND g.start_time < c.period_start + INTERVAL 1 DAY AND g.end_time > c.period_start
        GROUP BY ALL""")
    row = worst.to_pylist()[0]
    # The demo kept the truth apart: the lake's SQL face cannot see it.
    hidden = run("-w", str(ws), "sql", "SELECT count(*) FROM truth.faults")
    assert hidden.exit_code != 0 and "truth" in hidden.output
    assert row["cei"] < 60 and row["faults"] >= 1, row


def test_an_impossible_injection_names_its_scenario_file(tmp_path):
    scenario = tmp_path / "works.yaml"
    scenario.write_text("subscribers: 500\ndays: 1\ninjections:\n"
                        "  - {fault: cell_outage, location: C99999-1-4G, start: 2026-11-02T10:00, duration_h: 1}\n")
    out = run("simulate", "--scenario", str(scenario), "--out", str(tmp_path / "sim"))
    assert out.exit_code == 2
    assert "Scenario works.yaml, field injections[0].location: no cell 'C99999-1-4G'" in out.output
    assert "Traceback" not in out.output
