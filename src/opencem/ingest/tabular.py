"""Readers for session records (xDR) and BSS tables arriving as CSV, JSON Lines or Parquet.

:func:`read_tabular` reads a file whose columns already carry canonical names (``xdr_voice.csv``);
:func:`read_mapped` applies a column mapping file (:mod:`opencem.ingest.mapping`) to any source
and can feed several tables from one file. Both return :class:`~opencem.ingest.parts.Part` lists.

A CSV record is one line (unless the mapping sets ``multiline_values``), so a stray quote costs
one line, never the rest of the file. Record numbers are line numbers for text formats (the
header is line 1) and 1..n for Parquet. Counts are conserved per part: data rows + rejects =
the records the part selects; a record that cannot be parsed at all is reported in every part,
since its ``where`` cannot be tested.

The formats have a module each: :mod:`opencem.ingest.tabular_csv` (with its broken-record
recovery), :mod:`opencem.ingest.tabular_jsonl`, and Parquet here; what they share (the frame
handed to the mapping step, a text file's line index) is :mod:`opencem.ingest.tabular_frame`.
The mapping step itself is :mod:`opencem.ingest.mapping_apply`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import TABLES, TIMESTAMP, Table
from .mapping import ColumnSource, Mapping, Source, Target, check_mapping, load_mapping
from .mapping_apply import apply_target
from .parts import Part, Reject
from .tabular_csv import _csv_header, _read_csv
from .tabular_frame import _first_line, _Frame
from .tabular_jsonl import _json_sniff, _read_jsonl
from .validate import IngestError

COMPRESSED = (".gz", ".bz2", ".zst")


def read_tabular(path: str | Path, table: str, tables: dict[str, Table] | None = None) -> list[Part]:
    """Read a CSV (``.csv``, ``.tsv``, optionally ``.gz``), JSON Lines (``.jsonl``) or Parquet
    file whose columns are named as ``table``'s. Columns the table does not have are ignored;
    times without an offset are UTC. ``tables``: where to find ``table`` (default: canonical)."""
    path = Path(path)
    tables = TABLES if tables is None else tables
    if table not in tables:
        raise IngestError(f"{path}: unknown table {table!r}")
    fmt = _format_of(path)
    source = Source(format=fmt, **({"delimiter": "\t"} if _plain_name(path).endswith(".tsv") else {}))
    spec = tables[table]
    found = _column_names(path, source)
    missing = [f.name for f in spec.columns if not f.nullable and f.name not in found]
    if missing:
        raise IngestError(f"{path}: column {missing[0]!r} required by table {table} is missing "
                          f"(found: {', '.join(sorted(found)) or 'no columns'})")
    columns = {f.name: ColumnSource(**{"from": f.name}) for f in spec.columns if f.name in found}
    return read_mapped(path, Mapping(source=source, targets=[Target(table=table, columns=columns)]),
                       tables=tables)


def read_mapped(path: str | Path, mapping: Mapping | str | Path, options: dict | None = None,
                tables: dict[str, Table] | None = None) -> list[Part]:
    """Read ``path`` as ``mapping`` (a loaded mapping or a mapping file) says: one part per target.

    ``options`` holds the values ``{option: NAME}`` columns take, e.g. ``{"as_of": date(...)}``;
    ``tables`` the target tables (default: the canonical ones; a workspace may add its own).
    Raises :class:`IngestError` (one sentence naming the file) when the file cannot be read at
    all, :class:`~opencem.ingest.mapping.MappingError` for a bad mapping; broken records
    become rejects with their line number and text.
    """
    path = Path(path)
    tables = TABLES if tables is None else tables
    if isinstance(mapping, Mapping):
        check_mapping(mapping, tables)
        m = mapping
    else:
        m = load_mapping(mapping, tables)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    needed = m.source_columns()
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[m.source.format]
    try:
        frame = reader(path, m.source, needed, _source_types(m, tables))
        return [_part(path, target, tables[target.table], frame, options or {}, m.source.decimal)
                for target in m.targets]
    except (pa.ArrowException, OSError, UnicodeError, csv.Error) as exc:
        raise IngestError(f"{path}: cannot be read as {m.source.format} ({_first_line(exc)})") from None


def _format_of(path: Path) -> str:
    name = _plain_name(path)
    for suffix, fmt in ((".csv", "csv"), (".tsv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                        (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise IngestError(f"{path}: unknown file type; use .csv, .tsv, .jsonl or .parquet")


def _plain_name(path: Path) -> str:
    name = path.name.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return name


def _column_names(path: Path, src: Source) -> list[str]:
    if src.format == "csv":
        return _csv_header(path, src).names
    if src.format == "parquet":
        return _parquet_schema(path).names
    return list(_json_sniff(path))  # the first MiB only


def _source_types(m: Mapping, tables: dict[str, Table]) -> dict[str, pa.DataType]:
    """The type to read each source column as, where one is certain: the target's type when the
    column is copied as is, float64 when scaled. Columns that are mapped, filtered, joined,
    parsed with a time format or read two ways are absent: they are read as they come (text)."""
    uses: dict[str, set] = {}
    for t in m.targets:
        for c in t.where:
            uses.setdefault(c.column, set()).add(None)
        for name, cs in t.columns.items():
            kind = tables[t.table].column(name).type
            if cs.from_ is None:
                for f in cs.template_fields():
                    uses.setdefault(f, set()).add(None)
            elif cs.map is not None:
                uses.setdefault(cs.from_, set()).add(None)
            elif cs.scale is not None:
                uses.setdefault(cs.from_, set()).add(pa.float64())
            elif pa.types.is_timestamp(kind):
                plain = cs.format is None and cs.timezone is None
                uses.setdefault(cs.from_, set()).add(TIMESTAMP if plain else None)
            else:
                uses.setdefault(cs.from_, set()).add(kind)
    return {c: next(iter(u)) for c, u in uses.items() if len(u) == 1 and None not in u}


# --- Parquet -----------------------------------------------------------------------------------

def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{path}: is not a readable Parquet file ({_first_line(exc)})") from None


def _read_parquet(path: Path, src: Source, needed: list[str], types: dict) -> _Frame:
    names = _parquet_schema(path).names
    missing = [c for c in needed if c not in names]
    if missing:
        raise IngestError(f"{path}: has no column {missing[0]!r}, which the mapping reads "
                          f"(found: {', '.join(names)})")
    table = pq.read_table(path, columns=needed)

    def texts(rows: np.ndarray) -> list[str | None]:
        records = table.take(pa.array(np.asarray(rows) - 1)).to_pylist()
        return [json.dumps(r, default=str) for r in records]

    return _Frame(table, np.arange(1, table.num_rows + 1), [], texts)


# --- one part per target ---------------------------------------------------------------------

def _part(path: Path, target: Target, spec: Table, frame: _Frame, options: dict, decimal: str) -> Part:
    """Apply ``target`` to the frame; rows with values that do not convert become rejects."""
    applied = apply_target(target, spec, frame.table, options, str(path), decimal)
    rows = frame.row_numbers if applied.keep is None else frame.row_numbers[applied.keep]
    rejects = list(frame.rejects)
    data = applied.data
    if applied.failed.any():
        for bad in applied.bad:
            numbers = rows[bad.rows]
            rejects += [Reject(int(n), reason, text, bad.column, value) for n, reason, text, value
                        in zip(numbers, bad.reasons, frame.texts(numbers), bad.values)]
        data, rows = data.filter(pa.array(~applied.failed)), rows[~applied.failed]
        rejects.sort(key=lambda r: r.row_number)
    return Part(target.table, data, rows, rejects)
