"""Conform a source table to its canonical schema and set aside the records that break it.

Checks are vectorised per column: missing key values, values outside the domain range of a
column (``Table.ranges``), values that do not convert to the column type, NaN and infinite
numbers. One check spans columns: a ``pm_counters`` row whose ``counter_name`` is a canonical
counter (:data:`~opencem.schema.counters.CANONICAL_COUNTERS`) of a kind that cannot be negative
(count, time, volume, mean: all of them) must have a value >= 0. It is checked here, after the
dictionary, because only canonical names have a known kind, and every reader's rows (and every
dictionary ``sum``, ``expr`` or ``scale``) pass through this step. A failing record goes to
quarantine with the field, value and reason; the rest load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import OpencemError
from ..schema import Table
from ..schema.base import LOCATION_H3
from ..schema.counters import CANONICAL_COUNTERS
from ..schema.network import PM_COUNTERS

# Kinds of canonical counter whose values cannot be negative (a negative count is a broken record).
NON_NEGATIVE_KINDS = frozenset({"count", "time", "volume", "mean"})


class IngestError(OpencemError):
    """A whole file cannot be loaded; the message is one sentence naming file and problem."""


@dataclass
class Conformed:
    accepted: pa.Table
    rejected_rows: np.ndarray  # 0-based row positions in the source
    fields: list[str]
    values: list[str]
    reasons: list[str]
    records_json: list[str]

    @property
    def n_quarantined(self) -> int:
        return len(self.rejected_rows)


def _cast_column(column: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Cast, turning values that do not convert into nulls and reporting where they were."""
    if column.type == target:
        return column, np.zeros(len(column), bool)
    try:
        return pc.cast(column, target), np.zeros(len(column), bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Slow path only for dirty columns: convert value by value through text.
    text = pc.cast(column, pa.string()).to_pylist()
    out, bad = [], np.zeros(len(text), bool)
    for i, v in enumerate(text):
        if v is None or v == "":
            out.append(None)
            continue
        try:
            out.append(pc.cast(pa.array([v]), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            out.append(None)
            bad[i] = True
    return pa.chunked_array([pa.array(out, target)]), bad


def conform(table: pa.Table, spec: Table, source: str) -> Conformed:
    """Cast ``table`` to ``spec``'s schema; quarantine records with bad keys, types or ranges.
    The first failed check of a record is the one reported."""
    names = set(table.column_names)
    missing_keys = [f.name for f in spec.columns if not f.nullable and f.name not in names]
    if missing_keys:
        raise IngestError(f"{source}: column {missing_keys[0]!r} required by table {spec.name} "
                          f"is missing (found: {', '.join(sorted(names)) or 'no columns'})")
    n = table.num_rows
    # Per record: 0 = fine, k = failed check k (1-based index into ``checks``).
    failed = np.zeros(n, np.int32)
    checks: list[tuple[str, str]] = []

    def flag(mask: np.ndarray, field_name: str, reason: str) -> None:
        new = mask & (failed == 0)
        if new.any():
            checks.append((field_name, reason))
            failed[new] = len(checks)

    columns = {}
    for f in spec.columns:
        if f.name not in names or (f.name == LOCATION_H3 and spec.location is not None):
            # (location_h3 is derived below from the coordinates, whatever a file gave for it)
            columns[f.name] = pa.nulls(n, f.type)
            continue
        cast, bad = _cast_column(table.column(f.name), f.type)
        flag(bad, f.name, f"not a valid {f.type}")
        columns[f.name] = cast
        if not f.nullable:
            missing = cast.is_null()
            if pa.types.is_string(f.type):
                missing = pc.or_(missing, pc.equal(cast, "").fill_null(True))
            flag(missing.to_numpy(zero_copy_only=False), f.name, "required value is missing")
        if pa.types.is_floating(f.type) and cast.null_count < len(cast):
            flag(pc.is_nan(cast).fill_null(False).to_numpy(zero_copy_only=False), f.name,
                 "not a number (NaN)")
            flag(pc.is_inf(cast).fill_null(False).to_numpy(zero_copy_only=False), f.name,
                 "not a finite number (infinite)")
        if f.name in spec.ranges:
            lo, hi = spec.ranges[f.name]
            numeric = pc.cast(cast, pa.float64())
            out = pc.or_(pc.less(numeric, float(lo)), pc.greater(numeric, float(hi))).fill_null(False)
            flag(out.to_numpy(zero_copy_only=False), f.name, f"outside the valid range [{lo}, {hi}]")
    if spec.name == PM_COUNTERS.name and n:
        _counter_signs(columns["counter_name"], columns["value"], flag)
    if spec.location is not None:
        columns[LOCATION_H3] = _locate(columns, spec.location, flag)
    conformed = pa.table(columns, schema=spec.schema)
    bad_rows = np.flatnonzero(failed)
    if len(bad_rows) == 0:
        return Conformed(conformed, bad_rows, [], [], [], [])
    original = table.take(pa.array(bad_rows)).to_pylist()
    fields = [checks[k - 1][0] for k in failed[bad_rows]]
    return Conformed(
        accepted=conformed.filter(pa.array(failed == 0)),
        rejected_rows=bad_rows,
        fields=fields,
        values=[_text(rec.get(fl)) for rec, fl in zip(original, fields)],
        reasons=[checks[k - 1][1] for k in failed[bad_rows]],
        records_json=[json.dumps(rec, default=str) for rec in original],
    )


def _locate(columns: dict, names: tuple[str, str], flag) -> pa.Array:
    """The H3 cell (resolution 15) of each row's position; a row with one coordinate and not
    the other is refused, since half a position cannot be placed."""
    from ..geo import h3_ints

    lat_name, lon_name = names
    lat, lon = columns[lat_name], columns[lon_name]
    has_lat = pc.is_valid(lat).to_numpy(zero_copy_only=False)
    has_lon = pc.is_valid(lon).to_numpy(zero_copy_only=False)
    flag(has_lat & ~has_lon, lon_name, f"missing while {lat_name} is given")
    flag(has_lon & ~has_lat, lat_name, f"missing while {lon_name} is given")
    # 0, 0 is what a device or probe writes for "no fix" (Null Island, in the Gulf of Guinea).
    zero = (pc.equal(lat, 0).fill_null(False).to_numpy(zero_copy_only=False)
            & pc.equal(lon, 0).fill_null(False).to_numpy(zero_copy_only=False))
    flag(zero, lat_name, f"{lat_name} and {lon_name} are both 0, the placeholder for no position fix; "
                         "leave both empty when the row was not located")
    if not (has_lat & has_lon).any():
        return pa.nulls(len(has_lat), pa.int64())
    return h3_ints(pc.cast(lat, pa.float64()).to_numpy(zero_copy_only=False),
                   pc.cast(lon, pa.float64()).to_numpy(zero_copy_only=False))


def _counter_signs(names: pa.ChunkedArray, values: pa.ChunkedArray, flag) -> None:
    """Flag canonical counters of a kind that cannot be negative whose value is, one reason per counter."""
    negative = pc.less(values, 0.0).fill_null(False)
    if not pc.any(negative).as_py():
        return
    below = names.filter(negative)
    for name in pc.unique(below).to_pylist():
        info = CANONICAL_COUNTERS.get(name)
        if info is not None and info.kind in NON_NEGATIVE_KINDS:
            mask = pc.and_(negative, pc.equal(names, name).fill_null(False))
            unit = "" if info.unit == info.kind else f" (in {info.unit})"
            flag(mask.to_numpy(zero_copy_only=False), "value",
                 f"{name} is a {info.kind}{unit}, which cannot be negative")


def _text(value) -> str | None:
    return None if value is None else str(value)[:200]
