"""Every listing command in every output format, parsed back: the same rows in each, values
exact in machine formats and rounded for people in tables, nothing clipped off a terminal."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from datetime import datetime

import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import query_lake
from opencem.workspace import Workspace
from tests.cli.conftest import cli

MACHINE = ("csv", "json", "jsonl", "parquet")


def parse(fmt: str, stdout: str, path=None) -> list[dict]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(stdout)))
    if fmt == "json":
        return json.loads(stdout)
    if fmt == "jsonl":
        return [json.loads(line) for line in stdout.splitlines()]
    return pq.read_table(path).to_pylist()


def norm(value):
    """One comparable form for a value however a format wrote it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or value in ("true", "false"):
        return value in (True, "true")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace(" ", "T")).timestamp()
    except ValueError:
        return value


def rows_in(fmt: str, args: list[str], ws, tmp_path) -> list[dict]:
    path = tmp_path / f"out.{fmt}"
    extra = ["--output", str(path)] if fmt == "parquet" else []
    out = cli(*args, "--format", fmt, *extra, ws=ws)
    assert out.exit_code == 0, out.output
    rows = parse(fmt, out.stdout, path)
    return [{k: norm(v) for k, v in r.items()} for r in rows]


LISTINGS = {
    "tables": ["tables"],
    "schema": ["schema", "xdr_voice"],
    "schema of a cube": ["schema", "cube_segment_day"],
    "kpi list": ["kpi", "list"],
    "kpi preview": ["kpi", "preview", "call_drop_pct", "--by", "segment"],
    "sql": ["sql", "SELECT cell_id, technology, lat, avg(1.0) AS one FROM cells GROUP BY ALL ORDER BY cell_id"],
    "ingest --report summary": ["ingest", "--report", "--section", "summary"],
    "evaluate": ["evaluate", "--cube", "cube_segment_day"],
}


@pytest.mark.parametrize("name", LISTINGS)
def test_every_machine_format_gives_the_same_rows(name, evaluated, tmp_path):
    args = LISTINGS[name]
    seen = {fmt: rows_in(fmt, args, evaluated, tmp_path) for fmt in MACHINE}
    reference = seen["json"]
    assert reference, f"{name} gave no rows"
    for fmt, rows in seen.items():
        if name == "evaluate":  # a second run finds every day unchanged, and times differ
            rows = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
            reference = [{k: v for k, v in r.items() if k != "seconds"} for r in seen["json"]]
        assert rows == reference, f"{name}: {fmt} differs from json"


def test_listings_say_what_the_lake_holds(evaluated, tmp_path):
    lake = evaluated.lake
    tables = {r["table"]: r["rows"] for r in rows_in("json", ["tables"], evaluated, tmp_path)}
    assert tables["xdr_voice"] == lake.rows("xdr_voice") > 0
    assert tables["cube_segment_day"] == lake.rows("cube_segment_day") > 0  # cube tables are listed too
    schema = rows_in("json", ["schema", "cube_segment_day"], evaluated, tmp_path)
    units = {r["column"]: r["unit"] for r in schema}
    assert units["call_drop_pct"] == "%" and units["cei"] == "0-100"
    assert {"period_start", "segment"} <= {r["column"] for r in schema if r["key"]}
    preview = rows_in("json", ["kpi", "preview", "call_drop_pct", "--by", "segment", "--limit", "1000"],
                      evaluated, tmp_path)
    direct = query_lake(lake, """
        SELECT epoch(date_trunc('day', start_time)) AS day, segment,
               100.0 * count(*) FILTER (dropped AND setup_success) / count(*) FILTER (setup_success) AS pct
        FROM xdr_voice JOIN subscribers USING (subscriber_id) GROUP BY ALL""").to_pylist()
    want = {(r["day"], r["segment"]): r["pct"] for r in direct}
    got = {(r["period_start"], r["segment"]): r["call_drop_pct"] for r in preview}
    assert got.keys() == want.keys() and len(want) >= 10
    assert all(got[k] == pytest.approx(v, rel=1e-12) for k, v in want.items())


def test_sql_values_are_exact_in_machine_formats_and_rounded_in_tables(loaded):
    query = "SELECT 29.85::FLOAT AS rsrp_dbm, 1234567.891::DOUBLE AS big, 10000 AS n, NULL AS nothing"
    table = cli("sql", query, ws=loaded).stdout
    assert "29.85" in table and "29.850000381469727" not in table
    assert "1,234,568" in table and "10,000" in table
    assert "(dBm)" not in table.split("\n")[1] or "rsrp_dbm" in table  # the unit is in the name already
    row = json.loads(cli("sql", query, "--format", "json", ws=loaded).stdout)[0]
    assert row == {"rsrp_dbm": 29.850000381469727, "big": 1234567.891, "n": 10000, "nothing": None}
    units = cli("sql", "SELECT one_way_delay_ms, duration_s AS duration_s, setup_success FROM xdr_voice LIMIT 1",
                ws=loaded).stdout
    assert "one_way_delay_ms" in units  # names with units are not repeated in brackets


def test_table_headers_carry_units_from_the_lake(evaluated):
    out = cli("sql", "SELECT segment, cei, call_drop_pct FROM cube_segment_day LIMIT 2", ws=evaluated).stdout
    assert "cei (0-100)" in out
    assert "call_drop_pct" in out and "call_drop_pct (%)" not in out  # the name says the unit already


def test_off_a_terminal_nothing_is_clipped_to_80_columns(loaded):
    proc = subprocess.run([sys.executable, "-m", "opencem", "-w", str(loaded.root), "kpi", "list"],
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) > 120
    # The longest description appears whole on one line.
    assert any("Share of tasks customers started in the operator app that completed (top-up, plan change, "
               "bill check...)" in line for line in lines)


def test_output_file_holds_what_stdout_would(loaded, tmp_path):
    path = tmp_path / "tables.csv"
    out = cli("tables", "--format", "csv", "--output", str(path), ws=loaded)
    assert out.exit_code == 0 and out.stdout == ""
    assert path.read_text() == cli("tables", "--format", "csv", ws=loaded).stdout


def test_sections_need_json_or_a_choice(loaded):
    out = cli("ingest", "--report", "--format", "csv", ws=loaded)
    assert out.exit_code == 2 and "pick one with --section" in out.stderr
    both = json.loads(cli("ingest", "--report", "--format", "json", ws=loaded).stdout)
    assert set(both) == {"summary", "quarantine", "rejected"}
    lines = [json.loads(x) for x in cli("ingest", "--report", "--format", "jsonl", ws=loaded).stdout.splitlines()]
    assert {x["section"] for x in lines} <= {"summary", "quarantine", "rejected"} and lines
    assert cli("ingest", "--report", "--section", "nope", ws=loaded).exit_code == 2


def test_parquet_to_a_terminal_is_refused_but_a_pipe_gets_it(loaded, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "opencem", "-w", str(loaded.root), "tables", "--format", "parquet"],
                          capture_output=True, check=True)
    table = pq.read_table(io.BytesIO(proc.stdout))
    assert "xdr_voice" in table.column("table").to_pylist()


def test_ingest_result_in_json_names_every_file(tmp_path, sim_dir):
    ws_dir = tmp_path / "ws"
    out = cli("--workspace", str(ws_dir), "ingest", str(sim_dir / "tables" / "cells.parquet"), "--format", "json")
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert row["table"] == "cells" and row["status"] == "loaded" and row["rows_accepted"] == row["rows_read"] > 0
    assert "1 file loaded" in out.stderr  # the summary goes beside, not into, the result


def test_preview_without_dimensions_is_one_row_per_period(loaded, tmp_path):
    rows = rows_in("json", ["kpi", "preview", "call_drop_pct"], loaded, tmp_path)
    direct = query_lake(loaded.lake, """
        SELECT epoch(date_trunc('day', start_time)) AS day,
               100.0 * count(*) FILTER (dropped AND setup_success) / count(*) FILTER (setup_success) AS pct
        FROM xdr_voice GROUP BY ALL ORDER BY day""").to_pylist()
    assert [(r["period_start"], r["call_drop_pct"]) for r in rows] == \
        [(d["day"], pytest.approx(d["pct"], rel=1e-12)) for d in direct]


@pytest.mark.parametrize("name, unit, shown", [
    ("dl_user_throughput_mbps", "Mbit/s", "dl_user_throughput_mbps"), ("seconds", "s", "seconds"),
    ("handle_time_s", "s", "handle_time_s"), ("dl_throughput_kbps", "kbit/s", "dl_throughput_kbps"),
    ("call_drop_pct", "%", "call_drop_pct"), ("rsrp_dbm", "dBm", "rsrp_dbm"), ("speed_kmh", "km/h", "speed_kmh"),
    ("voice_accessibility", "%", "voice_accessibility (%)"), ("call_centre_wait", "s", "call_centre_wait (s)"),
    ("cei", "0-100", "cei (0-100)"), ("dl_user_throughput", "Mbit/s", "dl_user_throughput (Mbit/s)")])
def test_a_header_names_the_unit_once(name, unit, shown):
    import pyarrow as pa

    from opencem.cli.output import header

    assert header(pa.field(name, pa.float64(), metadata={"unit": unit})) == shown


def test_headers_from_the_lake_and_from_evaluate_do_not_repeat_their_unit(evaluated):
    text = cli("sql", "SELECT dl_throughput_kbps, call_centre_wait FROM cube_segment_day", ws=evaluated).stdout
    assert "dl_throughput_kbps" in text and "(kbit/s)" not in text and "call_centre_wait (s)" in text
    text = cli("evaluate", "--cube", "cube_segment_day", ws=evaluated).stdout
    assert "seconds" in text and "seconds (s)" not in text


def body_rows(text: str) -> int:
    return sum(line.startswith("│") for line in text.splitlines())


def test_report_tables_stop_at_20_rows_unless_limit_or_a_file(tmp_path):
    ws = Workspace(tmp_path / "ws")
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "churn_events.csv").write_text("subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\n")
    for i in range(23):  # 23 rejected files: 23 rows in the rejected section
        (landing / f"mystery{i}.csv").write_text(f"a,b\n{i},2\n")
    assert cli("ingest", landing, ws=ws).exit_code == 3
    every = json.loads(cli("ingest", "--report", "--format", "json", ws=ws).stdout)
    assert len(every["rejected"]) == 23
    cut = cli("ingest", "--report", ws=ws)
    assert cut.exit_code == 0 and "(first 20 of 23 rows; --limit 0 shows all)" in cut.stderr
    whole = cli("ingest", "--report", "--limit", "0", ws=ws)
    assert whole.exit_code == 0 and "first 20" not in whole.stderr
    total = sum(len(rows) for rows in every.values())
    assert body_rows(whole.stdout) == total and body_rows(cut.stdout) == total - 3
    assert body_rows(cli("ingest", "--report", "--limit", "1", ws=ws).stdout) == sum(bool(r) for r in every.values())
    path = tmp_path / "report.txt"
    assert cli("ingest", "--report", "--output", path, ws=ws).exit_code == 0
    assert path.read_text() == whole.stdout


@pytest.mark.parametrize("args", [["tables", "-f", "csv"], ["sql", "SELECT 1 AS x", "-f", "json"],
                                  ["kpi", "list"], ["ingest", "--report", "-f", "json"]])
def test_output_into_the_lake_is_refused_and_the_lake_survives(loaded, args, tmp_path):
    manifest = loaded.root / "lake" / "_manifest.json"
    before = manifest.read_bytes()
    for target in (manifest, loaded.root / "lake" / "new" / "x.csv"):
        out = cli(*args, "--output", target, ws=loaded)
        assert out.exit_code == 2 and "is inside the lake folder" in " ".join(out.stderr.split())
    assert manifest.read_bytes() == before and not (loaded.root / "lake" / "new").exists()
    other = Workspace(tmp_path / "other")  # a lake that is not the workspace's own
    shutil.copytree(loaded.root / "lake", other.root / "lake")
    out = cli(*args, "--output", other.root / "lake" / "_manifest.json", ws=loaded)
    assert out.exit_code == 2 and (other.root / "lake" / "_manifest.json").read_bytes() == before


def test_calibrated_weights_are_not_written_into_the_lake(loaded):
    out = cli("cei", "calibrate", "--out", loaded.root / "lake" / "_manifest.json", ws=loaded)
    assert out.exit_code == 2 and "--out" in out.stderr and "is inside the lake folder" in " ".join(out.stderr.split())
