"""Applying a counter dictionary (:mod:`opencem.ingest.dictionary`) to PM rows in long format.

Every reader hands over rows as the file names them (PM_COUNTERS columns, vendor counter names);
the wide CSV reader first turns its columns into such rows, so there is one implementation.
Renamed rows stay where they were; rows of a ``sum`` or ``expr`` are one per measured object
and period (``object_dn``, ``period_start``, ``granularity_s``), computed over a pivot of only
the counters the entry reads, with NumPy. A derived row keeps the first source row it came
from (``row_numbers``) and is suspect if any of its parts is.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import counter_expr
from .dictionary import CounterDictionary, CounterSource, parse_expr
from .dn import object_classes


def map_counters(table: pa.Table, dictionary: CounterDictionary,
                 row_numbers: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """Canonical rows for ``table`` (PM_COUNTERS columns) and the source row number of each
    (``row_numbers`` given per input row; default 1..n). Counters no source reads are kept
    under their own name when the dictionary says ``keep_unmapped``; the ``vendor`` column
    becomes the dictionary's vendor."""
    n = table.num_rows
    rows = np.arange(1, n + 1) if row_numbers is None else np.asarray(row_numbers, np.int64)
    if n == 0:
        return table, rows[:0]
    view = _View(table)
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
    keep = (target >= 0) | (~consumed if dictionary.keep_unmapped else np.zeros(n, bool))
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
    return out.cast(table.schema), np.concatenate([rows[keep], *derived_rows]).astype(np.int64)


class _View:
    """The raw rows, their counter names and object classes encoded once for every entry."""

    def __init__(self, table: pa.Table):
        self.table = table
        names = pc.dictionary_encode(table["counter_name"].combine_chunks())
        self.name_index = names.indices.to_numpy(zero_copy_only=False)
        self.name_values = names.dictionary.to_pylist()
        dns = pc.dictionary_encode(table["object_dn"].combine_chunks())
        self.dn_index = dns.indices.to_numpy(zero_copy_only=False)
        self.dns = dns.dictionary
        self._classes: np.ndarray | None = None
        self._groups: np.ndarray | None = None

    def rows_of(self, source: CounterSource) -> np.ndarray:
        """Rows a source reads: its counter names, on objects of its classes."""
        wanted = set(source.source_names)
        hits = np.array([v in wanted for v in self.name_values], bool)
        mask = hits[self.name_index]
        if source.objects is not None and mask.any():
            allowed = {c.lower() for c in source.objects}
            mask &= np.array([c is not None and c.lower() in allowed for c in self.classes()], bool)[self.dn_index]
        return mask

    def classes(self) -> list[str | None]:
        if self._classes is None:
            self._classes = object_classes(self.dns).to_pylist()
        return self._classes

    def groups(self) -> np.ndarray:
        """Object-period group of each row."""
        if self._groups is None:
            start = self.table["period_start"].cast(pa.int64()).to_numpy()
            gran = self.table["granularity_s"].cast(pa.int64()).to_numpy()
            keys = np.stack([self.dn_index.astype(np.int64), start, gran], axis=1)
            self._groups = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
        return self._groups

    def derive(self, canonical: str, source: CounterSource, mask: np.ndarray,
               rows: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """One row per object and period for a sum or expression entry."""
        at = np.flatnonzero(mask)
        group, index = np.unique(self.groups()[at], return_inverse=True)
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
            period = self.table["granularity_s"].cast(pa.int64()).to_numpy()[at[first]]
            total, ok = counter_expr.evaluate(parse_expr(source.expr), columns, period)
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
