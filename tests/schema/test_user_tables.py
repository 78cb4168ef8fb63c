"""Tables users add with a schema file: checked precisely, queryable, loaded like any other."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from opencem.cli.main import app
from opencem.engines.duckdb import run_user_sql
from opencem.ingest.load import ingest
from opencem.schema import TABLES
from opencem.schema.user import load_table_spec
from opencem.specfile import SpecError
from opencem.workspace import Workspace

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("bad", sorted(FIXTURES.glob("*.bad.yaml")), ids=lambda p: p.stem)
def test_bad_schema_files_give_the_expected_sentence(bad):
    expected = bad.with_suffix(".txt").read_text().strip()
    with pytest.raises(SpecError) as err:
        load_table_spec(bad, TABLES)
    assert err.value.sentences == [expected]


def test_a_new_feed_needs_only_a_schema_file(tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = CliRunner().invoke(app, ["-w", str(ws.root), "sources", "add", str(FIXTURES / "vowifi.schema.yaml")])
    assert out.exit_code == 0, out.output
    lake = ws.lake
    spec = lake.tables["xdr_vowifi"]
    assert spec.column("wifi_rssi_dbm").type == pa.float32() and spec.ranges["mos"] == (1.0, 5.0)
    sample = pa.table({
        "call_id": ["w1", "w2", "w3"],
        "subscriber_id": ["S1", "S2", "S3"],
        "start_time": pa.array([1_700_000_000_000, 1_700_000_060_000, 1_700_086_400_000],
                               pa.timestamp("ms", tz="UTC")),
        "wifi_rssi_dbm": [-60.0, -70.0, -65.0],
        "mos": [4.1, 9.0, 3.2],  # 9.0 is out of range -> quarantine
    })
    path = tmp_path / "xdr_vowifi.parquet"
    pq.write_table(sample, path)
    report = ingest(lake, [path])
    assert report.rows() == {"xdr_vowifi": 2} and report.quarantined == 1
    rows = run_user_sql(lake, "SELECT call_id, mos FROM xdr_vowifi ORDER BY call_id").fetchall()
    assert [(r[0], round(r[1], 1)) for r in rows] == [("w1", 4.1), ("w3", 3.2)]
    assert {f.date for f in lake.files("xdr_vowifi")} == {"2023-11-14", "2023-11-15"}
    listed = CliRunner().invoke(app, ["-w", str(ws.root), "sources", "list"])
    assert "wifi_rssi_dbm" in listed.output


def test_schema_file_plus_mapping_file_load_a_feed_with_its_own_column_names(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.sources_dir.mkdir(parents=True)
    (ws.sources_dir / "xdr_vowifi.schema.yaml").write_text((FIXTURES / "vowifi.schema.yaml").read_text())
    sample = tmp_path / "epdg_export_0001.csv"
    sample.write_text("CALLREF;IMSI;START;RSSI;MOS\n"
                      "a1;001010000000001;2026.11.02_10.00.05;-61,5;4,2\n"
                      "a2;001010000000002;2026.11.02_10.01.00;-70;0,4\n"
                      "a3;001010000000003;2026.11.02_10.02.00\n")
    mapping = tmp_path / "vowifi.mapping.yaml"
    mapping.write_text("""
source: {format: csv, delimiter: ";", decimal: ","}
targets:
  - table: xdr_vowifi
    columns:
      call_id: CALLREF
      subscriber_id: IMSI
      start_time: {from: START, format: "%Y.%m.%d_%H.%M.%S", timezone: Europe/Dublin}
      wifi_rssi_dbm: RSSI
      mos: MOS
""")
    report = ingest(ws.lake, [sample], mapping=mapping)
    f = report.files[0]
    # a1 loads; a2's MOS 0.4 is outside [1, 5]; a3 is a broken line: both quarantined, none lost.
    assert (f.rows_read, f.rows_accepted, f.rows_quarantined) == (3, 1, 2)
    row = run_user_sql(ws.lake, "SELECT call_id, wifi_rssi_dbm, mos, start_time::VARCHAR FROM xdr_vowifi").fetchall()
    assert [(r[0], r[1], round(r[2], 1), r[3]) for r in row] == [("a1", -61.5, 4.2, "2026-11-02 10:00:05+00")]
    reasons = run_user_sql(ws.lake, "SELECT row_number, field FROM quarantine ORDER BY 1").fetchall()
    assert reasons == [(3, "mos"), (4, None)]
