"""Readers for session records (xDR) and BSS tables arriving as CSV, JSON Lines or Parquet.

:func:`read_tabular` reads a file whose columns already carry canonical names (``xdr_voice.csv``);
:func:`read_mapped` applies a column mapping file (:mod:`opencem.ingest.mapping`) to any source
and can feed several tables from one file. Both return :class:`~opencem.ingest.parts.Part` lists.

A CSV record is one line (unless the mapping sets ``multiline_values``), so a stray quote costs
one line, never the rest of the file. Record numbers are line numbers for text formats (the
header is line 1) and 1..n for Parquet. Counts are conserved per part: data rows + rejects =
the records the part selects; a record that cannot be parsed at all is reported in every part,
since its ``where`` cannot be tested.

The happy path is pyarrow's multi-threaded reader asked for the target types, plus one
vectorised pass counting lines to prove that every line became exactly one row. Otherwise the
careful path indexes the file by line with numpy: lines that are not UTF-8 and lines that end
inside a quote are set aside, broken rows are matched to their lines by their text, and only
when records still do not line up with lines does a serial parse place them one by one.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..schema import TABLES, TIMESTAMP, Table
from .mapping import (ColumnSource, Mapping, Source, Target, apply_target, check_mapping, load_mapping,
                      values_failing)
from .parts import Part, Reject
from .validate import IngestError

COMPRESSED = (".gz", ".bz2", ".zst")
HEAD_BYTES = 1 << 20  # the header (and JSON type sniffing) must fit in the first MiB
CHUNK = 1 << 24
JSON_BLOCK_LINES = 8192
MAX_RETYPES = 3  # columns read again as text, one parse each, before all are
MAX_SUSPECTS = 10_000  # lines with an odd number of quotes checked one by one
MAX_PASSES = 8  # serial parses setting aside lines that swallow the next
NOT_UTF8 = "is not valid UTF-8 text (check the file's encoding)"
UNTERMINATED = "has an unterminated quote (its value runs over the line end)"


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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- what a format reader hands the mapping step -------------------------------------------------

@dataclass
class _Frame:
    table: pa.Table  # source columns the mapping reads
    row_numbers: np.ndarray  # 1-based record number per row (a line for text formats)
    rejects: list[Reject]  # records that could not be parsed at all
    texts: Callable[[np.ndarray], list[str | None]]  # raw text of records by number


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


# --- CSV ---------------------------------------------------------------------------------------

def _open(path: Path, src: Source) -> pa.NativeFile:
    stream = pa.input_stream(str(path), compression="detect")
    if src.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        stream = pa.transcoding_input_stream(stream, src.encoding, "utf-8")
    return stream


@dataclass
class _Header:
    names: list[str]
    end: int  # byte offset of the first data line (in the UTF-8 text)
    lines: int  # lines before the first data line


def _csv_header(path: Path, src: Source) -> _Header:
    with _open(path, src) as f:
        head = f.read(HEAD_BYTES)
    if not head.strip():
        raise IngestError(f"{path}: is empty")
    if b"\0" in head[:8192]:
        raise IngestError(f"{path}: is binary data, not CSV text")
    bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    breaks = [m.end() for m in re.finditer(rb"\r\n|\r|\n", head)]
    wanted = src.skip_rows + (1 if src.header else 0)
    if wanted == 0:
        end = bom
    elif len(breaks) >= wanted:
        end = breaks[wanted - 1]
    elif len(breaks) == wanted - 1 and len(head) < HEAD_BYTES:  # the last line, without a break
        end = len(head)
    else:
        problem = "has no header line" if src.header else f"has fewer than {src.skip_rows} lines"
        raise IngestError(f"{path}: {problem} within its first MiB")
    names = src.columns
    if src.header:
        start = breaks[src.skip_rows - 1] if src.skip_rows else bom
        try:
            line = head[start:end].decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise IngestError(f"{path}: the header line is not UTF-8 text; "
                              "set encoding in the mapping") from None
        quoting = dict(quotechar=src.quote) if src.quote else dict(quoting=csv.QUOTE_NONE)
        found = next(csv.reader([line], delimiter=src.delimiter, **quoting), [])
        found = [n.strip() for n in found]
        if names and len(names) != len(found):
            raise IngestError(f"{path}: has {len(found)} columns but the mapping names {len(names)}")
        names = names or found
    if not names or not any(names):
        raise IngestError(f"{path}: has no column names")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise IngestError(f"{path}: column {dup!r} appears twice in the header")
    return _Header(list(names), end, wanted)


def _column_names(path: Path, src: Source) -> list[str]:
    if src.format == "csv":
        return _csv_header(path, src).names
    if src.format == "parquet":
        return _parquet_schema(path).names
    return list(_json_sniff(path))  # the first MiB only


def _read_csv(path: Path, src: Source, needed: list[str], types: dict) -> _Frame:
    header = _csv_header(path, src)
    missing = [c for c in needed if c not in header.names]
    if missing:
        raise IngestError(f"{path}: has no column {missing[0]!r}, which the mapping reads "
                          f"(found: {', '.join(header.names)})")

    def data_part() -> pa.NativeFile:
        f = _open(path, src)
        f.read(header.end)
        return f

    table, invalid = _parse_csv(data_part, src, header.names, needed, types)
    if table is not None and not invalid:
        with _open(path, src) as f:
            lines, last = _count_lines(f, universal=True)
        lines -= header.lines
        if lines == table.num_rows:  # every line became exactly one row
            first, rejects = header.lines + 1, []
            if lines and not src.multiline_values and src.quote and last.count(src.quote.encode()) % 2 \
                    and _ends_in_quotes(last, src, header.names):  # a file cut inside a quoted value
                rejects = [Reject(header.lines + lines, UNTERMINATED, last.decode("utf-8", "backslashreplace"))]
                table = table.slice(0, lines - 1)
            return _Frame(table, np.arange(first, first + table.num_rows), rejects,
                          _lazy_texts(path, src, universal=True))
    parsed = (table, invalid) if table is not None else None
    return _csv_careful(path, src, header, needed, types, parsed)


def _parse_csv(open_data: Callable[[], pa.NativeFile], src: Source, names: list[str],
               needed: list[str], types: dict) -> tuple[pa.Table | None, list[tuple[int, int, str]]]:
    """Multi-threaded parse of the needed columns in their planned types; a column with a value
    that does not convert is read again as text (validation then quarantines the value, and
    times are parsed by the mapping step). Returns the table (None when pyarrow cannot parse
    the text) and the broken rows: (fields, expected, text)."""
    invalid: list[tuple[int, int, str]] = []

    def handler(row) -> str:
        invalid.append((row.actual_columns, row.expected_columns, row.text))
        return "skip"

    attempt = {c: types.get(c, pa.string()) for c in needed}
    for retry in range(MAX_RETYPES + 2):
        invalid.clear()
        try:
            with open_data() as f, _quiet_undecodable_rows():
                return pacsv.read_csv(f, **_csv_options(src, names, attempt, needed, handler)), invalid
        except pa.ArrowInvalid as exc:
            column = re.match(r"In CSV column #(\d+): CSV conversion error", str(exc))
            if column is None or "UTF8" in str(exc) or attempt.get(names[int(column[1])]) == pa.string():
                break
            if retry < MAX_RETYPES:
                attempt[names[int(column[1])]] = pa.string()
            else:  # many columns that do not convert: all as text, in one more pass
                attempt = dict.fromkeys(needed, pa.string())
    return None, invalid


@contextlib.contextmanager
def _quiet_undecodable_rows():
    """pyarrow cannot hand a broken row that is not UTF-8 to the row handler: it prints the
    decode error and fails the read. The careful path deals with such files; hide the print."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, UnicodeDecodeError):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _csv_options(src: Source, names: list[str], types: dict, include: list[str] | None,
                 handler, threads: bool = True) -> dict:
    """pyarrow options for the data lines (the header is read separately); ``types`` empty:
    every column as text."""
    types = types or dict.fromkeys(include or names, pa.string())
    return dict(
        read_options=pacsv.ReadOptions(column_names=names, use_threads=threads, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(delimiter=src.delimiter, quote_char=src.quote or False,
                                         newlines_in_values=src.multiline_values,
                                         invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include,
                                             decimal_point=src.decimal,
                                             null_values=src.null_values, strings_can_be_null=True,
                                             quoted_strings_can_be_null=False))


def _csv_careful(path: Path, src: Source, header: _Header, needed: list[str], types: dict,
                 parsed: tuple[pa.Table, list] | None) -> _Frame:
    """Read a file with broken records: place every record on its lines and reject by line.

    Lines that are not UTF-8 are set aside first, then (unless values may span lines) lines
    that leave a quote open, which would swallow the lines after them. When every remaining
    line is one record, broken ones are found by their text at multi-threaded speed. Otherwise
    records are placed by a serial parse; the first line of a record that runs over its line
    end is set aside and the lines it swallowed are read again, on their own.
    """
    lines = _Lines.of(path, src, universal=True)
    data_lines = np.arange(header.lines, len(lines.starts))
    found = None if parsed is None else _broken_lines(lines, data_lines, parsed[0].num_rows, parsed[1])
    if found is not None:  # the first parse only skipped broken lines: keep it
        return _found_frame(lines, parsed[0], found, {})
    reasons = {int(i): NOT_UTF8 for i in data_lines[lines.invalid_utf8()[header.lines:]]}
    kept = data_lines[~np.isin(data_lines, np.fromiter(reasons, np.int64, len(reasons)))]
    suspects = None if src.multiline_values else _open_quote_lines(lines, kept, src, header.names)
    if suspects is not None:
        reasons.update({int(i): UNTERMINATED for i in suspects})
        kept = kept[~np.isin(kept, suspects)]
        table, invalid = _parse_csv(lambda: pa.BufferReader(lines.join(kept)), src, header.names,
                                    needed, types)
        found = None if table is None else _broken_lines(lines, kept, table.num_rows, invalid)
        if found is not None:
            return _found_frame(lines, table, found, reasons)
    for attempt in range(MAX_PASSES):
        kept = data_lines[~np.isin(data_lines, np.fromiter(reasons, np.int64, len(reasons)))]
        table, broken = _parse_lines(lines, kept, src, header.names)
        starts, spans, is_broken = _place_records(path, lines, kept, table, broken)
        spanning = np.flatnonzero(spans > 1)
        if src.multiline_values or len(spanning) == 0 or attempt == MAX_PASSES - 1:
            break
        reasons.update({int(kept[starts[i]]): UNTERMINATED for i in spanning})
    rejects = [Reject(i + 1, reason, lines.text(i + 1)) for i, reason in reasons.items()]
    blank = lines.ends[kept] == lines.starts[kept]
    for ordinal in np.flatnonzero(is_broken | ((spans > 1) & (not src.multiline_values))):
        start, span = int(starts[ordinal]), int(spans[ordinal])
        number = int(kept[start]) + 1
        b = broken.get(int(ordinal))
        if span == 1 or src.multiline_values:
            text = lines.text(number) if span == 1 else b[2]
            rejects.append(Reject(number, _fields(b[0], b[1]), text))
            continue
        # Only when stray quotes keep swallowing lines pass after pass.
        rejects.append(Reject(number, UNTERMINATED, lines.text(number)))
        rejects += [Reject(int(kept[i]) + 1, f"follows the unterminated quote on line {number}",
                           lines.text(int(kept[i]) + 1))
                    for i in range(start + 1, start + span) if not blank[i]]
    valid = np.flatnonzero(~is_broken)
    single = (spans[valid] == 1) | src.multiline_values
    if not single.all():
        table = table.filter(pa.array(single))
    rows = kept[starts[valid[single]]] + 1
    rejects.sort(key=lambda r: r.row_number)
    return _Frame(table.select(needed), rows, rejects, lines.texts)


def _found_frame(lines: _Lines, table: pa.Table, found: tuple[np.ndarray, dict],
                 reasons: dict[int, str]) -> _Frame:
    """The frame when every kept line is one record: set-aside and broken lines as rejects."""
    rows, broken = found
    rejects = [Reject(i + 1, reason, lines.text(i + 1)) for i, reason in reasons.items()]
    rejects += [Reject(i + 1, _fields(actual, expected), lines.text(i + 1))
                for i, (actual, expected) in broken.items()]
    rejects.sort(key=lambda r: r.row_number)
    return _Frame(table, rows + 1, rejects, lines.texts)


def _open_quote_lines(lines: _Lines, kept: np.ndarray, src: Source, names: list[str]
                      ) -> np.ndarray | None:
    """Kept lines that, read alone, end inside a quoted value; None when too many lines have an
    odd number of quotes to check one by one (the serial parse then finds them)."""
    if src.quote is None:
        return np.zeros(0, np.int64)
    odd = kept[lines.odd_quotes(src.quote)[kept]]
    if len(odd) > MAX_SUSPECTS:
        return None
    return np.array([i for i in odd
                     if _ends_in_quotes(lines.data[lines.starts[i]:lines.ends[i]], src, names)], np.int64)


def _ends_in_quotes(line: bytes, src: Source, names: list[str]) -> bool:
    """Read alone, ``line`` ends inside a quoted value: then it swallows a line put after it,
    giving one record instead of two."""
    broken: list[int] = []
    after = next(c for c in "xyz" if c not in (src.delimiter, src.quote)).encode()
    table = pacsv.read_csv(pa.BufferReader(line + b"\n" + after + b"\n"), **_csv_options(
        src, names, {}, None, lambda row: broken.append(1) or "skip", threads=False))
    return table.num_rows + len(broken) < 2


def _fields(actual: int, expected: int) -> str:
    return f"has {actual} field{'s' * (actual != 1)}, expected {expected}"


def _broken_lines(lines: _Lines, kept: np.ndarray, n_rows: int, invalid: list[tuple[int, int, str]]
                  ) -> tuple[np.ndarray, dict[int, tuple[int, int]]] | None:
    """When the kept lines are one record each: (line index of each row, broken line index ->
    (fields, expected)), found by matching the broken rows' text to the lines. None when the
    records do not line up with the lines, or a text does not pick out its line alone."""
    records = kept[lines.ends[kept] > lines.starts[kept]]
    if n_rows + len(invalid) != len(records):
        return None
    if not invalid:
        return records, {}
    if any("\n" in text or "\r" in text for _, _, text in invalid):
        return None  # a quoted value ran into the blank line after it
    # Line values carry their line break: match every way a record's text can end.
    counts = {(text + end).encode(): (actual, expected)
              for actual, expected, text in invalid for end in ("", "\n", "\r\n", "\r")}
    values = lines.values()
    matched = pc.is_in(values, value_set=pa.array(list(counts), pa.large_binary()))
    matched = matched.to_numpy(zero_copy_only=False)[records]
    if int(matched.sum()) != len(invalid):
        return None
    broken = {int(i): counts[values[int(i)].as_py()] for i in records[matched]}
    return records[~matched], broken


def _parse_lines(lines: _Lines, kept: np.ndarray, src: Source, names: list[str]
                 ) -> tuple[pa.Table, dict[int, tuple[int, int, str]]]:
    """Parse the ``kept`` lines serially, all columns as text. Returns the rows and the broken
    records by ordinal: (fields, expected fields, text)."""
    text = lines.join(kept)
    broken: dict[int, tuple[int, int, str]] = {}

    def handler(row) -> str:
        ordinal = -1 if row.number is None else row.number - 1
        broken[ordinal] = (row.actual_columns, row.expected_columns, row.text)
        return "skip"

    if not (lines.ends[kept] > lines.starts[kept]).any():  # no records, only blank lines
        return pa.table({c: pa.array([], pa.string()) for c in names}), broken
    table = pacsv.read_csv(pa.BufferReader(text),
                           **_csv_options(src, names, {}, None, handler, threads=False))
    if -1 in broken:  # serial parsing numbers every record; this guards the assumption
        raise pa.ArrowInvalid("a broken record came without its record number")
    return table, broken


def _place_records(path: Path, lines: _Lines, kept: np.ndarray, table: pa.Table,
                   broken: dict[int, tuple[int, int, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each record in order: index into ``kept`` of its first line, lines it spans, broken."""
    n_records = table.num_rows + len(broken)
    is_broken = np.zeros(n_records, bool)
    is_broken[list(broken)] = True
    blank = lines.ends[kept] == lines.starts[kept]
    spans = np.ones(n_records, np.int64)
    if n_records == int((~blank).sum()):
        return np.flatnonzero(~blank), spans, is_broken
    spans[~is_broken] += _breaks_per_row(table)  # some records span lines: count their breaks
    spans[is_broken] += np.array([len(re.findall(r"\r\n|\r|\n", broken[i][2]))
                                  for i in sorted(broken)], np.int64)
    starts = _place(spans, blank)
    if starts is None:
        raise IngestError(f"{path}: its records cannot be matched to its lines; check the quote "
                          "character and delimiter")
    return starts, spans, is_broken


def _breaks_per_row(table: pa.Table) -> np.ndarray:
    """Line breaks (LF, CRLF, lone CR) inside each row's values."""
    total = np.zeros(table.num_rows, np.int64)
    for column in table.columns:
        for pattern, sign in (("\n", 1), ("\r", 1), ("\r\n", -1)):
            total += sign * pc.count_substring(column, pattern).fill_null(0).to_numpy(zero_copy_only=False)
    return total


def _place(spans: np.ndarray, blank: np.ndarray) -> np.ndarray | None:
    """First line index of each record, records taking ``spans`` lines and skipping blank lines
    between them; None when they do not add up to the lines."""
    if not blank.any():
        starts = np.cumsum(spans) - spans
        return starts if starts.size == 0 or starts[-1] + spans[-1] == len(blank) else None
    starts, at = np.empty(len(spans), np.int64), 0
    for i, span in enumerate(spans.tolist()):  # only files with blank lines and multi-line records
        while at < len(blank) and blank[at]:
            at += 1
        starts[i], at = at, at + span
    return starts if at <= len(blank) and not (~blank[at:]).any() else None


def _count_lines(stream: pa.NativeFile, universal: bool) -> tuple[int, bytes]:
    """Lines in a stream (breaks: LF, CRLF and, if ``universal``, a lone CR; a last line
    without a break counts), and the last line's text."""
    n, last, pending_cr, tail = 0, None, False, b""
    while chunk := stream.read(CHUNK):
        a = np.frombuffer(chunk, np.uint8)
        n += int(np.count_nonzero(a == 10))
        if universal:
            if pending_cr and a[0] != 10:
                n += 1
            if b"\r" in chunk:  # a CR ends a line unless an LF follows
                n += int(np.count_nonzero((a[:-1] == 13) & (a[1:] != 10)))
            pending_cr = bool(a[-1] == 13)
        last = int(a[-1])
        tail = chunk[-HEAD_BYTES:] if len(chunk) >= HEAD_BYTES else (tail + chunk)[-HEAD_BYTES:]
    n += 1 if pending_cr or (last is not None and last not in (10, 13)) else 0
    return n, re.split(rb"\r\n|\r|\n", tail.rstrip(b"\r\n"))[-1]


def _lazy_texts(path: Path, src: Source, universal: bool) -> Callable[[np.ndarray], list[str | None]]:
    """Raw line texts by number, the file indexed on first use (only when something failed)."""
    lines = functools.cache(lambda: _Lines.of(path, src, universal))
    return lambda numbers: lines().texts(numbers)


class _Lines:
    """A text file held in memory with the byte range of each line (careful path only)."""

    def __init__(self, data: bytes, universal: bool):
        self.data = data
        a = np.frombuffer(data, np.uint8)
        n = len(a)
        lf = np.concatenate([np.flatnonzero(a[o:o + CHUNK] == 10) + o for o in range(0, n, CHUNK)]
                            or [np.zeros(0, np.int64)])
        brk = lf
        if universal and b"\r" in data:
            cr = np.concatenate([np.flatnonzero(a[o:o + CHUNK] == 13) + o for o in range(0, n, CHUNK)])
            lone = cr[(cr + 1 >= n) | (a[np.minimum(cr + 1, n - 1)] != 10)]
            brk = np.sort(np.concatenate([lf, lone]))
        ends = brk.copy()
        crlf = (a[brk] == 10) & (brk > 0) & (a[np.maximum(brk - 1, 0)] == 13)
        ends[crlf] -= 1
        self.starts = np.r_[0, brk + 1].astype(np.int64)
        self.ends = np.r_[ends, n].astype(np.int64)
        if self.starts[-1] == n:  # nothing after the last line break
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]

    @classmethod
    def of(cls, path: Path, src: Source, universal: bool = True) -> _Lines:
        with _open(path, src) as f:
            return cls(f.read(), universal)

    def text(self, number: int) -> str:
        i = number - 1
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8", "backslashreplace")

    def texts(self, numbers: np.ndarray) -> list[str | None]:
        return [self.text(int(n)) for n in numbers]

    def odd_quotes(self, quote: str) -> np.ndarray:
        """Per line: holds an odd number of ``quote`` characters (a chunk at a time)."""
        a, q = np.frombuffer(self.data, np.uint8), ord(quote)
        odd = np.zeros(len(self.starts), np.uint8)
        for o in range(0, len(a), CHUNK):
            hits = (a[o:o + CHUNK] == q).view(np.uint8)
            first = int(np.searchsorted(self.starts, o))  # first line starting in this chunk
            at = self.starts[first:np.searchsorted(self.starts, o + len(hits))] - o
            if len(at) == 0 or at[0] != 0:  # the chunk opens inside the line before
                at, first = np.r_[0, at], first - 1
            odd[first:first + len(at)] ^= np.bitwise_xor.reduceat(hits, at)
        return odd == 1

    def values(self) -> pa.Array:
        """Each line with its line break, as binary values over the file's bytes (no copy)."""
        offsets = np.r_[self.starts, len(self.data)].astype(np.int64)
        return pa.Array.from_buffers(pa.large_binary(), len(self.starts),
                                     [None, pa.py_buffer(offsets), pa.py_buffer(self.data)])

    @functools.cached_property
    def _invalid_utf8(self) -> np.ndarray:
        return values_failing(self.values(), lambda a: a.cast(pa.large_string()))

    def invalid_utf8(self) -> np.ndarray:
        """Per line: not valid UTF-8. Whole-file check first, halving only where it fails."""
        return self._invalid_utf8

    def join(self, indices: np.ndarray) -> pa.Buffer:
        """The text of the given lines (ascending) with their breaks; no copy for one run."""
        whole = pa.py_buffer(self.data)
        if len(indices) == 0:
            return whole.slice(0, 0)
        nexts = np.r_[self.starts[1:], len(self.data)]
        runs = np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1)
        pieces = [whole.slice(int(self.starts[r[0]]), int(nexts[r[-1]] - self.starts[r[0]]))
                  for r in runs]
        return pieces[0] if len(pieces) == 1 else pa.py_buffer(b"".join(memoryview(p) for p in pieces))


# --- JSON Lines ------------------------------------------------------------------------------

def _json_sniff(path: Path, lines: _Lines | None = None) -> dict[str, pa.DataType]:
    """Field names and types seen in the first MiB of a JSON Lines file (UTF-8 lines only)."""
    if lines is None:
        with pa.input_stream(str(path), compression="detect") as f:
            head = f.read(HEAD_BYTES)
        lines = _Lines(head[:head.rfind(b"\n") + 1] if len(head) == HEAD_BYTES else head, universal=False)
    if not lines.data.strip():
        raise IngestError(f"{path}: is empty")
    if b"\0" in lines.data[:8192]:
        raise IngestError(f"{path}: is binary data, not JSON Lines text")
    records, _ = _json_records(lines)
    parsed, _, _ = _json_blocks(lines, records[lines.starts[records] < HEAD_BYTES], pajson.ParseOptions())
    fields: dict[str, pa.DataType] = {}
    for t in parsed:
        for f in t.schema:
            if pa.types.is_null(fields.get(f.name, pa.null())):
                fields[f.name] = f.type
            elif not pa.types.is_null(f.type) and fields[f.name] != f.type:
                fields[f.name] = pa.float64() if _numeric(fields[f.name], f.type) else pa.string()
    if not fields:
        raise IngestError(f"{path}: has no JSON objects in its first MiB")
    return fields


def _numeric(*types: pa.DataType) -> bool:
    return all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)


def _json_type(seen: pa.DataType, planned: pa.DataType | None) -> pa.DataType:
    """Read a JSON field as its values look, widened where the target needs it. Times stay
    text: the mapping step parses them, so a bad time rejects its record with the field named,
    as for CSV, and formats and time zones are handled in one place."""
    if planned is not None and pa.types.is_floating(planned) and _numeric(seen):
        return pa.float64()
    if pa.types.is_null(seen) or pa.types.is_timestamp(seen):
        return pa.string()
    return seen


def _read_jsonl(path: Path, src: Source, needed: list[str], types: dict) -> _Frame:
    """JSON Lines, held in memory: pyarrow's JSON reader does not check UTF-8, so lines that
    are not UTF-8 are set aside first; lines that do not parse are found by halving blocks."""
    lines = _Lines.of(path, Source(format="jsonl"), universal=False)
    seen = _json_sniff(path, lines)
    missing = [c for c in needed if c not in seen]
    if missing:
        raise IngestError(f"{path}: has no field {missing[0]!r}, which the mapping reads, in its "
                          "first records")
    schema = pa.schema([(c, _json_type(seen[c], types.get(c))) for c in needed])
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise IngestError(f"{path}: field {nested[0]!r} holds objects or arrays, not values")
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    records, rejects = _json_records(lines)
    if not rejects:
        try:
            table = pajson.read_json(pa.BufferReader(lines.data), parse_options=options,
                                     read_options=pajson.ReadOptions(block_size=1 << 24))
            if table.num_rows == len(records):
                return _Frame(table.select(needed), records + 1, [], lines.texts)
        except pa.ArrowInvalid:
            pass
    parsed, rows, broken = _json_blocks(lines, records, options)
    table = pa.concat_tables(parsed) if parsed else schema.empty_table()
    return _Frame(table.select(needed), rows, sorted(rejects + broken, key=lambda r: r.row_number),
                  lines.texts)


def _json_records(lines: _Lines) -> tuple[np.ndarray, list[Reject]]:
    """Lines that may hold a record (UTF-8, starting with ``{``), and rejects for the others;
    lines of only white space are not records. pyarrow must not see a line that is not an
    object: one starting with ``null`` crashes its JSON reader (pyarrow 26)."""
    bad_text = lines.invalid_utf8()
    rejects = [Reject(int(i) + 1, NOT_UTF8, lines.text(int(i) + 1)) for i in np.flatnonzero(bad_text)]
    candidates = np.flatnonzero((lines.ends > lines.starts) & ~bad_text)
    first = np.frombuffer(lines.data, np.uint8)[lines.starts[candidates]]
    opening = first == ord("{")
    for j in np.flatnonzero(np.isin(first, [32, 9, 13])):  # white space first: look past it
        stripped = lines.data[lines.starts[candidates[j]]:lines.ends[candidates[j]]].lstrip(b" \t\r")
        opening[j] = stripped.startswith(b"{") or not stripped
        first[j] = 0 if not stripped else first[j]
    rejects += [Reject(int(i) + 1, "is not a JSON object", lines.text(int(i) + 1))
                for i in candidates[~opening]]
    return candidates[opening & (first != 0)], rejects


def _json_blocks(lines: _Lines, candidates: np.ndarray, options: pajson.ParseOptions
                 ) -> tuple[list[pa.Table], np.ndarray, list[Reject]]:
    """Parse candidate lines in blocks; a block that fails is halved until the bad lines are
    alone. Returns tables in line order, their line numbers and the rejected lines."""
    tables: list[tuple[int, pa.Table, np.ndarray]] = []
    rejects: list[Reject] = []
    todo = [(lo, min(lo + JSON_BLOCK_LINES, len(candidates)))
            for lo in range(0, len(candidates), JSON_BLOCK_LINES)][::-1]
    while todo:
        lo, hi = todo.pop()
        idx = candidates[lo:hi]
        block = lines.data[lines.starts[idx[0]]:lines.ends[idx[-1]]] + b"\n"
        try:
            t = pajson.read_json(pa.BufferReader(block), read_options=pajson.ReadOptions(
                use_threads=False, block_size=max(len(block), 1 << 16)), parse_options=options)
            problem = None if t.num_rows == hi - lo else f"holds {t.num_rows} JSON objects"
            t.schema.names  # noqa: B018 - an escaped lone surrogate makes a name that is not UTF-8
        except pa.ArrowInvalid as exc:
            t, problem = None, _json_problem(exc)
        except UnicodeDecodeError:
            t, problem = None, "has a field name that is not valid UTF-8 (a broken \\u escape)"
        if problem is None:
            tables.append((lo, t, idx + 1))
        elif hi - lo > 1:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
        elif t is not None and t.num_rows == 0:
            continue  # only white space: not a record
        else:
            rejects.append(Reject(int(idx[0]) + 1, problem, lines.text(int(idx[0]) + 1)))
    tables.sort(key=lambda x: x[0])
    numbers = np.concatenate([x[2] for x in tables]) if tables else np.zeros(0, np.int64)
    return [x[1] for x in tables], numbers, rejects


def _json_problem(exc: pa.ArrowInvalid) -> str:
    msg = re.sub(r"\s*in row \d+$", "", _first_line(exc).removeprefix("JSON parse error: ")).rstrip(".")
    changed = re.match(r"Column\(/(.*)\) changed from (\w+) to (\w+)", msg)
    if changed:
        found, expected = (("an " if w[0] in "aeiou" else "a ") + w for w in (changed[3], changed[2]))
        return f"field {changed[1]!r} holds {found} where {expected} is expected"
    return f"is not a valid JSON object ({msg})"


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
