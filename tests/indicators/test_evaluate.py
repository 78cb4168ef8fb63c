"""Evaluation on DuckDB: values equal hand-written check queries, cube tables land in the
lake, and re-evaluation recomputes only the days whose inputs or definitions changed."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import connect, run_user_sql
from opencem.indicators.catalog import library_files, load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.lake import Lake
from opencem.simulate.truth import register_truth
from opencem.ingest.load import ingest
from opencem.workspace import Workspace

DEFS = """
kpis:
  - name: call_drop_rate_pct
    source: xdr_voice
    expr: 100 * count_if(dropped) / count_if(setup_success)
  - name: setup_time_p95_ms
    source: xdr_voice
    expr: percentile(setup_time_ms, 0.95)
    filter: setup_success and voice_bearer <> 'CSFB'
  - name: rrc_setup_success_pct
    source: pm_counters
    expr: 100 * sum(RRC.ConnEstabSucc) / sum(RRC.ConnEstabAtt)
  - name: availability_pct
    source: pm_counters
    expr: 100 * (1 - sum(RRU.CellUnavailableTime) / sum(granularity_s))
  - name: data_users
    source: xdr_data
    expr: count(distinct subscriber_id)
  - name: dl_volume_mb
    source: xdr_data
    expr: sum(bytes_dl) / 1e6
kqis:
  - name: voice_retainability
    service: voice
    expr: call_drop_rate_pct
    score: {good: 0.5, bad: 3}
  - name: ran_accessibility
    service: mobile_data
    expr: rrc_setup_success_pct
    score: {points: [[90, 0], [98, 70], [99.5, 100]]}
cei:
  poor_below: 60
  indices:
    - {name: voice, weight: 3, kqis: {voice_retainability: 1}}
    - {name: mobile_data, weight: 1, kqis: {ran_accessibility: 1}}
cubes:
  - {dimensions: [cell_id], grains: [15min, day]}
  - {dimensions: [segment], grains: [day]}
"""


@pytest.fixture
def workspace(lake, tmp_path) -> Workspace:
    """A private copy of the standard lake with the test definitions."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    (ws.root / "indicators").mkdir()
    (ws.root / "indicators" / "test.yaml").write_text(DEFS)
    return ws


def catalog(ws: Workspace):
    dims = [p for p in library_files() if p.name == "dimensions.yaml"]
    return load_catalog(ws.tables(), [*dims, *ws.definition_files()], library=False)


def rows(con, sql: str) -> dict:
    return {tuple(r[:-1]): r[-1] for r in con.execute(sql).fetchall()}


def test_cell_kpis_equal_hand_written_queries(workspace, truth_dir):
    report = evaluate(workspace.lake, catalog(workspace))
    assert [c.table for c in report.cubes] == ["cube_cell_15min", "cube_cell_day", "cube_segment_day"]
    con = connect(workspace.lake)
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute("SELECT period_start, cell_id, call_drop_rate_pct, setup_time_p95_ms, rrc_setup_success_pct, "
                      "availability_pct, data_users, dl_volume_mb, voice_retainability_score, cei "
                      "FROM cube_cell_day").fetchall()
    by_key = {(r[0], r[1]): r[2:] for r in got}
    voice = rows(con, """SELECT date_trunc('day', start_time), cell_id,
        100.0 * count(*) FILTER (dropped) / nullif(count(*) FILTER (setup_success), 0) FROM xdr_voice GROUP BY ALL""")
    p95 = rows(con, """SELECT date_trunc('day', start_time), cell_id,
        quantile_cont(setup_time_ms::DOUBLE, 0.95) FILTER (setup_success AND voice_bearer <> 'CSFB') FROM xdr_voice GROUP BY ALL""")
    rrc = rows(con, """SELECT date_trunc('day', period_start), cell_id,
        100 * sum(value) FILTER (counter_name = 'RRC.ConnEstabSucc') / sum(value) FILTER (counter_name = 'RRC.ConnEstabAtt')
        FROM pm_counters WHERE NOT coalesce(suspect, false) GROUP BY ALL""")
    users = rows(con, "SELECT date_trunc('day', start_time), cell_id, count(DISTINCT subscriber_id) FROM xdr_data GROUP BY ALL")
    assert len(voice) > 100 and len(rrc) > 100
    checked = 0
    for (day, cell), expected in voice.items():
        got_row = by_key[(day, cell)]
        assert got_row[0] == pytest.approx(expected, rel=1e-12, nan_ok=True) if expected is not None else got_row[0] is None
        assert got_row[1] == pytest.approx(p95[(day, cell)], rel=1e-12) if p95[(day, cell)] is not None else got_row[1] is None
        checked += 1
    for (day, cell), expected in rrc.items():
        assert by_key[(day, cell)][2] == pytest.approx(expected, rel=1e-12)
    for (day, cell), expected in users.items():
        assert by_key[(day, cell)][4] == expected
    # Scores follow the definitions: drop 0.5% -> 100, 3% -> 0, linear between.
    for row in by_key.values():
        drop, score = row[0], row[6]
        if drop is not None:
            assert score == pytest.approx(min(100, max(0, 100 * (3 - drop) / 2.5)))
    # Outage cells: availability below 100 only where the simulator injected an outage.
    register_truth(con, truth_dir)
    outages = {r[0] for r in con.execute("SELECT location_id FROM truth.faults WHERE fault_type = 'cell_outage'").fetchall()}
    down = {cell for (_, cell), row in by_key.items() if row[3] is not None and row[3] < 99.99}
    assert outages and down == outages


def test_cei_is_the_weighted_mean_of_present_indices(workspace):
    evaluate(workspace.lake, catalog(workspace))
    t = run_user_sql(workspace.lake, "SELECT voice_index, mobile_data_index, cei, poor_experience FROM cube_cell_15min").fetchall()
    both = [r for r in t if r[0] is not None and r[1] is not None]
    only_data = [r for r in t if r[0] is None and r[1] is not None]
    assert both and only_data
    for v, d, cei, poor in both:
        assert cei == pytest.approx((3 * v + d) / 4)
        assert poor == (cei < 60)
    for _, d, cei, _ in only_data:  # weights renormalised over the branches present
        assert cei == pytest.approx(d)


def test_only_changed_days_are_recomputed(workspace, tmp_path):
    lake, cat = workspace.lake, catalog(workspace)
    first = evaluate(lake, cat)
    assert all(len(c.days_computed) == 2 for c in first.cubes)
    again = evaluate(lake, cat)
    assert all(c.days_computed == [] and c.days_unchanged == 2 for c in again.cubes)
    # New voice records arrive for the second day only: that day is recomputed, the first kept.
    before = run_user_sql(workspace.lake, "SELECT period_start, cell_id, call_drop_rate_pct FROM cube_cell_day").fetchall()
    late = tmp_path / "late" / "xdr_voice-late.parquet"
    late.parent.mkdir()
    con = duckdb.connect()
    day2 = con.sql(f"SELECT * REPLACE ('late-' || call_id AS call_id, true AS dropped, true AS setup_success) "
                       f"FROM read_parquet('{lake.root}/xdr_voice/date=2026-11-03/*.parquet') LIMIT 500").to_arrow_table()
    pq.write_table(day2, late)
    ingest(lake, [late])
    third = evaluate(lake, cat)
    by_table = {c.table: c for c in third.cubes}
    assert by_table["cube_cell_day"].days_computed == ["2026-11-03"]
    assert by_table["cube_cell_day"].days_unchanged == 1
    after = run_user_sql(workspace.lake, "SELECT period_start, cell_id, call_drop_rate_pct FROM cube_cell_day").fetchall()
    old, new = {r[:2]: r[2] for r in before}, {r[:2]: r[2] for r in after}
    assert len(new) == len(old)
    assert all(new[k] == old[k] for k in old if k[0].date() == date(2026, 11, 2))
    raised = [k for k in old if k[0].date() == date(2026, 11, 3) and old[k] is not None and new[k] > old[k]]
    assert len(raised) > 10  # late dropped calls raise the drop rate of their cells
    # A changed definition recomputes everything.
    (workspace.root / "indicators" / "test.yaml").write_text(DEFS.replace("good: 0.5, bad: 3", "good: 1, bad: 4"))
    fourth = evaluate(lake, catalog(workspace))
    assert all(len(c.days_computed) == 2 for c in fourth.cubes)


def test_cube_tables_are_lake_tables_with_units(workspace):
    evaluate(workspace.lake, catalog(workspace), only=["cube_segment_day"])
    spec = workspace.tables()["cube_segment_day"]
    assert spec.keys == ("period_start", "segment")
    units = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in spec.columns}
    assert units["voice_retainability_score"] == "0-100"
    segs = run_user_sql(workspace.lake, "SELECT DISTINCT segment FROM cube_segment_day ORDER BY 1").fetchall()
    assert [s[0] for s in segs] == ["enterprise", "postpaid", "premium", "prepaid", "youth"]
    t = Lake(workspace.lake.root, workspace.tables())
    assert t.rows("cube_segment_day") == 10
    # Stored with a dictionary for the keys only: computed measures hardly ever repeat.
    meta = pq.ParquetFile(t.paths(t.files("cube_segment_day"))[0]).metadata
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["segment"] and "RLE_DICTIONARY" in encodings["period_start"]
    assert "RLE_DICTIONARY" not in encodings["voice_retainability_score"]
