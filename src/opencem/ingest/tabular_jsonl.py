"""Reader for JSON Lines sources (``.jsonl``, ``.ndjson``, compressed or not): one JSON object a line.

Record numbers are line numbers. Field types are sniffed from the first MiB; times stay text for
the mapping step. pyarrow's JSON reader does not check UTF-8 and crashes on some lines that are
not objects, so such lines are set aside first; lines that do not parse are found by halving
blocks. :mod:`opencem.ingest.tabular` picks this reader for ``format: jsonl``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from .mapping import Source
from .parts import Reject
from .tabular_frame import HEAD_BYTES, NOT_UTF8, _first_line, _Frame, _Lines
from .validate import IngestError

JSON_BLOCK_LINES = 8192


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
