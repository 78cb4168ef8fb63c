"""Applying a mapping target to source columns: the row filter, then each canonical column's values.

:func:`apply_target` builds a target's columns from the source columns a reader hands it
(:mod:`opencem.ingest.tabular`): constants and options, templates, value maps, scales, and
times converted to UTC (ISO 8601, strptime formats, epoch seconds or milliseconds, IANA time
zones). Values that do not convert are reported per row (:class:`BadValues`) for the reader to
reject; a column where none converts means the mapping is wrong and raises
:class:`~opencem.ingest.validate.IngestError`. Everything is vectorised over Arrow arrays.

Separate from :mod:`opencem.ingest.mapping` (the mapping file format and its checks); imports
flow one way, from here to there.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TIMESTAMP, Table
from .mapping import EPOCH_FORMATS, ColumnSource, Scalar, Target, text_of
from .validate import IngestError

_ISO = (r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
        r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)?$")
_ZONED = r"[T ]\d{2}:\d{2}.*(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_NUMBER = r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)$"


@dataclass
class BadValues:
    """Values of one canonical column that do not convert, at ``rows`` of the selected rows."""

    column: str
    rows: np.ndarray
    values: list[str | None]
    reasons: list[str]


@dataclass
class Applied:
    keep: np.ndarray | None  # source rows the target's ``where`` selects (None: all)
    data: pa.Table  # the target's columns for the selected rows, named as the table's
    bad: list[BadValues]  # the first bad value of each failing row
    failed: np.ndarray  # per selected row: has a bad value


def apply_target(target: Target, spec: Table, table: pa.Table, options: dict, source: str,
                 decimal: str = ".") -> Applied:
    """Select the rows ``target.where`` keeps and build the columns of ``spec`` (the target's
    table) from ``table`` (source columns by source name). Times are converted to UTC here; other columns are left
    for validation to cast. Raises :class:`IngestError` naming ``source`` when an option is
    missing or no value of a column converts (the mapping, not the records, is wrong)."""
    keep = _where(target, table)
    if keep is not None:
        table = table.filter(pa.array(keep))
    columns, bad, failed = {}, [], np.zeros(table.num_rows, bool)
    for name, cs in target.columns.items():
        values, wrong, reason, shown = _column_values(source, target, name, cs, spec.column(name),
                                                      table, options, decimal)
        columns[name] = values
        if wrong is not None and (wrong & ~failed).any():
            rows = np.flatnonzero(wrong & ~failed)
            texts = pc.cast(shown.take(pa.array(rows)), pa.string()).to_pylist()
            bad.append(BadValues(name, rows, texts, [reason.format(value=v) for v in texts]))
            failed |= wrong
    data = pa.table({f.name: columns[f.name] for f in spec.columns if f.name in columns})
    return Applied(keep, data, bad, failed)


def _where(target: Target, table: pa.Table) -> np.ndarray | None:
    keep = None
    for cond in target.where:
        text = _as_text(table[cond.column])
        values, keep_on_match = cond.values_text()
        match = pc.is_in(text, value_set=pa.array([v for v in values if v is not None], pa.string()))
        if None in values:
            match = pc.or_(match, pc.is_null(text))
        match = match.fill_null(False).to_numpy(zero_copy_only=False)
        test = match if keep_on_match else ~match
        keep = test if keep is None else keep & test
    return keep


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _column_values(source: str, target: Target, name: str, cs: ColumnSource, field: pa.Field,
                   table: pa.Table, options: dict, decimal: str):
    """(values, rows with bad values or None, reason with {value}, values to show for them)."""
    n = table.num_rows
    is_time = pa.types.is_timestamp(field.type)
    if cs.kind in ("value", "option"):
        value = cs.value if cs.kind == "value" else _option(source, target, name, cs, options)
        if value is None:
            return pa.nulls(n, field.type), None, "", None
        if not is_time:
            text = value if isinstance(value, str) else text_of(value) \
                if isinstance(value, bool | int | float) else str(value)
            return pa.repeat(pa.scalar(text, pa.string()), n), None, "", None
        stamp = times(pa.array([value if isinstance(value, datetime | date) else str(value)]),
                      cs.format, cs.timezone)[0][0]
        if not stamp.is_valid:
            raise IngestError(f"{source}: {target.table}.{name} gets {value!r}, which is not a time")
        return pa.repeat(stamp, n), None, "", None
    if cs.kind == "template":
        parts: list = []
        for literal, fname, _, _ in string.Formatter().parse(cs.template or ""):
            if literal:
                parts.append(literal)
            if fname is not None:
                parts.append(_as_text(table[fname]))
        values = (pc.binary_join_element_wise(*parts, "") if any(not isinstance(p, str) for p in parts)
                  else pa.repeat(pa.scalar("".join(parts)), n))
    else:
        values = table[cs.from_]
    numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
    if decimal != "." and (numeric or cs.scale is not None) and pa.types.is_string(values.type):
        values = pc.replace_substring(values, decimal, ".")
    if cs.map is not None:
        return _map(values, cs), None, "", None
    if cs.scale is not None:
        numbers, wrong = _numbers(values)
        scaled = pc.multiply(numbers, cs.scale)
        _all_bad(source, cs, wrong, values, "a number")
        return (pc.round(scaled) if pa.types.is_integer(field.type) else scaled), wrong, \
            "{value!r} is not a number", values
    if is_time:
        stamps, wrong = times(values, cs.format, cs.timezone)
        expected = f"a time in format {cs.format!r}" if cs.format else "an ISO 8601 time"
        _all_bad(source, cs, wrong, values, expected)
        return stamps, wrong, "{value!r} is not " + expected, values
    return values, None, "", None


def _option(source: str, target: Target, name: str, cs: ColumnSource, options: dict):
    if options.get(cs.option) is None:
        raise IngestError(f"{source}: the mapping fills {target.table}.{name} from option "
                          f"{cs.option!r}, which was not given")
    return options[cs.option]


def _all_bad(source: str, cs: ColumnSource, wrong: np.ndarray, values, expected: str) -> None:
    """No value of a column converting means the mapping is wrong, not the records."""
    if not wrong.any():
        return
    text = _as_text(values)
    filled = pc.and_(pc.is_valid(text), pc.not_equal(text, "")).fill_null(False)
    if int(wrong.sum()) == int(pc.sum(filled).as_py() or 0):
        first = text.filter(pa.array(wrong))[0].as_py()
        what = f"column {cs.from_!r}" if cs.from_ else f"template {cs.template!r}"
        raise IngestError(f"{source}: no value of {what} is {expected} (first: {first!r})")


def _map(values, cs: ColumnSource) -> pa.Array:
    """Source text -> canonical text; unlisted values pass through (validation judges them)
    unless a ``default`` is given."""
    text = _as_text(values)
    keys, mapped = cs.map_text()
    pairs = [(k, v) for k, v in zip(keys, mapped) if k is not None]
    index = pc.index_in(text, value_set=pa.array([k for k, _ in pairs], pa.string()))
    found = pa.array([v for _, v in pairs], pa.string()).take(index)
    other = pa.scalar(text_of(cs.default), pa.string()) if "default" in cs.model_fields_set else text
    out = pc.if_else(pc.is_valid(index), found, other)
    if None in keys:
        out = pc.if_else(pc.is_null(text), pa.scalar(mapped[keys.index(None)], pa.string()), out)
    return out


def _numeric(*types: pa.DataType) -> bool:
    return all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)


def _numbers(values) -> tuple[pa.Array, np.ndarray]:
    """Values as float64, and which non-empty values are not numbers."""
    if _numeric(values.type) or pa.types.is_boolean(values.type):
        return pc.cast(values, pa.float64()), np.zeros(len(values), bool)
    text = pc.utf8_trim_whitespace(_as_text(values))
    ok = pc.match_substring_regex(text, _NUMBER).fill_null(False)
    wrong = pc.and_(pc.invert(ok), pc.not_equal(text, "")).fill_null(False).to_numpy(zero_copy_only=False)
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64()), wrong


def times(values, fmt: str | None = None, tz: str | None = None) -> tuple[pa.Array, np.ndarray]:
    """Values as UTC times (timestamp ms), and which non-empty values are not times.

    Text is ISO 8601 unless ``fmt`` (strptime, trailing ``%f`` allowed, or ``epoch_s`` /
    ``epoch_ms``) says otherwise; times without an offset are in ``tz`` (UTC when None).
    """
    zone = tz or "UTC"
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kind, n = values.type, len(values)
    if pa.types.is_timestamp(kind):
        return _localise(values, zone).cast(TIMESTAMP, safe=False), np.zeros(n, bool)
    if pa.types.is_date(kind):
        return _localise(values.cast(pa.timestamp("ms")), zone).cast(TIMESTAMP), np.zeros(n, bool)
    if fmt is None and _numeric(kind):  # a number with no format says nothing about its unit
        return pa.nulls(n, TIMESTAMP), pc.is_valid(values).to_numpy(zero_copy_only=False)
    if fmt in EPOCH_FORMATS:
        numbers, wrong = _numbers(values)
        ms = pc.round(pc.multiply(numbers, float(EPOCH_FORMATS[fmt])))
        fits = pc.less(pc.abs(ms), 1e16).fill_null(False)  # finite and within Arrow's range
        wrong |= pc.and_(pc.invert(fits), pc.is_valid(ms)).fill_null(False).to_numpy(zero_copy_only=False)
        ms = pc.if_else(fits, ms, pa.scalar(None, pa.float64()))
        return pc.cast(ms, pa.int64()).cast(TIMESTAMP), wrong
    text = pc.utf8_trim_whitespace(_as_text(values))
    empty = pc.or_(pc.is_null(text), pc.equal(text, "")).fill_null(True)
    if fmt:
        stamps = _strptime(text, fmt)
        stamps = _localise(stamps, zone).cast(TIMESTAMP)
    else:
        stamps = _iso_times(text, zone)
    return stamps, pc.and_(pc.is_null(stamps), pc.invert(empty)).to_numpy(zero_copy_only=False)


def _localise(stamps: pa.Array, zone: str) -> pa.Array:
    if stamps.type.tz is not None:
        return stamps
    if zone == "UTC":
        return stamps.cast(pa.timestamp(stamps.type.unit, tz="UTC"))
    # Times in a DST gap move past it; times in the repeated hour take the first one.
    return pc.assume_timezone(stamps, zone, ambiguous="earliest", nonexistent="latest")


def _strptime(text: pa.Array, fmt: str) -> pa.Array:
    """strptime to ms; a trailing ``%f`` takes 1-9 digits and may be left out with its separator."""
    if not fmt.endswith("%f"):
        return pc.strptime(text, format=fmt, unit="ms", error_is_null=True)
    parts = pc.extract_regex(text, r"^(?P<base>.*?)(?P<frac>\d{1,9})$")
    base = pc.strptime(pc.struct_field(parts, [0]), format=fmt[:-2], unit="ms", error_is_null=True)
    ms = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.struct_field(parts, [1]), 3, "0"), 0, 3)
    with_fraction = pc.add(base, pc.cast(pc.cast(ms, pa.int64()), pa.duration("ms")))
    whole = pc.strptime(text, format=fmt[:-2].rstrip(".,"), unit="ms", error_is_null=True)
    return pc.coalesce(with_fraction, whole)


def _iso_times(text: pa.Array, zone: str) -> pa.Array:
    """ISO 8601 text as UTC times; values that do not parse become null."""
    text = pc.replace_substring_regex(text, r"(\.\d{3})\d+", r"\1")  # ms precision
    shaped = pc.match_substring_regex(text, _ISO).fill_null(False)
    zoned = pc.and_(shaped, pc.match_substring_regex(text, _ZONED).fill_null(False))
    null_text = pa.scalar(None, pa.string())
    out = pa.nulls(len(text), TIMESTAMP)
    for mask, kind in ((zoned, TIMESTAMP), (pc.and_(shaped, pc.invert(zoned)), pa.timestamp("ms"))):
        if not pc.any(mask).as_py():
            continue
        subset = pc.if_else(mask, text, null_text)
        wrong = values_failing(subset, lambda a, k=kind: pc.cast(a, k))
        if wrong.any():  # shaped like ISO 8601 but not a date, e.g. month 13
            subset = pc.if_else(pa.array(wrong), null_text, subset)
        out = pc.if_else(mask, _localise(pc.cast(subset, kind), zone).cast(TIMESTAMP), out)
    return out


def values_failing(values: pa.Array, convert) -> np.ndarray:
    """Per value: ``convert`` raises on it. Converts whole slices, halving only those that fail."""
    bad = np.zeros(len(values), bool)
    todo = [(0, len(values))]
    while todo:
        lo, hi = todo.pop()
        if hi <= lo:
            continue
        try:
            convert(values.slice(lo, hi - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                bad[lo] = True
            else:
                mid = (lo + hi) // 2
                todo += [(lo, mid), (mid, hi)]
    return bad
