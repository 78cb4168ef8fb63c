"""Applying a counter dictionary (:mod:`opencem.ingest.dictionary`) to PM rows in long format.

Every reader hands over rows as the file names them (PM_COUNTERS columns, vendor counter names);
the wide CSV reader first turns its columns into such rows, so there is one implementation.
Renamed rows stay where they were; rows of a ``sum`` or ``expr`` are one per measured object
and period (``object_dn``, ``period_start``, ``granularity_s``), computed over a pivot of only
the counters the entry reads, with NumPy. A derived row keeps the first source row it came
from (``row_numbers``) and is suspect if any of its parts is.

:func:`map_part` is what readers call: before mapping, a value that repeats an earlier one of
the same file (same object, counter, period start and length: a repeated measValue or counter
name) becomes a :class:`~opencem.ingest.parts.Reject` instead of being added to it by a ``sum``,
and the Part carries what the dictionary did (:class:`~opencem.ingest.parts.MappingNote`).
"""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import counter_expr
from .dictionary import CounterDictionary, CounterSource, parse_expr
from .dn import object_classes
from .measurements import MeasurementKeys, first_of_equal, period_codes
from .parts import MappingNote, Part, Reject


def map_part(table: pa.Table, row_numbers: np.ndarray | None, rejects: list[Reject],
             dictionary: CounterDictionary | None, seen: MeasurementKeys | None = None) -> Part:
    """The ``pm_counters`` Part of a reader's rows (PM_COUNTERS columns, names as in the file)
    and rejects: :func:`drop_repeats`, then ``dictionary`` maps the rest (none: names kept).
    ``values_read`` is the rows and rejects given. A reader that yields several Parts per file
    passes one :class:`MeasurementKeys` for the whole file."""
    read = table.num_rows + len(rejects)
    table, rows, rejects = drop_repeats(table, row_numbers, rejects, seen)
    if dictionary is None:
        return Part("pm_counters", table, rows, rejects, values_read=read)
    mapped, mapped_rows, note = map_rows(table, dictionary, rows)
    return Part("pm_counters", mapped, mapped_rows, rejects, values_read=read, mapping=note)


def drop_repeats(table: pa.Table, row_numbers: np.ndarray | None, rejects: list[Reject],
                 seen: MeasurementKeys | None = None) -> tuple[pa.Table, np.ndarray, list[Reject]]:
    """``table`` without the rows that repeat the measurement of an earlier row (same object,
    counter, period start and length) of ``table`` or of what ``seen`` remembers of the file's
    earlier Parts; each repeat becomes a reject, added to ``rejects`` in record order."""
    n = table.num_rows
    rows = np.arange(1, n + 1) if row_numbers is None else np.asarray(row_numbers, np.int64)
    seen = MeasurementKeys() if seen is None else seen
    keys = seen.encode(table)
    repeated, first = first_of_equal(keys)
    first_row = rows[first]
    before = seen.seen(keys)  # given by an earlier Part of the file
    first_row[before] = -1
    repeated |= before
    seen.add(keys[~repeated])
    if repeated.any():
        rejects = sorted([*rejects, *_repeat_rejects(table, repeated, first_row, rows)], key=lambda r: r.row_number)
        table, rows = table.filter(pa.array(~repeated)), rows[~repeated]
    return table, rows, rejects


def _repeat_rejects(table: pa.Table, repeated: np.ndarray, first_row: np.ndarray, rows: np.ndarray) -> list[Reject]:
    """One reject per repeated row, citing the record that gave the measurement first."""
    at = np.flatnonzero(repeated)
    picked = table.take(pa.array(at)).select(["object_dn", "counter_name", "period_start", "granularity_s"])
    out = []
    for i, r in zip(at.tolist(), picked.to_pylist()):  # repeats only: rare, and each is quarantined
        when = r["period_start"].astimezone(UTC).isoformat().replace("+00:00", "Z")
        which = f"record {int(first_row[i])}" if first_row[i] >= 0 else "an earlier record"
        out.append(Reject(int(rows[i]), f"repeats {r['counter_name']} of {r['object_dn']} for the "
                                        f"{r['granularity_s']} s period from {when}, which {which} of this "
                                        "file gave first; the first is kept",
                          r["object_dn"], "counter_name", r["counter_name"]))
    return out


def map_counters(table: pa.Table, dictionary: CounterDictionary,
                 row_numbers: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """Canonical rows for ``table`` (PM_COUNTERS columns) and the source row number of each
    (``row_numbers`` given per input row; default 1..n). Counters no source reads are kept
    under their own name when the dictionary says ``keep_unmapped``; the ``vendor`` column
    becomes the dictionary's vendor. Rows are mapped as given: :func:`map_part` also rejects
    repeated measurements and reports what was folded and dropped."""
    mapped, mapped_rows, _ = map_rows(table, dictionary, row_numbers)
    return mapped, mapped_rows


def map_rows(table: pa.Table, dictionary: CounterDictionary,
             row_numbers: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray, MappingNote]:
    """:func:`map_counters` and what the dictionary did to the rows (folded, derived, dropped)."""
    rows = np.arange(1, table.num_rows + 1) if row_numbers is None else np.asarray(row_numbers, np.int64)
    return _map(_View(table), dictionary, rows)


def _map(view: _View, dictionary: CounterDictionary, rows: np.ndarray) -> tuple[pa.Table, np.ndarray, MappingNote]:
    table = view.table
    n = table.num_rows
    if n == 0:
        return table, rows[:0], MappingNote()
    consumed = np.zeros(n, bool)
    target = np.full(n, -1, np.int64)  # rename source per row
    renames: list[tuple[str, CounterSource]] = []
    derived: list[pa.Table] = []
    derived_rows: list[np.ndarray] = []
    for canonical, _, source in dictionary.entries():
        mask = view.rows_of(source)
        if not mask.any():
            continue
        consumed |= mask
        if source.kind == "rename":
            target[mask] = len(renames)
            renames.append((canonical, source))
            continue
        out, first = view.derive(canonical, source, mask, rows)
        derived.append(out)
        derived_rows.append(first)
    unread = ~consumed & (target < 0)
    keep = (target >= 0) | (unread if dictionary.keep_unmapped else np.zeros(n, bool))
    kept = table.filter(pa.array(keep))
    picked = target[keep]
    names = pa.array([c for c, _ in renames] or [""], pa.string())
    scales = np.array([s.scale for _, s in renames] or [1.0])
    is_renamed = pa.array(picked >= 0)
    index = pa.array(np.where(picked >= 0, picked, 0))
    kept = kept.set_column(kept.column_names.index("counter_name"), "counter_name",
                           pc.if_else(is_renamed, names.take(index), kept["counter_name"]))
    value = kept["value"].combine_chunks() if kept.num_rows else pa.array([], pa.float64())
    kept = kept.set_column(kept.column_names.index("value"), "value",
                           pc.multiply(value, pa.array(np.where(picked >= 0, scales[index.to_numpy()], 1.0))))
    out = pa.concat_tables([kept, *derived]) if derived else kept
    out = out.set_column(out.column_names.index("vendor"), "vendor",
                         pa.nulls(out.num_rows, pa.string()).fill_null(dictionary.vendor))
    dropped: dict[str, int] = {}
    if not dictionary.keep_unmapped and unread.any():
        counts = np.bincount(view.name_index[unread], minlength=len(view.name_values))
        dropped = {view.name_values[i]: int(counts[i]) for i in np.flatnonzero(counts)}
    note = MappingNote(folded=int((consumed & (target < 0)).sum()), derived=sum(t.num_rows for t in derived),
                       dropped=dropped)
    return out.cast(table.schema), np.concatenate([rows[keep], *derived_rows]).astype(np.int64), note


class _View:
    """The raw rows, their counter names, objects and periods encoded once for every entry."""

    def __init__(self, table: pa.Table):
        self.table = table
        names = pc.dictionary_encode(table["counter_name"].combine_chunks())
        self.name_index = names.indices.to_numpy(zero_copy_only=False)
        self.name_values = names.dictionary.to_pylist()
        dns = pc.dictionary_encode(table["object_dn"].combine_chunks())
        self.dn_index = dns.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.dns = dns.dictionary
        self._classes: list[str | None] | None = None
        self._periods: tuple[np.ndarray, int] | None = None

    def rows_of(self, source: CounterSource) -> np.ndarray:
        """Rows a source reads: its counter names, on objects of its classes."""
        wanted = set(source.source_names)
        hits = np.array([v in wanted for v in self.name_values], bool)
        mask = hits[self.name_index] if len(hits) else np.zeros(self.table.num_rows, bool)
        if source.objects is not None and mask.any():
            allowed = {c.lower() for c in source.objects}
            mask &= np.array([c is not None and c.lower() in allowed for c in self.classes()], bool)[self.dn_index]
        return mask

    def classes(self) -> list[str | None]:
        if self._classes is None:
            self._classes = object_classes(self.dns).to_pylist()
        return self._classes

    def periods(self) -> tuple[np.ndarray, int]:
        """Period (start, length) code of each row and the number of codes. A batch of a PM
        file has one period or a few, so the codes come from a sort of the distinct ones only."""
        if self._periods is None:
            codes, pairs = period_codes(self.table["period_start"], self.table["granularity_s"])
            self._periods = codes, max(len(pairs), 1)
        return self._periods

    def derive(self, canonical: str, source: CounterSource, mask: np.ndarray,
               rows: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """One row per object and period for a sum or expression entry."""
        at = np.flatnonzero(mask)
        period, n_periods = self.periods()
        group, index = np.unique(self.dn_index[at] * n_periods + period[at], return_inverse=True)
        index = index.reshape(-1)
        k = len(group)
        value = self.table["value"].combine_chunks().take(pa.array(at))
        valid = value.is_valid().to_numpy(zero_copy_only=False)
        filled = np.nan_to_num(value.fill_null(0.0).to_numpy(zero_copy_only=False))
        names = np.asarray(self.name_index[at])
        first = np.full(k, len(at))  # the first source row of each group
        np.minimum.at(first, index, np.arange(len(at)))
        if source.kind == "sum":
            total = np.bincount(index, weights=filled * valid, minlength=k)
            ok = np.bincount(index, weights=valid, minlength=k) > 0
        else:
            columns = {}
            for name in source.source_names:
                code = self.name_values.index(name) if name in self.name_values else -1
                sel = names == code
                columns[name] = (np.bincount(index[sel], weights=filled[sel] * valid[sel], minlength=k),
                                 np.bincount(index[sel], weights=valid[sel], minlength=k) > 0)
            length = self.table["granularity_s"].cast(pa.int64()).to_numpy()[at[first]]
            total, ok = counter_expr.evaluate(parse_expr(source.expr), columns, length)
        suspect = self.table["suspect"].combine_chunks().take(pa.array(at)).fill_null(False)
        any_suspect = np.bincount(index, weights=suspect.to_numpy(zero_copy_only=False), minlength=k) > 0
        first_row = np.full(k, np.iinfo(np.int64).max)
        np.minimum.at(first_row, index, rows[at])
        out = self.table.take(pa.array(at[first]))
        out = out.set_column(out.column_names.index("counter_name"), "counter_name",
                             pa.nulls(k, pa.string()).fill_null(canonical))
        out = out.set_column(out.column_names.index("value"), "value",
                             pa.array(total * source.scale, pa.float64(), mask=~ok))
        out = out.set_column(out.column_names.index("suspect"), "suspect", pa.array(any_suspect))
        return out, first_row


def apply_dictionary_long(table: pa.Table, dictionary: CounterDictionary) -> pa.Table:
    """:func:`map_counters` without row numbers: the canonical rows of ``table``."""
    return map_counters(table, dictionary)[0]
