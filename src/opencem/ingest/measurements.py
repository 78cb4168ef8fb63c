"""Which PM measurements were given already: (object_dn, counter_name, period_start,
granularity_s), so that a second value for one is quarantined instead of added to it.

A value repeated in one file (a measValue or counter name written twice), a file delivered again
under another name, two devices that call themselves alike: each is a second value for a
measurement that has one, and adding both would double the counter in every KPI. Two checks:

- within a file, by its reader (:func:`~opencem.ingest.dictionary_apply.map_part`, before a
  dictionary ``sum`` could add a repeat in): :class:`MeasurementKeys`, 8 bytes per value of the file;
- across files, by ingest (:class:`LoadedMeasurements`): against the files staged earlier in the
  call and the committed lake, read from their Parquet files where the row groups' period_start
  and managed_element statistics say they could hold the measurements checked. Nothing of the
  call is held in memory but a bounded cache of row groups already read, so a long backfill in
  one call costs no more memory than a short one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..lake import Lake, Manifest, Transaction
from .dn import measured_objects

_DN_BITS, _NAME_BITS, _PERIOD_BITS = 26, 21, 16
_MERGE = 8  # sorted runs kept before they are merged into one
_MS_PER_DAY = 86_400_000
_KEY_COLUMNS = ["object_dn", "managed_element", "counter_name", "period_start", "granularity_s"]
CACHE_KEYS = 32 << 20  # row-group keys kept between checks (8 bytes each: 256 MiB)


class TooManyKeys(ValueError):
    """More distinct objects, counters or periods than a key has bits for."""


class KeyEncoder:
    """One int64 per measurement, from ids given to the object DNs, counter names and periods
    seen (26, 21 and 16 bits): equal measurements get equal keys, across tables."""

    def __init__(self) -> None:
        self._ids: tuple[dict, dict, dict] = ({}, {}, {})

    def encode(self, table: pa.Table) -> np.ndarray:
        """One key per row of ``table`` (PM_COUNTERS columns). The object is the measured object
        as :func:`~opencem.ingest.dn.measured_objects` compares it, not its DN as spelt."""
        period, periods = period_codes(table["period_start"], table["granularity_s"])
        dns = pc.dictionary_encode(table["object_dn"].combine_chunks())
        first = np.zeros(len(dns.dictionary), np.int64)
        first[dns.indices.to_numpy(zero_copy_only=False)[::-1]] = np.arange(len(dns))[::-1]
        me = table["managed_element"].combine_chunks().take(pa.array(first)) if len(first) else pa.array([], pa.string())
        objects = measured_objects(dns.dictionary, me).to_pylist()
        parts = []
        for (uniques, codes), ids, bits, what in (
                ((objects, dns.indices), self._ids[0], _DN_BITS, "measured objects"),
                (_encoded(table["counter_name"]), self._ids[1], _NAME_BITS, "counter names"),
                ((periods, period), self._ids[2], _PERIOD_BITS, "periods")):
            mapped = np.array([ids.setdefault(v, len(ids)) for v in uniques], np.int64)
            if len(ids) > 1 << bits:
                raise TooManyKeys(f"more than {1 << bits:,} distinct {what}")
            codes = codes.to_numpy(zero_copy_only=False) if isinstance(codes, pa.Array) else codes
            parts.append(mapped[codes] if len(mapped) else np.zeros(table.num_rows, np.int64))
        dn, name, per = parts
        return (dn << (_NAME_BITS + _PERIOD_BITS)) | (name << _PERIOD_BITS) | per


def _encoded(column: pa.ChunkedArray | pa.Array) -> tuple[list, pa.Array]:
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = pc.dictionary_encode(values)
    return encoded.dictionary.to_pylist(), encoded.indices


def period_codes(start: pa.ChunkedArray, granularity: pa.ChunkedArray) -> tuple[np.ndarray, list[tuple]]:
    """A code per row for its (period_start ms, granularity_s), and the distinct pairs in code
    order. Packed into one integer while every granularity is under 2**20 s (12 days; real ones
    are at most a day), else compared as pairs, so two periods never share a code."""
    start = start.cast(pa.int64()).to_numpy()
    gran = granularity.cast(pa.int64()).fill_null(-1).to_numpy()
    if len(start) and (start.min() != start.max() or gran.min() != gran.max()):
        if gran.max() < (1 << 20) and gran.min() >= 0:
            packed = pc.dictionary_encode(pa.array(start * (1 << 20) + gran))
            pairs = [(v >> 20, v & ((1 << 20) - 1)) for v in packed.dictionary.to_pylist()]
            return packed.indices.to_numpy(zero_copy_only=False).astype(np.int64), pairs
        uniq, codes = np.unique(np.stack([start, gran], axis=1), axis=0, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), [tuple(map(int, u)) for u in uniq]
    return np.zeros(len(start), np.int64), [(int(start[0]), int(gran[0]))] if len(start) else []


class MeasurementKeys(KeyEncoder):
    """The measurements of one file read so far, as sorted runs of keys."""

    def __init__(self) -> None:
        super().__init__()
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(k) for k in self._runs)

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            self._runs.append(np.sort(keys))
        if len(self._runs) > _MERGE:
            merged = np.concatenate(self._runs)
            self._runs = []
            merged.sort()
            self._runs = [merged]

    def seen(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key was added before."""
        return _isin(keys, self._runs)


def _isin(keys: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    found = np.zeros(len(keys), bool)
    for run in runs:
        if len(run):
            i = np.searchsorted(run, keys).clip(0, len(run) - 1)
            found |= run[i] == keys
    return found


def first_of_equal(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(repeats, first) per position of ``keys``: whether an earlier position has the same key,
    and the first position that has it."""
    n = len(keys)
    if n < 2:
        return np.zeros(n, bool), np.arange(n)
    order = np.argsort(keys, kind="stable")  # equal keys keep their order: the first stays first
    ordered = keys[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = np.empty(n, np.int64)
    first[order] = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    repeated = np.zeros(n, bool)
    repeated[order[~starts]] = True
    return repeated, first


# --- the measurements an ingest call must not add twice ----------------------------------------

class _Groups:
    """The row groups of one day's pm_counters files (staged in this call or committed) and their
    statistics, as arrays so that choosing the ones a check must read is vectorised."""

    def __init__(self) -> None:
        self.where: list[tuple[Path, int | None]] = []  # (file, row group; None: the whole file)
        self._columns: list[list] = [[], [], [], [], []]  # source, period lo, hi, element lo, hi
        self._arrays: list[np.ndarray] | None = None

    def add(self, path: Path, group: int | None, source: int, period_ms: tuple[int, int],
            elements: tuple[str | None, str | None]) -> None:
        self.where.append((path, group))
        for column, value in zip(self._columns, (source, *period_ms, *elements)):
            column.append(value)
        self._arrays = None

    def overlapping(self, lo: int, hi: int, elements: np.ndarray | None, alive: np.ndarray,
                    source: int) -> np.ndarray:
        """Indices of the groups of a live source other than ``source`` whose period range meets
        [lo, hi] and whose managed_element range holds one of ``elements`` (None: any)."""
        if not self.where:
            return np.zeros(0, np.int64)
        if self._arrays is None:
            self._arrays = [np.array(c, dtype=object if k >= 3 else np.int64) for k, c in enumerate(self._columns)]
            self._arrays.append(np.array([a is not None and b is not None for a, b in zip(*self._columns[3:])], bool))
        src, p_lo, p_hi, m_lo, m_hi, has_range = self._arrays
        ok = alive[src] & (src != source) & (p_hi >= lo) & (p_lo <= hi)
        known = ok & has_range
        if elements is not None and known.any():
            at = np.flatnonzero(known)
            i = np.searchsorted(elements, m_lo[at])  # the first checked element >= the group's lowest
            inside = (i < len(elements))
            inside[inside] = elements[i[inside]] <= m_hi[at][inside]
            ok[at[~inside]] = False
        return np.flatnonzero(ok)

    def source(self, i: int) -> int:
        return int(self._columns[0][i])


@dataclass(frozen=True)
class _Source:
    label: str  # where the earlier value came from, for the quarantine reason
    committed: bool


class LoadedMeasurements:
    """``pm_counters`` measurements already in the lake or staged earlier in this ingest call."""

    def __init__(self, lake: Lake, txn: Transaction):
        self.lake, self.txn = lake, txn
        self.encoder = KeyEncoder()
        self._committed: dict[int, list] = {}  # UTC day -> committed pm_counters files
        for f in lake.files("pm_counters", txn.manifest):
            self._committed.setdefault(_day(f.date), []).append(f)
        self._groups: dict[int, _Groups] = {}  # UTC day -> row groups that may be checked
        self._loaded_days: set[int] = set()
        self._cache: OrderedDict[tuple[Path, int | None], np.ndarray] = OrderedDict()  # row group -> sorted keys
        self._cached = 0
        self._unwritten: dict[int, list[tuple[int, np.ndarray]]] = {}  # dry runs: day -> (source, keys)
        self._labels: list[_Source] = []
        self._ids: dict[str, int] = {}  # committed fingerprint -> source id
        self._alive: list[bool] = []
        self._staged = len(txn.staged)
        self._stats: dict[int, tuple] = {}  # day -> (period lo, hi, elements) of the table last checked

    def source(self, label: str) -> int:
        """A new source id for a file of this call."""
        return self._new(_Source(label, False))

    def set_alive(self, fingerprints: set[str], alive: bool) -> None:
        """Count (or stop counting) what the committed loads with these fingerprints hold: a file
        that replaces the rows an earlier load of its path committed is not their duplicate."""
        for fp in fingerprints:
            self._alive[self._lake_source(fp)] = alive

    def drop(self, source: int) -> None:
        """Forget what a file of this call staged (it was rejected part-way, and the transaction
        rolled back what it staged)."""
        self._alive[source] = False
        self._staged = len(self.txn.staged)

    def check(self, table: pa.Table, source: int) -> tuple[np.ndarray, list[str], dict[str, int]]:
        """Rows of ``table`` (conformed pm_counters rows of file ``source``) that repeat a
        measurement of another file or of an earlier row of ``table``, the reason of each such
        row (one sentence per earlier file) and how many rows repeat each earlier file."""
        n = table.num_rows
        earlier = np.full(n, -1, np.int64)
        if n == 0:
            return np.zeros(0, bool), [], {}
        keys = self.encoder.encode(table)
        again, _ = first_of_equal(keys)
        earlier[again] = source
        start = table["period_start"].cast(pa.int64()).to_numpy()
        days = np.floor_divide(start, _MS_PER_DAY)
        me = table["managed_element"]
        elements = None if me.null_count else np.array(sorted(pc.unique(me).to_pylist()), dtype=object)
        self._stats = {}
        for day in np.unique(days).tolist():
            at = np.flatnonzero(days == day)
            lo, hi = int(start[at].min()), int(start[at].max())
            self._stats[int(day)] = (lo, hi, elements)
            for other, other_keys in self._candidates(int(day), lo, hi, elements, source):
                hit = (earlier[at] < 0) & _isin(keys[at], [other_keys])
                earlier[at[hit]] = other
        repeated = earlier >= 0
        reasons, counts = [], {}
        texts = {e: self._reason(e, source) for e in np.unique(earlier[repeated]).tolist()}
        for e, text in texts.items():
            label = "this file" if e == source else self._labels[e].label
            counts[label] = int((earlier == e).sum())
        reasons = [texts[e] for e in earlier[repeated].tolist()]
        return repeated, reasons, counts

    def staged(self, table: pa.Table, source: int) -> None:
        """After ``table`` (the rows of ``source`` kept) was appended to the transaction: its
        files become what later files are checked against."""
        new = self.txn.staged[self._staged:]
        self._staged = len(self.txn.staged)
        if table.num_rows == 0:
            return
        days = np.floor_divide(table["period_start"].cast(pa.int64()).to_numpy(), _MS_PER_DAY)
        if self.txn.dry_run:  # nothing is written: remember the keys themselves
            keys = self.encoder.encode(table)
            for day in np.unique(days).tolist():
                self._unwritten.setdefault(int(day), []).append((source, np.sort(keys[days == day])))
            return
        for tmp, lake_file in new:  # one file per day of the rows appended
            if not lake_file.path.startswith("pm_counters/"):
                continue
            day = _day(lake_file.date)
            lo, hi, elements = self._stats[day]  # of the rows checked, which hold those kept
            self._day_groups(day).add(tmp, None, source, (lo, hi), (None, None) if elements is None or not len(elements)
                                      else (elements[0], elements[-1]))

    def _candidates(self, day: int, lo: int, hi: int, elements, source: int):
        """(source, sorted keys) of each row group of ``day`` that may hold a period in [lo, hi]
        of one of ``elements`` (None: any), from a live source other than ``source``."""
        groups = self._day_groups(day)
        if day not in self._loaded_days:
            self._loaded_days.add(day)
            files = self._committed.get(day, [])
            for f, path in zip(files, self.lake.paths(files)):
                for index, (p_lo, p_hi, m_lo, m_hi) in enumerate(_row_groups(str(path), path.stat().st_size)):
                    groups.add(path, index, self._lake_source(f.source), (p_lo, p_hi), (m_lo, m_hi))
        for i in groups.overlapping(lo, hi, elements, np.array(self._alive, bool), source).tolist():
            yield groups.source(i), self._keys(groups.where[i])
        for other, keys in self._unwritten.get(day, []):
            if other != source and self._alive[other]:
                yield other, keys

    def _day_groups(self, day: int) -> _Groups:
        return self._groups.setdefault(day, _Groups())

    def _keys(self, where: tuple[Path, int | None]) -> np.ndarray:
        cached = self._cache.get(where)
        if cached is not None:
            self._cache.move_to_end(where)
            return cached
        path, group = where
        parquet = pq.ParquetFile(path)
        rows = parquet.read(columns=_KEY_COLUMNS) if group is None else parquet.read_row_group(group, columns=_KEY_COLUMNS)
        keys = np.sort(self.encoder.encode(rows))
        self._cache[where] = keys
        self._cached += len(keys)
        while self._cached > CACHE_KEYS and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)
        return keys

    def _reason(self, earlier: int, source: int) -> str:
        same = "the same measurement (object_dn, counter_name, period_start and granularity_s)"
        if earlier == source:
            return f"{same} came earlier in this file; the first value is kept"
        s = self._labels[earlier]
        where = (f"is already in the lake, loaded from {s.label}" if s.committed
                 else f"came from {s.label} earlier in this ingest")
        return (f"{same} {where}; a second delivery under another file name is not added (deliver a correction "
                "under the earlier file's name, or reload that file, to replace what it loaded)")

    def _new(self, source: _Source) -> int:
        self._labels.append(source)
        self._alive.append(True)
        return len(self._labels) - 1

    def _lake_source(self, fingerprint: str | None) -> int:
        key = fingerprint or ""
        if key not in self._ids:
            info = self.txn.manifest.sources.get(fingerprint) if fingerprint else None
            label = f"{info.get('path')} (batch {info.get('batch')})" if info else "an earlier load"
            self._ids[key] = self._new(_Source(label, True))
        return self._ids[key]


def _day(date_text: str) -> int:
    return int((np.datetime64(date_text) - np.datetime64(0, "D")).astype(int))


@lru_cache(maxsize=8192)
def _row_groups(path: str, size: int) -> tuple[tuple[int, int, str | None, str | None], ...]:
    """(period_start min, max in ms, managed_element min, max) per row group of a pm_counters
    file. Lake files never change once written (a new batch writes new names); the size keys the
    cache against a path reused by a later batch's staging."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    p = names.index("period_start")
    m = names.index("managed_element") if "managed_element" in names else None
    out = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        ps = rg.column(p).statistics
        if ps is None or not ps.has_min_max:
            lo, hi = -(2**62), 2**62
        else:
            lo, hi = (int(pa.scalar(v, pa.timestamp("ms", tz="UTC")).cast(pa.int64()).as_py()) for v in (ps.min, ps.max))
        ms = rg.column(m).statistics if m is not None else None
        out.append((lo, hi, *((ms.min, ms.max) if ms is not None and ms.has_min_max else (None, None))))
    return tuple(out)
