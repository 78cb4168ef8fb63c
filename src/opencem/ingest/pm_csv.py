"""Reader for wide vendor CSV PM exports (one row per cell and period, one column per counter).

The vendor's dictionary names the time, period, NE and cell columns and maps counter columns to
canonical counters; the columns become long rows first, so the dictionary is applied by the same
code as for XML files (:mod:`opencem.ingest.dictionary_apply`). Everything is done on whole
columns with pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary, load_dictionary
from .dictionary_apply import map_counters
from .parts import Part
from .pm_xml_rows import PMFileError


def read_vendor_csv(path: str | Path, dictionary: str | Path | CounterDictionary) -> pa.Table:
    """Read one vendor CSV export into the PM_COUNTERS long table, in canonical names and units.

    ``dictionary`` is a loaded dictionary, a vendor name or a YAML path; its ``csv`` layout names
    the key columns. Times without offset are read as UTC. object_dn is ``NE=<ne>,Cell=<cell>``
    and cell_id the cell name (the local cell id; ingest keys it, :mod:`opencem.ingest.cells`).
    A mapped counter whose columns are all absent is skipped; numeric columns the dictionary
    does not name are kept under their own name when ``keep_unmapped``. An empty field is a
    row with a null value.
    """
    return read_vendor_csv_part(path, dictionary).data


def read_vendor_csv_part(path: str | Path, dictionary: str | Path | CounterDictionary) -> Part:
    """As :func:`read_vendor_csv`, as an ingest Part whose row numbers are the CSV record
    (1-based data line) each row came from."""
    d = dictionary if isinstance(dictionary, CounterDictionary) else load_dictionary(dictionary)
    path = Path(path)
    if d.csv is None:
        raise PMFileError(path, f"dictionary for vendor {d.vendor!r} has format {d.format}, not csv")
    layout = d.csv
    keys = [layout.time_column, layout.period_column, layout.ne_column, layout.cell_column]
    sources = d.source_names()
    try:
        parse = pacsv.ParseOptions(delimiter=layout.delimiter)
        header = pacsv.open_csv(path, parse_options=parse).schema.names
        types = {c: pa.string() for c in keys if c != layout.period_column}
        types.update({c: pa.float64() for c in header if c in sources})
        table = pacsv.read_csv(path, parse_options=parse,
                               convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as exc:
        raise PMFileError(path, f"cannot be read as CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in keys if c not in table.column_names]
    if missing:
        raise PMFileError(path, f"lacks column(s) {', '.join(repr(c) for c in missing)} named in the "
                                f"{d.vendor} dictionary")
    for c in (layout.ne_column, layout.cell_column):
        if table[c].null_count:
            raise PMFileError(path, f"column {c!r} has empty values")
    n = table.num_rows

    try:
        start = pc.strptime(table[layout.time_column], format=layout.time_format, unit="ms")
        period = pc.multiply(table[layout.period_column].cast(pa.float64()), float(layout.period_unit_s))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PMFileError(path, f"has a bad time or period value ({str(exc).splitlines()[0]})") from None
    if start.null_count or period.null_count:
        raise PMFileError(path, f"has empty {layout.time_column!r} or {layout.period_column!r} values")

    # Every counter column becomes rows named like it; the dictionary maps them as it maps XML.
    counters = [c for c in table.column_names if c not in keys and _numeric(table.schema.field(c).type)]
    k = len(counters)
    object_dn = pc.binary_join_element_wise("NE=", table[layout.ne_column], ",Cell=",
                                            table[layout.cell_column], "")
    tile = lambda col: pa.chunked_array([c for _ in range(k) for c in col.chunks],  # noqa: E731
                                        col.type)
    columns = {
        "object_dn": tile(object_dn),
        "managed_element": tile(table[layout.ne_column]),
        "cell_id": tile(table[layout.cell_column]),
        "period_start": tile(start.cast(TIMESTAMP)),
        "granularity_s": tile(pc.round(period).cast(pa.int32())),
        "counter_name": pa.array(counters, pa.string()).take(pa.array(np.repeat(np.arange(k), n))),
        "value": pa.chunked_array([c for name in counters for c in table[name].cast(pa.float64()).chunks],
                                  pa.float64()),
        "vendor": pa.nulls(n * k, pa.string()).fill_null(d.vendor),
        "suspect": pa.nulls(n * k, pa.bool_()).fill_null(False),
    }
    raw = pa.table(columns).cast(PM_COUNTERS.schema)
    mapped, rows = map_counters(raw, d, np.tile(np.arange(1, n + 1), k))
    return Part("pm_counters", mapped, rows)


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
