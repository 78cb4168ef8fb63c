"""Re-delivery after a fix: what decides how a file is read is part of its fingerprint, and
``reload`` replaces what an earlier load of the file committed, in one commit."""

from __future__ import annotations

from datetime import date

import pytest

from opencem.engines.duckdb import query_lake
from opencem.ingest.load import ingest
from opencem.lake import Lake
from tests.cli.conftest import cli
from opencem.workspace import Workspace

CHURN_CSV = "id,when,why\nS1,2026-11-02T10:00:00Z,Price\nS2,2026-11-02T11:00:00Z,Network\n"
MAPPING = """
source: {format: csv}
targets:
  - table: churn_events
    columns:
      subscriber_id: id
      churned_at: when
      churn_type: {value: voluntary}
      stated_reason: {from: why, map: {Price: price, Network: %s}}
"""
CELLS = ("cell_id,site_id,technology,vendor\nC1,S1,4G,alpha\nC2,S1,5G,alpha\n")


def reasons(lake: Lake) -> list[tuple]:
    return [tuple(r.values()) for r in query_lake(
        lake, "SELECT subscriber_id, stated_reason FROM churn_events ORDER BY ALL").to_pylist()]


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "churn.csv"
    path.write_text(CHURN_CSV)
    return path


def mapping(tmp_path, network: str):
    path = tmp_path / "churn.mapping.yaml"
    path.write_text(MAPPING % network)
    return path


def test_a_corrected_mapping_replaces_what_the_wrong_one_loaded(tmp_path, source):
    lake = Lake(tmp_path / "lake")
    first = ingest(lake, [source], mapping=mapping(tmp_path, "netwrok_quality"))
    assert first.files[0].status == "loaded"
    assert reasons(lake) == [("S1", "price"), ("S2", "netwrok_quality")]
    fixed = ingest(lake, [source], mapping=mapping(tmp_path, "network_quality"))
    assert fixed.files[0].status == "replaced"  # not "already loaded"
    assert reasons(lake) == [("S1", "price"), ("S2", "network_quality")]  # replaced, not doubled
    same = ingest(lake, [source], mapping=mapping(tmp_path, "network_quality"))
    assert same.files[0].status == "duplicate" and len(reasons(lake)) == 2


def test_a_new_as_of_date_loads_the_same_snapshot_again(tmp_path):
    cells = tmp_path / "cells.csv"
    cells.write_text(CELLS)
    lake = Lake(tmp_path / "lake")
    assert ingest(lake, [cells], as_of=date(2026, 1, 31)).files[0].status == "loaded"
    assert ingest(lake, [cells], as_of=date(2026, 1, 31)).files[0].status == "duplicate"
    again = ingest(lake, [cells], as_of=date(2026, 2, 28))
    assert again.files[0].status == "replaced"
    assert [f.date for f in lake.files("cells")] == ["2026-02-28"]  # the corrected date only
    assert lake.rows("cells") == 2


def test_an_as_of_date_does_not_reload_event_files(tmp_path, source):
    events = tmp_path / "churn_events.csv"
    events.write_text("subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\n")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [events], as_of=date(2026, 1, 31))
    # The date only matters to snapshot tables and mapping options; this file has neither.
    assert ingest(lake, [events], as_of=date(2026, 2, 28)).files[0].status == "duplicate"


def test_reload_replaces_the_earlier_rows_once(tmp_path, source):
    lake = Lake(tmp_path / "lake")
    m = mapping(tmp_path, "network_quality")
    ingest(lake, [source], mapping=m)
    before = reasons(lake)
    report = ingest(lake, [source], mapping=m, reload=True)
    assert report.files[0].status == "replaced" and "reloaded" in report.files[0].message
    assert reasons(lake) == before  # the same rows, once
    log = query_lake(lake, "SELECT status, count(*) AS n FROM ingest_log GROUP BY ALL ORDER BY ALL").to_pylist()
    assert log == [{"status": "loaded", "n": 1}, {"status": "replaced", "n": 1}]


def test_a_redelivery_that_cannot_be_read_keeps_the_earlier_rows(tmp_path):
    events = tmp_path / "churn_events.csv"
    events.write_text("subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\n")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [events])
    events.write_bytes(b"\xff\xfe\x00garbage that is no CSV\x00")
    for reload in (False, True):
        report = ingest(lake, [events], reload=reload)
        assert report.files[0].status == "rejected"
        assert lake.rows("churn_events") == 1  # the rows the good delivery loaded are still there


def test_reload_and_two_copies_in_one_call_load_once(tmp_path):
    a = tmp_path / "a" / "churn_events.csv"
    b = tmp_path / "b" / "churn_events.csv"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\n")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [a])
    report = ingest(lake, [a, b], reload=True)
    assert [f.status for f in report.files] == ["replaced", "duplicate"]
    assert lake.rows("churn_events") == 1


def test_reload_from_the_command_line(tmp_path, source):
    ws = Workspace(tmp_path / "ws")
    m = mapping(tmp_path, "network_quality")
    assert cli("ingest", source, "--mapping", m, ws=ws).exit_code == 0
    again = cli("ingest", source, "--mapping", m, ws=ws)
    assert "1 already loaded" in again.output
    out = cli("ingest", source, "--mapping", m, "--reload", ws=ws)
    assert out.exit_code == 0 and "1 replaced earlier content" in out.output
    assert ws.lake.rows("churn_events") == 2
