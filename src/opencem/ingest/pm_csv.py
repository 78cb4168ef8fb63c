"""Reader for wide vendor CSV PM exports (one row per cell and period, one column per counter).

The vendor's dictionary names the time, period, NE and cell columns and maps counter columns to
canonical counters; the columns become long rows first, so the dictionary is applied by the same
code as for XML files (:mod:`opencem.ingest.dictionary_apply`). Everything is done on whole
columns with pyarrow.

Records are read as the tabular CSV reader reads them (:mod:`opencem.ingest.tabular_csv`): one
line each, numbered by line (the header is line 1), a broken line (too few or too many fields, an
unterminated quote, not UTF-8) set aside with its text. A record is rejected whole when a key is
unusable (a time that does not match the dictionary's format, a period that is not a positive
number, an empty NE or cell); one counter value that is not a number is rejected alone, with its
column and text, and the record's other counters load. Only a file that cannot be read at all
(empty, no header, a key column missing) is refused. Counter columns are those the dictionary
reads, plus, when it keeps unmapped counters, every other column whose values are all numbers
(a column with text in it is a label, not a counter, and is not read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary, load_dictionary
from .dictionary_apply import map_part
from .mapping import Source
from .parts import Part, Reject
from .pm_xml_rows import PMFileError
from .tabular_csv import _csv_header, _read_csv
from .validate import IngestError

# What pyarrow's float parser takes, less what no counter is (inf, nan): the values read as numbers.
_NUMBER = r"^[ \t]*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?[ \t]*$"


def read_vendor_csv(path: str | Path, dictionary: str | Path | CounterDictionary) -> pa.Table:
    """Read one vendor CSV export into the PM_COUNTERS long table, in canonical names and units.

    ``dictionary`` is a loaded dictionary, a vendor name or a YAML path; its ``csv`` layout names
    the key columns. Times without offset are read as UTC. object_dn is ``NE=<ne>,Cell=<cell>``
    and cell_id the cell name (the local cell id; ingest keys it, :mod:`opencem.ingest.cells`).
    A mapped counter whose columns are all absent is skipped; numeric columns the dictionary
    does not name are kept under their own name when ``keep_unmapped``. An empty field is a
    row with a null value. Records and values that cannot be used are left out;
    :func:`read_vendor_csv_part` reports them.
    """
    return read_vendor_csv_part(path, dictionary).data


def read_vendor_csv_part(path: str | Path, dictionary: str | Path | CounterDictionary) -> Part:
    """As :func:`read_vendor_csv`, as an ingest Part: each row numbered by the line of its
    record (the header is line 1), with a reject per broken record and per counter value that is
    not a number (module notes)."""
    d = dictionary if isinstance(dictionary, CounterDictionary) else load_dictionary(dictionary)
    path = Path(path)
    if d.csv is None:
        raise PMFileError(path, f"dictionary for vendor {d.vendor!r} has format {d.format}, not csv")
    layout = d.csv
    keys = [layout.time_column, layout.period_column, layout.ne_column, layout.cell_column]
    src = Source(format="csv", delimiter=layout.delimiter)
    try:
        header = _csv_header(path, src).names
        missing = [c for c in keys if c not in header]
        if missing:
            raise PMFileError(path, f"lacks column(s) {', '.join(repr(c) for c in missing)} named in the "
                                    f"{d.vendor} dictionary")
        types = {c: pa.string() if c in keys else pa.float64() for c in header}
        frame = _read_csv(path, src, header, types)
    except IngestError as exc:
        raise PMFileError(path, str(exc).removeprefix(f"{path}: ")) from None
    except (pa.ArrowException, OSError, UnicodeError) as exc:
        raise PMFileError(path, f"cannot be read as CSV ({str(exc).splitlines()[0]})") from None
    table, lines = frame.table, frame.row_numbers
    rejects = list(frame.rejects)
    n = table.num_rows

    # Keys: a record whose time, period, NE or cell cannot be used is rejected whole.
    start = pc.strptime(table[layout.time_column], format=layout.time_format, unit="ms", error_is_null=True)
    period_text = table[layout.period_column]
    period = _numbers(period_text)[0]
    problems = [
        (pc.is_null(start), layout.time_column, f"is not a time in the format {layout.time_format!r}"),
        (pc.invert(pc.greater(period, 0.0).fill_null(False)), layout.period_column, "is not a positive number"),
        (_empty(table[layout.ne_column]), layout.ne_column, "is empty"),
        (_empty(table[layout.cell_column]), layout.cell_column, "is empty"),
    ]
    bad_record = np.zeros(n, bool)
    record_rejects: list[tuple[int, int, str, str | None]] = []  # (position, line, field, reason)
    for mask, column, reason in problems:
        new = np.asarray(mask.to_numpy(zero_copy_only=False), bool) & ~bad_record
        bad_record |= new
        record_rejects += [(int(i), int(lines[i]), column, reason) for i in np.flatnonzero(new)]

    # Counters: every counter column becomes rows named like it; a value that is not a number is
    # rejected alone. The dictionary then maps them as it maps XML.
    sources = d.source_names()
    counters, values, bad_values = [], [], []
    for name in header:
        if name in keys:
            continue
        value, bad = _numbers(table[name])
        if bad.any() and name not in sources:
            continue  # text in a column the dictionary does not read: a label, not a counter
        counters.append(name)
        values.append(value)
        bad_values.append(bad)
    bad_lines = sorted({line for _, line, _, _ in record_rejects}
                       | {int(lines[i]) for bad in bad_values for i in np.flatnonzero(bad & ~bad_record)})
    by_line = dict(zip(bad_lines, frame.texts(np.array(bad_lines, np.int64)))) if bad_lines else {}
    for i, line, column, reason in record_rejects:
        raw = table[column][i].as_py()
        rejects.append(Reject(line, f"{column} {raw!r} {reason}" if raw is not None else f"{column} {reason}",
                              by_line.get(line), column, raw))
    for name, bad in zip(counters, bad_values):
        for i in np.flatnonzero(bad & ~bad_record):
            raw = table[name][int(i)].as_py()
            rejects.append(Reject(int(lines[i]), f"{name} value {raw!r} is not a number", by_line.get(int(lines[i])),
                                  name, raw))
    rejects.sort(key=lambda r: r.row_number)

    k = len(counters)
    keep = np.concatenate([~bad_record & ~bad for bad in bad_values]) if k else np.zeros(0, bool)
    object_dn = pc.binary_join_element_wise("NE=", table[layout.ne_column], ",Cell=", table[layout.cell_column], "")
    tile = lambda col: pa.chunked_array([c for _ in range(k) for c in col.chunks], col.type)  # noqa: E731
    granularity = pc.round(pc.multiply(period, float(layout.period_unit_s)))
    columns = {
        "object_dn": tile(object_dn),
        "managed_element": tile(table[layout.ne_column]),
        "cell_id": tile(table[layout.cell_column]),
        "period_start": tile(start.cast(TIMESTAMP)),
        "granularity_s": tile(pc.if_else(pc.less(granularity, 2.0**31), granularity, None).cast(pa.int32())),
        "counter_name": pa.array(counters, pa.string()).take(pa.array(np.repeat(np.arange(k), n))),
        "value": pa.chunked_array([c for v in values for c in v.chunks], pa.float64()),
        "vendor": pa.nulls(n * k, pa.string()).fill_null(d.vendor),
        "suspect": pa.nulls(n * k, pa.bool_()).fill_null(False),
    }
    raw = pa.table(columns).filter(pa.array(keep)).cast(PM_COUNTERS.schema)
    return map_part(raw, np.tile(lines, k)[keep], rejects, d)


def _numbers(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """A column as float64 (empty: null), and where it holds text that is not a number."""
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.float64()), np.zeros(len(column), bool)
    text = pc.utf8_trim(column, " \t")
    number = pc.match_substring_regex(text, _NUMBER)
    empty = pc.or_(pc.is_null(text), pc.equal(text, "")).fill_null(True)
    value = pc.cast(pc.if_else(number, text, pa.scalar(None, pa.string())), pa.float64())
    bad = pc.and_(pc.invert(number.fill_null(False)), pc.invert(empty))
    return value, np.asarray(bad.to_numpy(zero_copy_only=False), bool)


def _empty(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.or_(pc.is_null(column), pc.equal(pc.utf8_trim(column, " \t"), "")).fill_null(True)
