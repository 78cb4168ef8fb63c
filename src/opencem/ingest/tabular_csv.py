"""Reader for CSV sources (``.csv``, ``.tsv``, compressed or not), with broken-record recovery.

A CSV record is one line (unless the mapping sets ``multiline_values``), so a stray quote costs
one line, never the rest of the file. Record numbers are line numbers (the header is line 1).

The happy path is pyarrow's multi-threaded reader asked for the target types, plus one
vectorised pass counting lines to prove that every line became exactly one row. Otherwise the
careful path indexes the file by line with numpy: lines that are not UTF-8 and lines that end
inside a quote are set aside, broken rows are matched to their lines by their text, and only
when records still do not line up with lines does a serial parse place them one by one.

Both paths share the pyarrow parse options and the quote check, so they live together here;
:mod:`opencem.ingest.tabular` picks this reader for ``format: csv``.
"""

from __future__ import annotations

import contextlib
import csv
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .mapping import Source
from .parts import Reject
from .tabular_frame import HEAD_BYTES, NOT_UTF8, _count_lines, _Frame, _lazy_texts, _Lines, _open
from .validate import IngestError

MAX_RETYPES = 3  # columns read again as text, one parse each, before all are
MAX_SUSPECTS = 10_000  # lines with an odd number of quotes checked one by one
MAX_PASSES = 8  # serial parses setting aside lines that swallow the next
UNTERMINATED = "has an unterminated quote (its value runs over the line end)"


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
