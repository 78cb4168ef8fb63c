"""The lake: atomic batches, idempotent loads, quarantine that conserves counts, kill safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import connect
from opencem.lake import Lake
from opencem.ingest.load import discover, ingest, table_of
from opencem.ingest.validate import IngestError
from opencem.schema import TABLES


def count(lake: Lake, table: str) -> int:
    con = connect(lake)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_simulator_output_loads_completely(lake, sim_dir):
    manifest = json.loads((sim_dir / "manifest.json").read_text())
    for table, rows in manifest["rows"].items():
        if table in TABLES:
            assert count(lake, table) == rows, table
    # PM values: every counter of every cell and period, from both vendors' files.
    pm = count(lake, "pm_counters")
    assert pm == manifest["rows"]["pm_counter_values"]
    # Object DNs of both vendors resolve to the inventory's cells and managed elements.
    unjoined = connect(lake).execute("""SELECT count(*) FILTER (c.cell_id IS NULL),
                                               count(*) FILTER (p.managed_element <> c.managed_element)
                                        FROM pm_counters p LEFT JOIN cells c USING (cell_id)""").fetchone()
    assert unjoined == (0, 0)
    log = connect(lake).execute("""SELECT sum(rows_read), sum(rows_accepted), sum(rows_quarantined),
                                          count(*) FILTER (status = 'rejected'), sum(values_folded),
                                          sum(rows_derived), sum(values_left_out) FROM ingest_log""").fetchone()
    read, accepted, quarantined, rejected, folded, derived, left_out = log
    assert read == accepted + quarantined + folded - derived + left_out and rejected == 0
    assert folded > derived > 0  # beta's CSV sums fold per-cause counters into one


def test_partitions_follow_event_dates(lake):
    files = lake.files("xdr_voice")
    assert {f.date for f in files} == {"2026-11-02", "2026-11-03"}
    for f in files:
        t = pq.read_table(lake.root / f.path, columns=["start_time"])
        days = {d.isoformat() for d in t.column(0).cast(pa.date32()).to_pylist()}
        assert days == {f.date}


def test_same_file_twice_adds_nothing(tmp_path, sim_dir):
    lake = Lake(tmp_path / "lake")
    source = sim_dir / "tables" / "xdr_voice"
    first = ingest(lake, [source])
    again = ingest(lake, [source])
    assert first.count("loaded") == 2 and again.count("duplicate") == 2
    assert count(lake, "xdr_voice") == sum(first.rows().values())
    # A changed file under the same name is new content and loads.
    changed = tmp_path / "xdr_voice.parquet"
    t = pq.read_table(source / "2026-11-02.parquet").slice(0, 10)
    pq.write_table(t, changed)
    assert ingest(lake, [changed]).rows() == {"xdr_voice": 10}


def test_snapshot_tables_replace_their_as_of_date(tmp_path, sim_dir):
    lake = Lake(tmp_path / "lake")
    cells = pq.read_table(sim_dir / "tables" / "cells.parquet")
    path = tmp_path / "cells.parquet"
    pq.write_table(cells, path)
    ingest(lake, [path], as_of=date(2026, 1, 1))
    pq.write_table(cells.slice(0, 5), path)  # a smaller inventory, same day, new content
    ingest(lake, [path], as_of=date(2026, 1, 1))
    assert count(lake, "cells") == 5
    pq.write_table(cells.slice(0, 7), path)
    ingest(lake, [path], as_of=date(2026, 2, 1))
    assert count(lake, "cells") == 7  # queries see the newest snapshot


def test_bad_records_are_quarantined_and_counted(tmp_path, sim_dir):
    t = pq.read_table(sim_dir / "tables" / "xdr_data" / "2026-11-02.parquet").slice(0, 100)
    rsrp = t.column("rsrp_dbm").to_pylist()
    rsrp[3] = 20.0  # above the TS 36.133 range
    ids = t.column("session_id").to_pylist()
    ids[7] = None
    bad = t.set_column(t.schema.get_field_index("rsrp_dbm"), "rsrp_dbm", pa.array(rsrp, pa.float32()))
    bad = bad.set_column(bad.schema.get_field_index("session_id"),
                         pa.field("session_id", pa.string()), pa.array(ids, pa.string()))
    path = tmp_path / "xdr_data.parquet"
    pq.write_table(bad, path)
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [path])
    assert report.files[0].rows_read == 100
    assert report.files[0].rows_accepted == 98 and report.quarantined == 2
    q = connect(lake).execute("SELECT row_number, field, value, reason FROM quarantine ORDER BY 1").fetchall()
    assert q[0][:3] == (4, "rsrp_dbm", "20.0") and "range" in q[0][3]
    assert q[1][:2] == (8, "session_id") and q[1][3] == "required value is missing"


def test_a_file_without_required_columns_is_rejected_and_the_rest_loads(tmp_path, sim_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"foo": [1, 2]}), folder / "xdr_voice.parquet")
    good = pq.read_table(sim_dir / "tables" / "surveys.parquet")
    pq.write_table(good, folder / "surveys.parquet")
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [folder])
    rejected = [f for f in report.files if f.status == "rejected"]
    assert len(rejected) == 1
    assert rejected[0].message.endswith("column 'call_id' required by table xdr_voice is missing (found: foo)")
    assert count(lake, "surveys") == good.num_rows


def test_unknown_files_are_rejected_with_a_clear_reason(tmp_path):
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    report = ingest(Lake(tmp_path / "lake"), [odd])
    assert report.files[0].status == "rejected"
    assert report.files[0].message == (f"{odd}: cannot tell which table this file belongs to; name it "
                                       "after a table (e.g. xdr_voice.csv), give a --mapping file, or "
                                       "put PM files under pm/<vendor>/")
    with pytest.raises(IngestError, match="no such file or folder"):
        discover([tmp_path / "missing"], TABLES)


def test_file_names_with_delivery_stamps_find_their_table():
    assert table_of("xdr_voice_20261123T0015.csv.gz", TABLES) == "xdr_voice"
    assert table_of("xdr_video-000017.parquet", TABLES) == "xdr_video"
    assert table_of("xdr_voicemail.csv", TABLES) is None


def test_a_failed_batch_leaves_nothing_visible(tmp_path, sim_dir):
    lake = Lake(tmp_path / "lake")
    ingest(lake, [sim_dir / "tables" / "surveys.parquet"])
    before = lake.manifest().version
    with pytest.raises(RuntimeError):
        with lake.transaction() as txn:
            txn.append(TABLES["complaints"], pq.read_table(sim_dir / "tables" / "complaints.parquet"))
            raise RuntimeError("crash before commit")
    assert lake.manifest().version == before
    assert count(lake, "complaints") == 0
    assert not list((lake.root).glob("complaints/date=*/part-*.parquet"))


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from opencem.lake import lake as lake_mod
from opencem.lake import Lake
from opencem.ingest.load import ingest
original = lake_mod.Transaction._stage
def slow_stage(self, *a, **k):
    original(self, *a, **k)
    print("staged", flush=True)
    time.sleep(0.05)
lake_mod.Transaction._stage = slow_stage
ingest(Lake(Path(sys.argv[1])), [Path(sys.argv[2])])
"""


@pytest.mark.parametrize("kill_after_files", [1, 12])
def test_sigkill_mid_ingest_then_rerun_gives_exact_counts(tmp_path, sim_dir, kill_after_files):
    lake_dir = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(lake_dir), str(sim_dir)],
                            stdout=subprocess.PIPE, text=True)
    staged = 0
    deadline = time.time() + 120
    while staged < kill_after_files and time.time() < deadline:
        if proc.stdout.readline().startswith("staged"):
            staged += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lake = Lake(lake_dir)
    assert lake.manifest().version == 0  # nothing committed, nothing visible
    assert count(lake, "xdr_voice") == 0
    report = ingest(lake, [sim_dir])
    assert report.count("rejected") == 0
    manifest = json.loads((sim_dir / "manifest.json").read_text())
    assert count(lake, "xdr_voice") == manifest["rows"]["xdr_voice"]
    assert count(lake, "pm_counters") == manifest["rows"]["pm_counter_values"]
    assert not (lake_dir / ".staging").exists() or not any((lake_dir / ".staging").iterdir())


def test_new_content_at_a_known_path_replaces_what_the_old_content_loaded(tmp_path, sim_dir):
    lake = Lake(tmp_path / "lake")
    path = tmp_path / "complaints.parquet"
    full = pq.read_table(sim_dir / "tables" / "complaints.parquet")
    pq.write_table(full.slice(0, 40), path)
    assert ingest(lake, [path]).rows() == {"complaints": 40}
    pq.write_table(full.slice(10, 25), path)  # the OSS re-delivers a corrected file
    report = ingest(lake, [path])
    assert report.count("replaced") == 1 and report.files[0].message.startswith("replaces the content")
    ids = connect(lake).execute("SELECT complaint_id FROM complaints ORDER BY 1").fetchall()
    assert [i[0] for i in ids] == full.slice(10, 25).column("complaint_id").to_pylist()


def test_unreadable_files_are_set_aside_with_the_reason(tmp_path, sim_dir):
    broken = tmp_path / "in" / "xdr_data.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"PAR1 this is not really parquet")
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [broken.parent], rejected_dir=tmp_path / "rejected")
    assert report.count("rejected") == 1
    copies = list((tmp_path / "rejected").rglob("xdr_data.parquet*"))
    assert sorted(p.name for p in copies) == ["xdr_data.parquet", "xdr_data.parquet.reason.txt"]
    reason = next(p for p in copies if p.suffix == ".txt").read_text()
    assert reason.startswith(f"{broken}: cannot be read")
    assert broken.exists()  # the user's file stays where it was


def test_a_new_vendor_needs_only_a_dictionary_file(tmp_path, sim_dir):
    from opencem.ingest.dictionary import DICTIONARY_DIR

    export = next((sim_dir / "pm" / "beta").glob("beta_pm_*.csv"))  # an LTE cells' export
    landing = tmp_path / "pm" / "gamma"
    landing.mkdir(parents=True)
    (landing / export.name).write_bytes(export.read_bytes())
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [landing])
    assert report.count("rejected") == 1 and "No counter dictionary for vendor 'gamma' (folder pm/gamma/)" in report.files[0].message
    own = tmp_path / "dictionaries"
    own.mkdir()
    (own / "gamma.yaml").write_text((DICTIONARY_DIR / "beta.yaml").read_text().replace("vendor: beta", "vendor: gamma"))
    (landing / export.name).write_bytes(export.read_bytes() + b"\n")  # same data, new delivery
    report = ingest(lake, [landing], dictionaries=own)
    assert report.count("replaced") + report.count("loaded") == 1
    vendors = connect(lake).execute("SELECT DISTINCT vendor FROM pm_counters").fetchall()
    assert vendors == [("gamma",)]
    assert connect(lake).execute("SELECT count(DISTINCT counter_name) FROM pm_counters").fetchone()[0] == 14


def test_a_pm_file_broken_part_way_loads_nothing(tmp_path, sim_dir, monkeypatch):
    from opencem.ingest import pm_xml

    monkeypatch.setattr(pm_xml, "BATCH_VALUES", 200)  # many parts before the damage
    good = next((sim_dir / "pm" / "alpha").glob("*.xml"))
    text = good.read_bytes()
    landing = tmp_path / "pm" / "alpha"
    landing.mkdir(parents=True)
    broken = landing / good.name
    broken.write_bytes(text[: int(len(text) * 0.9)])  # the OSS transfer was cut
    lake = Lake(tmp_path / "lake")
    report = ingest(lake, [broken])
    assert report.count("rejected") == 1 and "PM file" in report.files[0].message
    assert count(lake, "pm_counters") == 0
    assert not list(lake.root.glob("pm_counters/date=*/*.parquet"))
    broken.write_bytes(text)  # re-delivered whole
    assert ingest(lake, [broken]).count("loaded") == 1
    assert count(lake, "pm_counters") == pm_xml.read_pm_xml_parts(broken, "alpha")[0].data.num_rows


def test_an_ingest_log_written_before_the_dictionary_columns_still_reads(tmp_path):
    """A lake whose first ingest_log file predates values_folded/rows_derived/values_left_out:
    the log reads with nulls there, and the report sums what it has."""
    import pyarrow.parquet as pq

    from opencem.ingest.report import ingest_log_report

    src = tmp_path / "in"
    src.mkdir()
    (src / "churn_events.csv").write_text("subscriber_id,churned_at,churn_type\nS1,2026-11-02T10:00:00Z,voluntary\n")
    lake = Lake(tmp_path / "lake")
    ingest(lake, [src / "churn_events.csv"])
    [old] = lake.paths(lake.files("ingest_log"))
    pq.write_table(pq.read_table(old).drop_columns(["values_folded", "rows_derived", "values_left_out"]), old)
    (src / "churn_events.csv").write_text("subscriber_id,churned_at,churn_type\nS2,2026-11-02T11:00:00Z,voluntary\n")
    ingest(lake, [src / "churn_events.csv"])
    rows = connect(lake).execute("SELECT rows_read, values_folded FROM ingest_log ORDER BY ingested_at").fetchall()
    assert rows == [(1, None), (1, 0)]
    [summary] = ingest_log_report(lake, ["summary"]).values()
    assert [(r["rows_read"], r["values_folded"]) for r in summary.to_pylist()] == [(1, None), (1, 0)]
