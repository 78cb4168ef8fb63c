"""A vendor CSV export loses only its bad records: a short or long line, a key that cannot be used
and a counter value that is not a number are quarantined with their line number, field and value;
the file is refused only when it cannot be read at all."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.ingest.load import ingest
from opencem.ingest.pm_csv import read_vendor_csv_part
from opencem.ingest.pm_xml_rows import PMFileError
from opencem.lake import Lake

HEADER = "Start Time,Period(min),NE Name,Cell Name,RRC_ATT_MO_DATA,RRC_ATT_MO_SIG,RRC_SUCC_TOTAL,VENDOR_EXTRA\n"
T0 = datetime(2026, 11, 2, tzinfo=UTC)
LINES = [
    "2026-11-02 00:00:00,15,ME-1,C1,5,1,6,7",
    "2026-11-02 00:00:00,15,ME-1,C2,abc,1,4,7",      # line 3: RRC_ATT_MO_DATA is no number
    "2026-11-02 00:00:00,15,ME-1,C3,2,1",            # line 4: two fields short
    "02/11/2026 00:00,15,ME-1,C4,1,1,1,7",           # line 5: the time is in another format
    "2026-11-02 00:00:00,15,,C5,1,1,1,7",            # line 6: no NE
    "2026-11-02 00:00:00,quarter,ME-1,C6,1,1,1,7",   # line 7: the period is no number
    "2026-11-02 00:00:00,15,ME-1,C7,3,,x1,7,9",      # line 8: one field too many
    "2026-11-02 00:00:00,15,ME-2,C1,4,0,4, 8 ",
]


def write(tmp_path: Path, text: str, name: str = "beta_pm_20261102.csv") -> Path:
    path = tmp_path / "pm" / "beta" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bad_records_and_values_are_rejected_alone_with_line_field_and_value(tmp_path):
    part = read_vendor_csv_part(write(tmp_path, HEADER + "\n".join(LINES) + "\n"), "beta")
    got = {(r["object_dn"], r["counter_name"]): (r["value"], int(n)) for r, n in
           zip(part.data.to_pylist(), part.row_numbers)}
    assert got == {
        ("NE=ME-1,Cell=C1", "RRC.ConnEstabAtt"): (6.0, 2), ("NE=ME-1,Cell=C1", "RRC.ConnEstabSucc"): (6.0, 2),
        ("NE=ME-1,Cell=C1", "VENDOR_EXTRA"): (7.0, 2),
        # The bad RRC_ATT_MO_DATA is quarantined; the line's other counters load.
        ("NE=ME-1,Cell=C2", "RRC.ConnEstabAtt"): (1.0, 3), ("NE=ME-1,Cell=C2", "RRC.ConnEstabSucc"): (4.0, 3),
        ("NE=ME-1,Cell=C2", "VENDOR_EXTRA"): (7.0, 3),
        ("NE=ME-2,Cell=C1", "RRC.ConnEstabAtt"): (4.0, 9), ("NE=ME-2,Cell=C1", "RRC.ConnEstabSucc"): (4.0, 9),
        ("NE=ME-2,Cell=C1", "VENDOR_EXTRA"): (8.0, 9),
    }
    assert all(r["period_start"] == T0 and r["granularity_s"] == 900 for r in part.data.to_pylist())
    assert [(r.row_number, r.field, r.value, r.reason) for r in part.rejects] == [
        (3, "RRC_ATT_MO_DATA", "abc", "RRC_ATT_MO_DATA value 'abc' is not a number"),
        (4, None, None, "has 6 fields, expected 8"),
        (5, "Start Time", "02/11/2026 00:00", "Start Time '02/11/2026 00:00' is not a time in the format "
                                              "'%Y-%m-%d %H:%M:%S'"),
        (6, "NE Name", None, "NE Name is empty"),
        (7, "Period(min)", "quarter", "Period(min) 'quarter' is not a positive number"),
        (8, None, None, "has 9 fields, expected 8"),
    ]
    # Each reject carries its line as written, to repair and reload.
    assert [r.record_text for r in part.rejects] == LINES[1:7]


def test_ingest_quarantines_the_bad_records_of_the_review_file(tmp_path):
    header = ('"Start Time","Period(min)","NE Name","Cell Name","RRC_ATT_MO_DATA","RRC_ATT_MO_SIG","RRC_ATT_MT",'
              '"RRC_ATT_EMERGENCY","RRC_SUCC_TOTAL"\n')
    path = write(tmp_path, header + "2026-11-02 00:00:00,15,ME-ST00001,C00001-1-4G,5,1,1,0,7\n"
                                    "2026-11-02 00:00:00,15,ME-ST00005,C00005-1-4G,abc,1,0,0,6\n")
    lake = Lake(tmp_path / "lake")
    [result] = ingest(lake, [path]).files
    assert result.status == "loaded", result.message
    rows = pa.concat_tables([pq.read_table(p) for p in lake.paths(lake.files("pm_counters"))]).to_pylist()
    assert {(r["object_dn"], r["counter_name"], r["value"]) for r in rows} == {
        ("NE=ME-ST00001,Cell=C00001-1-4G", "RRC.ConnEstabAtt", 7.0),
        ("NE=ME-ST00001,Cell=C00001-1-4G", "RRC.ConnEstabSucc", 7.0),
        ("NE=ME-ST00005,Cell=C00005-1-4G", "RRC.ConnEstabAtt", 1.0),  # the three good causes
        ("NE=ME-ST00005,Cell=C00005-1-4G", "RRC.ConnEstabSucc", 6.0)}
    [q] = pa.concat_tables([pq.read_table(p) for p in lake.paths(lake.files("quarantine"))]).to_pylist()
    assert (q["row_number"], q["field"], q["value"]) == (3, "RRC_ATT_MO_DATA", "abc")
    # 10 values read, 5 per line (the bad one quarantined); the sums fold the 7 attempts into
    # 2 rows: read = accepted + quarantined + folded - derived + dropped.
    m = result.mapping
    assert (result.rows_read, m.folded, m.derived) == (10, 7, 2)
    assert result.rows_read == result.rows_accepted + result.rows_quarantined + m.folded - m.derived + sum(m.dropped.values())


@pytest.mark.parametrize(("text", "sentence"), [
    ("", "PM file beta_pm_20261102.csv: is empty."),
    ("Start Time,Period(min),NE,Cell Name,RRC_SUCC_TOTAL\n2026-11-02 00:00:00,15,ME-1,C1,3\n",
     "PM file beta_pm_20261102.csv: lacks column(s) 'NE Name' named in the beta dictionary."),
    ("Start Time,Period(min),NE Name,NE Name,Cell Name\n",
     "PM file beta_pm_20261102.csv: column 'NE Name' appears twice in the header."),
], ids=["empty", "key column missing", "ambiguous header"])
def test_only_a_file_that_cannot_be_read_is_refused(tmp_path, text, sentence):
    with pytest.raises(PMFileError) as err:
        read_vendor_csv_part(write(tmp_path, text), "beta")
    assert str(err.value) == sentence
