"""Property tests: random tables written as CSV or JSON Lines, then corrupted, never break
the readers.

Whatever the bytes, reading either raises IngestError or returns parts in which every source
record is accounted for exactly once: as a row (numbered by its line) or as a reject. A CSV
record is a non-empty line after the header; a JSON Lines record a line with more than white
space on it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from opencem.ingest.mapping import Mapping
from opencem.ingest.tabular import read_mapped, read_tabular
from opencem.ingest.validate import IngestError
from opencem.schema import TABLES

FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12)
huge_numbers = st.sampled_from(["1e308", "-1e308", "1e400", "99999999999999999999999", "-0", "nan",
                                "inf", "1.7976931348623157e308", "4.9e-324", "12,5", "0x1F"])
numbers = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True).map(repr), huge_numbers)
times = st.one_of(
    st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1)).map(lambda d: d.isoformat(sep=" ")),
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["2024-13-01", "yesterday", "2024-02-30T00:00:00", ""]))
cells = {"text": text, "number": numbers, "time": times, "flag": st.sampled_from(["Yes", "No", ""])}


@st.composite
def csv_files(draw, columns: dict[str, str], delimiters: str = ",;|\t") -> tuple[bytes, str]:
    """A table with the given (name -> kind) columns, written with random CSV dialect choices."""
    delimiter = draw(st.sampled_from(list(delimiters)))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    names = list(columns)
    extra = draw(st.lists(st.sampled_from(["note", "x1", "x2"]), unique=True, max_size=2))
    rows = draw(st.lists(st.tuples(*[cells[columns[n]] for n in names], *[text for _ in extra]),
                         min_size=0, max_size=25))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    writer.writerow(names + extra)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8"), delimiter


@st.composite
def corruptions(draw, data: bytes, delimiter: str) -> bytes:
    """Truncate, splice in invalid UTF-8, add or drop fields, stray quotes, blank lines."""
    data = bytearray(data)
    header_end = data.find(b"\n") + 1
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["truncate", "bad_utf8", "extra_field", "drop_field", "quote",
                                     "blank_line"]))
        if not data:
            break
        # Mostly after the header: a broken header fails the whole file, which says less.
        spare_header = draw(st.integers(0, 9)) > 0 and header_end < len(data)
        at = draw(st.integers(header_end if spare_header else 0, len(data) - 1))
        if kind == "truncate":
            data = data[:max(at, 1)]
        elif kind == "bad_utf8":
            data[at:at + 1] = draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"]))
        elif kind == "quote":
            data.insert(at, ord('"'))
        elif kind == "blank_line":
            data[at:at] = b"\n\n"
        else:
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            if kind == "extra_field":
                data[end:end] = (delimiter + "extra").encode()
            else:
                cut = data.rfind(delimiter.encode(), at, end)
                if cut >= 0:
                    del data[cut:end]
    return bytes(data)


def record_lines(data: bytes) -> set[int]:
    """Line numbers of the records: non-empty lines after the header (LF, CRLF or CR breaks)."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()
    return {i + 1 for i, line in enumerate(lines) if i > 0 and line}


def accounted(part) -> list[int]:
    return [int(n) for n in part.source_row_numbers()] + [r.row_number for r in part.rejects]


MAPPED = {"id": "text", "when": "time", "score": "number", "amount": "number", "flag": "flag",
          "comment": "text"}


def mapping(delimiter: str) -> Mapping:
    return Mapping.model_validate({
        "source": {"format": "csv", "delimiter": delimiter, "null_values": ["", "NULL"]},
        "targets": [
            {"table": "surveys", "columns": {
                "survey_id": {"template": "{id}#{flag}"}, "subscriber_id": "id",
                "answered_at": "when", "nps_score": "score", "comment": "comment",
                "survey_type": {"from": "flag", "map": {"Yes": "relationship"}, "default": "transactional"}}},
            {"table": "billing", "where": {"column": "flag", "equals": "Yes"}, "columns": {
                "bill_id": "id", "subscriber_id": "id", "bill_date": {"option": "as_of"},
                "amount": {"from": "amount", "scale": 100}}},
        ]})


@FUZZ
@given(st.data())
def test_corrupted_mapped_csv_conserves_records(tmp_path, data):
    content, delimiter = data.draw(csv_files(MAPPED))
    content = data.draw(corruptions(content, delimiter))
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    try:
        surveys, billing = read_mapped(path, mapping(delimiter), {"as_of": "2024-01-31"})
    except IngestError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    records = record_lines(content)
    assert sorted(accounted(surveys)) == sorted(records)  # each record once, as row or reject
    unparsed = {r.row_number for r in surveys.rejects if r.field is None}
    assert {r.row_number for r in billing.rejects if r.field is None} == unparsed
    assert len(set(accounted(billing))) == len(accounted(billing))
    assert set(accounted(billing)) <= records
    for part in (surveys, billing):
        assert part.data.num_rows == len(part.source_row_numbers())
        assert all(r.reason and r.record_text is not None for r in part.rejects)


def canonical_kind(field: pa.Field) -> str:
    if pa.types.is_timestamp(field.type):
        return "time"
    if pa.types.is_boolean(field.type):
        return "flag"
    return "number" if pa.types.is_integer(field.type) or pa.types.is_floating(field.type) else "text"


@pytest.mark.parametrize("table", ["xdr_voice", "churn_events"])
@FUZZ
@given(data=st.data())
def test_corrupted_canonical_csv_conserves_records(tmp_path, table, data):
    columns = {f.name: canonical_kind(f) for f in TABLES[table].columns}
    content, delimiter = data.draw(csv_files(columns, delimiters=",\t"))
    path = tmp_path / (f"{table}.csv" if delimiter == "," else f"{table}.tsv")
    content = data.draw(corruptions(content, delimiter))
    path.write_bytes(content)
    try:
        (part,) = read_tabular(path, table)
    except IngestError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert sorted(accounted(part)) == sorted(record_lines(content))
    times = part.data[TABLES[table].time_column] if TABLES[table].time_column in part.data.column_names else None
    if times is not None:  # times are converted by the reader, never left as text
        assert pa.types.is_timestamp(times.type)
    assert np.all(np.diff(part.source_row_numbers()) > 0)


@FUZZ
@given(st.data())
def test_corrupted_jsonl_conserves_records(tmp_path, data):
    """JSON Lines: a record is a line with more than JSON white space on it."""
    rows = data.draw(st.lists(st.fixed_dictionaries(
        {"subscriber_id": text, "churned_at": times, "churn_type": st.one_of(text, st.none())},
        optional={"ported_to": st.one_of(text, st.integers(), st.lists(st.integers(), max_size=2))}),
        max_size=20))
    content = "".join(json.dumps(r, ensure_ascii=data.draw(st.booleans())) + "\n" for r in rows).encode()
    content = data.draw(corruptions(content, ","))
    path = tmp_path / "churn_events.jsonl"
    path.write_bytes(content)
    try:
        (part,) = read_tabular(path, "churn_events")
    except IngestError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    lines = content.split(b"\n")
    records = {i + 1 for i, line in enumerate(lines) if line.strip(b" \t\r")}
    assert sorted(accounted(part)) == sorted(records)


def test_the_generators_make_clean_files_that_load_whole(tmp_path):
    """Without corruption every record loads as a row (the property above is not vacuous)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["id;when;score;amount;flag;comment"]
    lines += [f"S{i};{(start + timedelta(hours=i)).isoformat()};{i % 11};{i}.5;{'Yes' if i % 3 else 'No'};c{i}"
              for i in range(30)]
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    surveys, billing = read_mapped(path, mapping(";"), {"as_of": "2024-01-31"})
    assert (surveys.data.num_rows, len(surveys.rejects)) == (30, 0)
    assert (billing.data.num_rows, len(billing.rejects)) == (20, 0)
