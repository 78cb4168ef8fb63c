"""CSV / JSON Lines / Parquet readers and column mapping files (session records and BSS tables)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from opencem.ingest.mapping import Mapping, MappingError, load_mapping
from opencem.ingest.parts import Reject
from opencem.ingest.tabular import read_mapped, read_tabular
from opencem.ingest.validate import IngestError, conform
from opencem.geo import h3_ints
from opencem.schema import TABLES
from opencem.schema.base import LOCATION_H3

PROJECT = Path(__file__).resolve().parents[2]
IBM_CSV = PROJECT.parent / "shared" / "data" / "external" / "ibm-telco-churn" / "Telco-Customer-Churn.csv"
IBM_MAPPING = PROJECT / "examples" / "ibm-telco" / "mapping.yaml"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def by_id(table: pa.Table, key: str = "subscriber_id") -> dict[str, dict]:
    return {r[key]: r for r in table.to_pylist()}


def write_mapping(tmp_path: Path, text: str, name: str = "vendor.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the IBM Telco churn sample ----------------------------------------------------------------

@pytest.fixture(scope="module")
def ibm():
    if not IBM_CSV.exists():
        pytest.skip(f"shared data not available: {IBM_CSV}")
    return read_mapped(IBM_CSV, IBM_MAPPING, {"as_of": date(2024, 1, 31)})


@pytest.mark.external
def test_ibm_telco_sample_loads_as_subscribers_and_churn_events(ibm):
    subscribers, churn = ibm
    assert (subscribers.table, subscribers.data.num_rows, subscribers.rejects) == ("subscribers", 7043, [])
    assert (churn.table, churn.data.num_rows, churn.rejects) == ("churn_events", 1869, [])
    subs = conform(subscribers.data, TABLES["subscribers"], str(IBM_CSV))
    events = conform(churn.data, TABLES["churn_events"], str(IBM_CSV))
    assert (subs.accepted.num_rows, subs.n_quarantined) == (7043, 0)
    assert (events.accepted.num_rows, events.n_quarantined) == (1869, 0)

    s = by_id(subs.accepted)
    first = s["7590-VHVEG"]  # line 2 of the file
    assert (first["segment"], first["plan"], first["tenure_months"], first["age_band"],
            first["has_broadband"]) == ("postpaid", "Month-to-month", 1, "18-64", True)
    assert first["arpu_monthly"] == pytest.approx(29.85)
    no_internet = s["7469-LKBCI"]
    assert (no_internet["plan"], no_internet["tenure_months"], no_internet["has_broadband"]) == ("Two year", 16, False)
    assert no_internet["arpu_monthly"] == pytest.approx(18.95)
    senior = s["5440-FLBQG"]
    assert (senior["age_band"], senior["tenure_months"], senior["plan"]) == ("65+", 69, "Two year")
    # TotalCharges is blank for new customers; it is not mapped, so they load like anyone else.
    assert s["4472-LVYGI"]["tenure_months"] == 0
    assert pc.sum(subs.accepted["tenure_months"]).as_py() == 227990
    assert pc.sum(subs.accepted["has_broadband"]).as_py() == 5517
    assert pc.sum(pc.equal(subs.accepted["age_band"], "65+")).as_py() == 1142
    assert pc.sum(subs.accepted["arpu_monthly"]).as_py() == pytest.approx(456116.6, rel=1e-6)

    e = by_id(events.accepted)
    assert "7590-VHVEG" not in e and "5440-FLBQG" in e
    assert e["3668-QPYBK"]["churned_at"] == utc(2024, 1, 31)
    assert e["3668-QPYBK"]["churn_type"] is None
    assert set(pc.unique(events.accepted["churned_at"]).to_pylist()) == {utc(2024, 1, 31)}


@pytest.mark.external
def test_ibm_row_numbers_are_file_lines(ibm):
    subscribers, churn = ibm
    assert subscribers.row_numbers[[0, -1]].tolist() == [2, 7044]
    assert churn.row_numbers[:3].tolist() == [4, 6, 7]  # 3668-QPYBK, 9237-HQITU, 9305-CDSKC
    assert churn.row_numbers[-1] == 7043
    assert churn.data["subscriber_id"][-1].as_py() == "8361-LTMKD"


@pytest.mark.external
def test_ibm_without_as_of_names_the_missing_option():
    if not IBM_CSV.exists():
        pytest.skip(f"shared data not available: {IBM_CSV}")
    with pytest.raises(IngestError) as err:
        read_mapped(IBM_CSV, IBM_MAPPING)
    assert str(err.value) == (f"{IBM_CSV}: the mapping fills churn_events.churned_at from option "
                              "'as_of', which was not given")


def test_shipped_ibm_mapping_is_valid():
    m = load_mapping(IBM_MAPPING)
    assert [t.table for t in m.targets] == ["subscribers", "churn_events"]
    assert m.source.null_values == ["", " "]
    # YAML 1.2 booleans: the key "No" stays text, the values true/false are booleans.
    assert m.targets[0].columns["has_broadband"].map == {"DSL": True, "Fiber optic": True, "No": False}
    assert m.targets[0].columns["age_band"].map_text() == (["1", "0"], ["65+", "18-64"])


# --- canonical files: CSV, JSON Lines and Parquet round trips ----------------------------------

SAMPLES = {
    pa.string(): ['a,b "quoted"', "ünïcödé", "x;y\tz", None],
    pa.float32(): [1.5, -3.25, 1e30, None],
    pa.float64(): [48.85, -2.35, 1e-300, None],
    pa.int8(): [15, -7, 0, None],
    pa.int16(): [486, 200, -1, None],
    pa.int32(): [123456, 0, -5, None],
    pa.int64(): [2**40, 12, 0, None],
    pa.bool_(): [True, False, True, None],
    TABLES["xdr_voice"].column("start_time").type: [utc(2026, 11, 2, 0, 0, 0, 95000),
                                                    utc(2026, 11, 2, 23, 59, 59, 999000),
                                                    utc(1999, 12, 31, 12), None],
}


def sample_table(name: str) -> pa.Table:
    """Four rows of every column of ``name``, nulls only where the schema allows them."""
    spec = TABLES[name]
    columns = {}
    for i, f in enumerate(spec.columns):
        values = list(SAMPLES[f.type])
        if f.name in spec.ranges:  # the ends and the middle of the valid range
            lo, hi = spec.ranges[f.name]
            middle = (lo + hi) / 2 if pa.types.is_floating(f.type) else (lo + hi) // 2
            values = [lo, hi, middle, None]
        if pa.types.is_string(f.type):
            values = [f"{v}-{f.name}" if v else v for v in values]
        if not f.nullable:
            values[3] = values[(i % 3)]
            if pa.types.is_string(f.type):
                values = [f"{f.name}-{k}" for k in range(4)]
        columns[f.name] = pa.array(values, f.type)
    if spec.location is not None:  # derived at ingest from the coordinates, as ingest does
        # (the middle of both ranges, 0, 0, is refused as the placeholder for no fix)
        for c, mid in zip(spec.location, (30.25, 120.1)):
            columns[c] = pa.array([*columns[c].to_pylist()[:2], mid, None], pa.float64())
        lat, lon = (columns[c].to_numpy(zero_copy_only=False).astype(float) for c in spec.location)
        columns[LOCATION_H3] = h3_ints(lat, lon)
    return pa.table(columns, schema=spec.schema)


def write_jsonl(table: pa.Table, path: Path) -> None:
    def plain(v):
        return v.isoformat(timespec="milliseconds") if isinstance(v, datetime) else v
    lines = [json.dumps({k: plain(v) for k, v in row.items()}) for row in table.to_pylist()]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", ["xdr_voice", "xdr_data", "subscribers", "billing", "churn_events"])
@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "tsv", "jsonl", "parquet"])
def test_canonical_file_round_trips(tmp_path, name, fmt):
    table = sample_table(name)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "jsonl":
        write_jsonl(table, path)
    else:
        with pa.CompressedOutputStream(str(path), "gzip") if fmt.endswith("gz") else pa.OSFile(str(path), "wb") as out:
            pacsv.write_csv(table, out, pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ","))
    (part,) = read_tabular(path, name)
    assert (part.table, part.rejects) == (name, [])
    first = 1 if fmt in ("jsonl", "parquet") else 2  # CSV line 1 is the header
    assert part.row_numbers.tolist() == list(range(first, first + 4))
    back = conform(part.data, TABLES[name], str(path))
    assert back.n_quarantined == 0
    assert back.accepted.equals(table)


def test_canonical_csv_ignores_unknown_columns_and_fills_absent_ones(tmp_path):
    path = tmp_path / "churn_events.csv"
    path.write_text("note,churned_at,subscriber_id\nhello,2026-11-03T10:00:00+01:00,S1\n")
    (part,) = read_tabular(path, "churn_events")
    assert part.data.column_names == ["subscriber_id", "churned_at"]
    assert part.data.to_pylist() == [{"subscriber_id": "S1", "churned_at": utc(2026, 11, 3, 9)}]


def test_canonical_times_without_offset_are_utc(tmp_path):
    path = tmp_path / "churn_events.csv"
    path.write_text("subscriber_id,churned_at\nS1,2026-11-03 10:00:00\nS2,2026-11-03\n"
                    "S3,2026-11-03T10:00:00.123456\nS4,2026-11-03T10:00:00-0500\n")
    (part,) = read_tabular(path, "churn_events")
    assert part.data["churned_at"].to_pylist() == [
        utc(2026, 11, 3, 10), utc(2026, 11, 3), utc(2026, 11, 3, 10, 0, 0, 123000), utc(2026, 11, 3, 15)]


# --- broken records become rejects, the rest loads -----------------------------------------------

HEADER = "subscriber_id,churned_at,churn_type,stated_reason\n"


def test_csv_broken_lines_become_rejects_with_line_numbers(tmp_path):
    path = tmp_path / "churn_events.csv"
    path.write_bytes((
        HEADER
        + "S1,2026-11-02T10:00:00Z,voluntary,price\n"          # line 2
        + "S2,2026-11-02T11:00:00Z,voluntary\n"                # line 3: a field short
        + "S3,2026-11-02T12:00:00Z,voluntary,price,extra\n"    # line 4: a field too many
        + "\n"                                                 # line 5: blank, not a record
        + 'S4,2026-11-02T13:00:00Z,"voluntary,price\n'         # line 6: quote never closed
        + "S5,2026-11-02T14:00:00Z,involuntary,non_payment\n"  # line 7: read on its own
        ).encode() + b"S6,2026-11-02T15:00:00Z,voluntary,pr\xe9x\n"  # line 8: Latin-1 byte
        + b"S7,2026-11-02T16:00:00Z,voluntary,other\n"         # line 9
        + b"S8,2026-11-02T17:00")                              # line 10: cut off mid-record
    (part,) = read_tabular(path, "churn_events")
    assert part.data["subscriber_id"].to_pylist() == ["S1", "S5", "S7"]
    assert part.row_numbers.tolist() == [2, 7, 9]
    assert part.rejects == [
        Reject(3, "has 3 fields, expected 4", "S2,2026-11-02T11:00:00Z,voluntary"),
        Reject(4, "has 5 fields, expected 4", "S3,2026-11-02T12:00:00Z,voluntary,price,extra"),
        Reject(6, "has an unterminated quote (its value runs over the line end)",
               'S4,2026-11-02T13:00:00Z,"voluntary,price'),
        Reject(8, "is not valid UTF-8 text (check the file's encoding)",
               "S6,2026-11-02T15:00:00Z,voluntary,pr\\xe9x"),
        Reject(10, "has 2 fields, expected 4", "S8,2026-11-02T17:00"),
    ]
    assert part.data["churned_at"].to_pylist() == [utc(2026, 11, 2, 10), utc(2026, 11, 2, 14),
                                                   utc(2026, 11, 2, 16)]


def test_csv_values_that_do_not_convert_are_left_to_validation(tmp_path):
    path = tmp_path / "churn_events.csv"
    path.write_text(HEADER + "S1,2026-11-02T10:00:00Z,,\nS2,tomorrow,,\n,2026-11-02T12:00:00Z,,\n")
    (part,) = read_tabular(path, "churn_events")
    assert part.rejects == [Reject(3, "'tomorrow' is not an ISO 8601 time", "S2,tomorrow,,",
                                   "churned_at", "tomorrow")]
    assert part.row_numbers.tolist() == [2, 4]
    checked = conform(part.data, TABLES["churn_events"], str(path))
    assert (checked.accepted.num_rows, checked.reasons) == (1, ["required value is missing"])


def test_jsonl_broken_lines_become_rejects(tmp_path):
    path = tmp_path / "churn_events.jsonl"
    path.write_text('{"subscriber_id": "S1", "churned_at": "2026-11-02T10:00:00Z"}\n'
                    '{"subscriber_id": "S2", "churned_at": "2026-11-02T11:00:00Z"\n'
                    "\n"
                    '{"subscriber_id": "S3", "churned_at": 1762077600}\n'
                    '{"subscriber_id": "S4", "churned_at": "2026-11-02T13:00:00Z", "extra": [1, 2]}\n')
    (part,) = read_tabular(path, "churn_events")
    assert part.data["subscriber_id"].to_pylist() == ["S1", "S4"]
    assert part.row_numbers.tolist() == [1, 5]
    assert [(r.row_number, r.reason) for r in part.rejects] == [
        (2, "is not a valid JSON object (Missing a comma or '}' after an object member)"),
        (4, "field 'churned_at' holds a number where a string is expected")]
    assert part.rejects[0].record_text == '{"subscriber_id": "S2", "churned_at": "2026-11-02T11:00:00Z"'


def test_jsonl_lines_that_are_not_objects_are_rejected_before_parsing(tmp_path):
    # pyarrow 26's JSON reader crashes on a first line of `null`; it never sees such lines.
    path = tmp_path / "churn_events.jsonl"
    path.write_bytes(b'null\n{"subscriber_id": "S1", "churned_at": "2026-11-02T10:00:00Z"}\n   \n[1, 2]\n'
                     b'{"subscriber_id": "S\xff", "churned_at": "2026-11-02T11:00:00Z"}\n'
                     b'{"subscriber_id": "S3", "churned_at": "2026-11-02 12:00"}\n')
    (part,) = read_tabular(path, "churn_events")
    assert part.row_numbers.tolist() == [2, 6]
    assert part.data["churned_at"].to_pylist() == [utc(2026, 11, 2, 10), utc(2026, 11, 2, 12)]
    assert [(r.row_number, r.reason) for r in part.rejects] == [
        (1, "is not a JSON object"), (4, "is not a JSON object"),
        (5, "is not valid UTF-8 text (check the file's encoding)")]


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary data, not CSV text"),
    (b"\xff\xfesubscriber_id\n", "the header line is not UTF-8 text; set encoding in the mapping"),
    (b"subscriber_id,when\nS1,2026-11-02\n",
     "column 'churned_at' required by table churn_events is missing (found: subscriber_id, when)"),
    (b"subscriber_id,churned_at,subscriber_id\nS1,2026-11-02,S1\n",
     "column 'subscriber_id' appears twice in the header"),
    (b"subscriber_id,churned_at\nS1,soon\nS2,later\n",
     "no value of column 'churned_at' is an ISO 8601 time (first: 'soon')"),
])
def test_unreadable_csv_raises_one_sentence(tmp_path, content, problem):
    path = tmp_path / "churn_events.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError) as err:
        read_tabular(path, "churn_events")
    assert str(err.value) == f"{path}: {problem}"


@pytest.mark.parametrize("name, content, problem", [
    ("churn_events.parquet", b"PAR1 not really",
     "is not a readable Parquet file (Parquet magic bytes not found in footer. Either the file is "
     "corrupted or this is not a parquet file.)"),
    ("churn_events.jsonl", b"\n\n", "is empty"),
    ("churn_events.jsonl", b'{"subscriber": "S1"}\n',
     "column 'subscriber_id' required by table churn_events is missing (found: subscriber)"),
    ("churn_events.xlsx", b"PK\x03\x04", "unknown file type; use .csv, .tsv, .jsonl or .parquet"),
])
def test_unreadable_files_of_other_formats(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError) as err:
        read_tabular(path, "churn_events")
    assert str(err.value) == f"{path}: {problem}"


# --- mapping files: what each option does --------------------------------------------------------

VENDOR_CSV = (
    "Probe export 2026-11-02\n"
    "generated by probe-7\n"
    "MSISDN;START;DUR;RESULT;RAT;KB;CELL\n"
    "33600000001;2026.03.29_01.30.00.250;12,5;OK;LTE;1,5;C1\n"
    "33600000002;2026.03.29_02.30.00;7;FAIL;NR;x;C2\n"
    "33600000003;2026.03.29_03.30.00;0;TEST;LTE;2;C3\n"
    "33600000004;2026.10.25_02.30.00;61;;UMTS;NULL;C4\n"
)
VENDOR_MAPPING = """
description: Probe vendor X voice export
source:
  format: csv
  delimiter: ";"
  decimal: ","
  skip_rows: 2
  null_values: ["", "NULL"]
targets:
  - table: xdr_voice
    where: {column: RESULT, not_equals: TEST}
    columns:
      call_id: {template: "{MSISDN}@{START}"}
      subscriber_id: MSISDN
      start_time: {from: START, format: "%Y.%m.%d_%H.%M.%S.%f", timezone: Europe/Paris}
      setup_success: {from: RESULT, map: {OK: true, FAIL: false, ~: false}}
      duration_s: DUR
      technology: {from: RAT, map: {LTE: 4G, NR: 5G}, default: other}
      cell_id: CELL
      codec: {value: EVS}
      voice_bearer: {option: bearer}
  - table: xdr_data
    where: {column: RAT, in: [LTE, NR]}
    columns:
      session_id: {template: "D-{MSISDN}"}
      subscriber_id: MSISDN
      start_time: {option: as_of}
      bytes_dl: {from: KB, scale: 1000}
"""


def test_mapping_options_do_what_they_say(tmp_path):
    path = tmp_path / "probe.csv"
    path.write_text(VENDOR_CSV, encoding="utf-8")
    voice, data = read_mapped(path, write_mapping(tmp_path, VENDOR_MAPPING),
                              {"bearer": "VoLTE", "as_of": "2026-11-02T00:00:00+01:00"})
    assert voice.row_numbers.tolist() == [4, 5, 7]  # line 6 is a TEST call, filtered out
    rows = conform(voice.data, TABLES["xdr_voice"], str(path)).accepted.to_pylist()
    assert [r["call_id"] for r in rows] == ["33600000001@2026.03.29_01.30.00.250",
                                            "33600000002@2026.03.29_02.30.00",
                                            "33600000004@2026.10.25_02.30.00"]
    # Paris: CET before the spring change, the 02:30 gap moves past it, 02:30 in the repeated
    # October hour is the first (summer) one.
    assert [r["start_time"] for r in rows] == [utc(2026, 3, 29, 0, 30, 0, 250000), utc(2026, 3, 29, 1),
                                               utc(2026, 10, 25, 0, 30)]
    assert [r["setup_success"] for r in rows] == [True, False, False]
    assert [r["duration_s"] for r in rows] == [12.5, 7.0, 61.0]
    assert [r["technology"] for r in rows] == ["4G", "5G", "other"]
    assert {(r["codec"], r["voice_bearer"]) for r in rows} == {("EVS", "VoLTE")}

    assert data.data["session_id"].to_pylist() == ["D-33600000001", "D-33600000003"]
    assert data.row_numbers.tolist() == [4, 6]
    assert data.data["bytes_dl"].to_pylist() == [1500.0, 2000.0]
    assert data.rejects == [Reject(5, "'x' is not a number", "33600000002;2026.03.29_02.30.00;7;FAIL;NR;x;C2",
                                   "bytes_dl", "x")]
    assert set(data.data["start_time"].to_pylist()) == {utc(2026, 11, 1, 23)}


def test_one_broken_record_is_reported_in_every_part(tmp_path):
    path = tmp_path / "probe.csv"
    lines = VENDOR_CSV.splitlines()
    lines[4] = "33600000002;2026.03.29_02.30.00;7;FAIL"  # line 5 loses three fields
    path.write_text("\n".join(lines) + "\n")
    voice, data = read_mapped(path, write_mapping(tmp_path, VENDOR_MAPPING),
                              {"bearer": "VoLTE", "as_of": date(2026, 11, 2)})
    broken = Reject(5, "has 4 fields, expected 7", "33600000002;2026.03.29_02.30.00;7;FAIL")
    assert voice.rejects == [broken] and data.rejects == [broken]
    assert voice.row_numbers.tolist() == [4, 7] and data.row_numbers.tolist() == [4, 6]
    assert set(data.data["start_time"].to_pylist()) == {utc(2026, 11, 2)}


def test_mapping_reads_latin1_gzip_without_header(tmp_path):
    path = tmp_path / "bss.csv.gz"
    path.write_bytes(gzip.compress("C1|Zoë|premium|12|1700000000\nC2|Jörg|prepaid|3|1700003600.5\n"
                                   .encode("latin-1")))
    mapping = write_mapping(tmp_path, """
source: {format: csv, delimiter: "|", encoding: latin-1, header: false,
         columns: [id, name, tier, months, since]}
targets:
  - table: subscribers
    columns:
      subscriber_id: id
      segment: tier
      plan: {template: "{tier} for {name}"}
      tenure_months: months
  - table: churn_events
    where: {column: tier, equals: prepaid}
    columns:
      subscriber_id: id
      churned_at: {from: since, format: epoch_s}
""")
    subscribers, churn = read_mapped(path, mapping)
    assert subscribers.row_numbers.tolist() == [1, 2]
    assert subscribers.data["plan"].to_pylist() == ["premium for Zoë", "prepaid for Jörg"]
    assert churn.data.to_pylist() == [{"subscriber_id": "C2", "churned_at": utc(2023, 11, 14, 23, 13, 20, 500000)}]


def test_mapping_reads_jsonl_and_parquet_sources(tmp_path):
    mapping = """
source: {format: FORMAT}
targets:
  - table: subscribers
    where: {column: active, equals: true}
    columns:
      subscriber_id: {template: "S{id}"}
      segment: {from: tier, map: {1: premium, 2: postpaid}, default: prepaid}
      arpu_monthly: {from: arpu_cents, scale: 0.01}
"""
    records = [{"id": 7, "tier": 1, "arpu_cents": 4599, "active": True},
               {"id": 8, "tier": 3, "arpu_cents": 1000, "active": False},
               {"id": 9, "tier": 2, "arpu_cents": 3550, "active": True}]
    jsonl = tmp_path / "bss.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "bss.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    for path, fmt in ((jsonl, "jsonl"), (parquet, "parquet")):
        (part,) = read_mapped(path, write_mapping(tmp_path, mapping.replace("FORMAT", fmt)))
        assert part.row_numbers.tolist() == [1, 3]
        assert part.data["subscriber_id"].to_pylist() == ["S7", "S9"]
        assert part.data["segment"].to_pylist() == ["premium", "postpaid"]
        assert part.data["arpu_monthly"].to_pylist() == pytest.approx([45.99, 35.5])


def test_mapped_source_lacking_a_column_raises(tmp_path):
    path = tmp_path / "probe.csv"
    path.write_text(VENDOR_CSV.replace("RAT", "TECH"))
    with pytest.raises(IngestError) as err:
        read_mapped(path, write_mapping(tmp_path, VENDOR_MAPPING), {"bearer": "VoLTE", "as_of": date(2026, 11, 2)})
    assert str(err.value) == (f"{path}: has no column 'RAT', which the mapping reads "
                              "(found: MSISDN, START, DUR, RESULT, TECH, KB, CELL)")


# --- bad mapping files: every problem, one sentence each, with line and field ------------------

BAD_MAPPINGS = [
    ("source: [csv\n", ["Mapping bad.yaml line 2 is not valid YAML: expected ',' or ']', but got '<stream end>'."]),
    ("- just a list\n", ["Mapping bad.yaml must be a YAML mapping with source and targets."]),
    ("""source: {format: csv, delimter: ";", encoding: klingon}
targets:
  - table: subscriber
    columns: {subscriber_id: id}
""", ["Mapping bad.yaml, line 1, field source.delimter: unknown key (check the spelling).",
      "Mapping bad.yaml, line 3, field targets.0.table: unknown table 'subscriber' (did you mean 'subscribers'?)."]),
    ("""source: {format: csv, encoding: klingon, decimal: ",", delimiter: ","}
targets:
  - table: subscribers
    where: {column: Churn, equals: "Yes", in: ["No"]}
    columns:
      subscriber_id: customerID
      segmnt: {value: postpaid}
      tenure_months: {from: tenure, scale: 1, map: {a: 1}}
      has_broadband: {from: InternetService, map: {DSL: true, "No": maybe}}
      arpu_monthly: {from: MonthlyCharges, value: 3}
      age_band: {from: SeniorCitizen, format: "%Y"}
  - table: churn_events
    columns:
      subscriber_id: customerID
      churned_at: {option: as_of, timezone: Mars/Olympus}
""", [
        "Mapping bad.yaml, line 1, field source.decimal: the decimal separator must differ from the delimiter.",
        "Mapping bad.yaml, line 1, field source.encoding: unknown encoding 'klingon'.",
        "Mapping bad.yaml, line 4, field targets.0.where.0: give exactly one of 'equals', 'not_equals', 'in' or 'not_in'.",
        "Mapping bad.yaml, line 5, field targets.0.columns: required column 'segment' of table subscribers has no source.",
        "Mapping bad.yaml, line 7, field targets.0.columns.segmnt: table subscribers has no column 'segmnt' (did you mean 'segment'?).",
        "Mapping bad.yaml, line 8, field targets.0.columns.tenure_months: give 'map' or 'scale', not both.",
        "Mapping bad.yaml, line 9, field targets.0.columns.has_broadband.map.No: 'maybe' is not a valid bool for has_broadband.",
        "Mapping bad.yaml, line 10, field targets.0.columns.arpu_monthly: give exactly one of 'from', 'value', 'option' or 'template'.",
        "Mapping bad.yaml, line 11, field targets.0.columns.age_band.format: age_band is string, not a time.",
        "Mapping bad.yaml, line 15, field targets.1.columns.churned_at.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris).",
    ]),
    ("""source: {format: parquet, delimiter: ";"}
targets:
  - table: quarantine
    columns: {row_number: n}
  - table: billing
    columns:
      bill_id: {template: "{id"}
      subscriber_id: id
      bill_date: {from: day, format: "day"}
      amount: {from: euros, scale: ten}
""", [
        "Mapping bad.yaml, line 1, field source.delimiter: only applies to format csv, not parquet.",
        "Mapping bad.yaml, line 3, field targets.0.table: unknown table 'quarantine'.",
        "Mapping bad.yaml, line 7, field targets.1.columns.bill_id.template: bad template (expected '}' before end of string).",
        "Mapping bad.yaml, line 9, field targets.1.columns.bill_date.format: a time format needs strptime directives such as %Y, or epoch_s / epoch_ms.",
        "Mapping bad.yaml, line 10, field targets.1.columns.amount.scale: Input should be a valid number, unable to parse string as a number.",
    ]),
]


@pytest.mark.parametrize("text, issues", BAD_MAPPINGS)
def test_bad_mapping_files_report_every_problem(tmp_path, text, issues):
    path = write_mapping(tmp_path, text, "bad.yaml")
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.sentences == issues


def test_mapping_built_in_code_needs_no_file(tmp_path):
    m = Mapping.model_validate({"source": {"format": "jsonl"}, "targets": [
        {"table": "churn_events", "columns": {"subscriber_id": "id", "churned_at": {"option": "as_of"}}}]})
    assert m.source_columns() == ["id"]
    assert m.targets[0].columns["subscriber_id"].from_ == "id"
    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": "S1"}\n')
    (part,) = read_mapped(path, m, {"as_of": "2026-01-01"})
    assert part.data.to_pylist() == [{"subscriber_id": "S1", "churned_at": utc(2026, 1, 1)}]
    wrong = Mapping.model_validate({"source": {"format": "jsonl"}, "targets": [
        {"table": "churn_events", "columns": {"subscriber_id": "id", "churn_at": {"option": "as_of"}}}]})
    with pytest.raises(MappingError) as err:
        read_mapped(path, wrong)
    assert err.value.sentences == [
        "Mapping, field targets.0.columns.churn_at: table churn_events has no column 'churn_at' "
        "(did you mean 'churned_at'?).",
        "Mapping, field targets.0.columns: required column 'churned_at' of table churn_events has no source."]


def test_option_values_are_converted_like_source_values(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id\nS1\n")
    mapping = write_mapping(tmp_path, """
source: {format: csv}
targets:
  - table: churn_events
    columns: {subscriber_id: id, churned_at: {option: as_of, timezone: Asia/Tokyo}, churn_type: {option: kind}}
""")
    for as_of, expected in ((date(2026, 1, 31), utc(2026, 1, 30, 15)), ("2026-01-31 09:00", utc(2026, 1, 31)),
                            (datetime(2026, 1, 31, 12, tzinfo=UTC), utc(2026, 1, 31, 12))):
        (part,) = read_mapped(path, mapping, {"as_of": as_of, "kind": "voluntary"})
        assert part.data.to_pylist() == [{"subscriber_id": "S1", "churned_at": expected, "churn_type": "voluntary"}]
    with pytest.raises(IngestError, match="churn_events.churned_at gets 'someday', which is not a time"):
        read_mapped(path, mapping, {"as_of": "someday", "kind": "voluntary"})


def test_row_numbers_count_skipped_lines_and_the_header(tmp_path):
    path = tmp_path / "probe.csv"
    path.write_text(VENDOR_CSV)
    (voice, _) = read_mapped(path, write_mapping(tmp_path, VENDOR_MAPPING), {"bearer": "x", "as_of": "2026-01-01"})
    lines = VENDOR_CSV.splitlines()
    assert [lines[n - 1].split(";")[0] for n in voice.row_numbers] == voice.data["subscriber_id"].to_pylist()
    assert np.all(np.diff(voice.row_numbers) > 0)


def test_workspace_tables_can_be_read_and_mapped(tmp_path):
    from opencem.schema.base import TIMESTAMP, Table, col, key

    store_visits = Table(name="store_visits", domain="customers", description="Shop visits",
                         keys=("visit_id",), time_column="visited_at",
                         columns=(key("visit_id", "Visit"), col("visited_at", TIMESTAMP, "When", nullable=False),
                                  col("minutes", pa.float32(), "Time in the shop", "min")))
    tables = {**TABLES, "store_visits": store_visits}
    path = tmp_path / "store_visits.csv"
    path.write_text("visit_id,visited_at,minutes\nV1,2026-11-02T09:30:00Z,12.5\n")
    (part,) = read_tabular(path, "store_visits", tables)
    assert part.data.to_pylist() == [{"visit_id": "V1", "visited_at": utc(2026, 11, 2, 9, 30), "minutes": 12.5}]
    mapping = write_mapping(tmp_path, """
source: {format: csv}
targets:
  - table: store_visits
    columns: {visit_id: visit_id, visited_at: visited_at, minutes: {from: minutes, scale: 60}}
""")
    with pytest.raises(MappingError, match="unknown table 'store_visits'"):
        read_mapped(path, mapping)  # not a canonical table
    (part,) = read_mapped(path, mapping, tables=tables)
    assert part.data["minutes"].to_pylist() == [750.0]


def test_mapping_errors_are_spec_errors_for_the_cli(tmp_path):
    from opencem.specfile import SpecError

    with pytest.raises(SpecError) as err:
        load_mapping(write_mapping(tmp_path, "source: {format: xml}\ntargets: []\n", "bad.yaml"))
    assert err.value.sentences == [
        "Mapping bad.yaml, line 1, field source.format: Input should be 'csv', 'jsonl' or 'parquet'.",
        "Mapping bad.yaml, line 2, field targets: List should have at least 1 item after validation, not 0."]


def test_csv_cut_inside_a_quoted_value_rejects_the_last_line(tmp_path):
    path = tmp_path / "churn_events.csv"
    path.write_text(HEADER + "S1,2026-11-02T10:00:00Z,voluntary,price\n"
                    'S2,2026-11-02T11:00:00Z,voluntary,"network qual')
    (part,) = read_tabular(path, "churn_events")
    assert part.data["subscriber_id"].to_pylist() == ["S1"]
    assert part.rejects == [Reject(3, "has an unterminated quote (its value runs over the line end)",
                                   'S2,2026-11-02T11:00:00Z,voluntary,"network qual')]
