"""Rows a dictionary ``sum`` or ``expr`` reads, kept whole per measured object and period while a
reader streams.

A derived counter is computed per object and period (``object_dn``, ``period_start``,
``granularity_s``) over every row that object reports in that period, so those rows must reach
:func:`~opencem.ingest.dictionary_apply.map_counters` together. In a Nokia OMeS file they need
not be near each other: an object's measurementTypes sit in different PMMOResults and may sit in
different PMSetups. A streaming reader hands such rows to :class:`Groups` and maps the rest at
once; at the end of the file :meth:`Groups.tables` gives them back as tables that each hold whole
object-periods. Up to ``HOLD_ROWS`` rows stay in memory; beyond that they go to temporary Arrow
files, one per hash bucket of the object-period, read back one bucket at a time (a bucket still
too big is split again with another hash). Memory is about ``HOLD_ROWS`` rows whatever the file
size; one object-period of more than ``MAX_GROUP_VALUES`` values is a :class:`PMFileError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ..schema.counters import CANONICAL_COUNTERS
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary
from .dictionary_apply import drop_repeats, map_rows
from .measurements import MeasurementKeys
from .parts import Part, Reject
from .pm_limits import MAX_GROUP_VALUES
from .pm_xml_rows import PMFileError
from .validate import NON_NEGATIVE_KINDS

HOLD_ROWS = 500_000
BUCKETS = 64
MAX_SPLITS = 3  # hashes tried on a bucket too big to read at once
ROW = "__row"  # the column carrying each row's source row number while held


def grouped_names(dictionary: CounterDictionary) -> pa.Array:
    """Counter names some ``sum`` or ``expr`` source of ``dictionary`` reads."""
    names = {n for _, _, source in dictionary.entries() if source.kind != "rename" for n in source.source_names}
    return pa.array(sorted(names), pa.string())


class Groups:
    """Rows held until the file ends, given back whole per object-period (module notes)."""

    def __init__(self, path: Path, hold_rows: int | None = None):
        self.path, self.hold_rows = path, hold_rows or HOLD_ROWS
        self.pending: list[pa.Table] = []
        self.n_pending = 0
        self.spill: _Spill | None = None

    def add(self, table: pa.Table, row_numbers: np.ndarray) -> None:
        """Hold ``table``'s rows (PM_COUNTERS columns), each with its source row number."""
        if table.num_rows == 0:
            return
        self.pending.append(table.append_column(ROW, pa.array(np.asarray(row_numbers, np.int64))))
        self.n_pending += table.num_rows
        if self.n_pending > self.hold_rows:
            self.spill = self.spill or _Spill(salt=0)
            self.spill.write(pa.concat_tables(self.pending))
            self.pending, self.n_pending = [], 0

    def tables(self) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(rows, their source row numbers), each table whole object-periods."""
        if self.spill is None:
            if self.pending:
                yield _split_rows(pa.concat_tables(self.pending))
            return
        if self.pending:
            self.spill.write(pa.concat_tables(self.pending))
            self.pending = []
        yield from self._drain(self.spill)

    def _drain(self, spill: _Spill) -> Iterator[tuple[pa.Table, np.ndarray]]:
        with spill:
            for size, path in spill.buckets():
                if size > self.hold_rows and spill.salt < MAX_SPLITS and _count_groups(self.path, path) > 1:
                    inner = _Spill(salt=spill.salt + 1)  # another hash spreads the bucket's groups
                    with pa.memory_map(str(path)) as source:
                        reader = ipc.open_file(source)
                        for i in range(reader.num_record_batches):
                            inner.write(pa.Table.from_batches([reader.get_batch(i)]))
                    path.unlink()
                    yield from self._drain(inner)
                    continue
                with pa.memory_map(str(path)) as source:
                    table = ipc.open_file(source).read_all()
                path.unlink()
                yield _split_rows(table)


class FileMapper:
    """Turns a streaming reader's batches of one file into ``pm_counters`` Parts: a value that
    repeats an earlier measurement of the file is rejected (:func:`drop_repeats`), the rows a
    ``sum``/``expr`` reads are held in :class:`Groups` until :meth:`finish`, the rest is mapped at
    once. Each Part counts the values read since the previous one (``values_read``), so their sum
    is the file's; without a dictionary nothing is held."""

    def __init__(self, path: Path, dictionary: CounterDictionary | None):
        self.dictionary = dictionary
        self.groups = Groups(path) if dictionary is not None else None
        self.grouped = grouped_names(dictionary) if dictionary is not None else None
        self.seen = MeasurementKeys()
        self.unreported = 0
        self.yielded = False
        # Terms of a sum or expr whose counter cannot be negative: a negative term would hide in
        # the result (-1000 + 1010 attempts = 10), so it is rejected before it is added, and the
        # sum goes on over the other terms as it does past a NIL one.
        self.signed: dict[str, str] = {}
        for canonical, _, source in dictionary.entries() if dictionary is not None else ():
            info = CANONICAL_COUNTERS.get(canonical)
            if source.kind != "rename" and info is not None and info.kind in NON_NEGATIVE_KINDS:
                for name in source.source_names:
                    self.signed.setdefault(name, f"{canonical}, a {info.kind},")
        self.signed_names = pa.array(sorted(self.signed), pa.string())

    def batch(self, table: pa.Table, rows: np.ndarray | None, rejects: list[Reject]) -> Iterator[Part]:
        """Zero or one Part of a batch read (PM_COUNTERS columns, names as in the file)."""
        self.unreported += table.num_rows + len(rejects)
        table, rows, rejects = drop_repeats(table, rows, rejects, self.seen)
        if self.signed and table.num_rows:
            table, rows, rejects = self._negative_terms(table, rows, rejects)
        if self.groups is not None and table.num_rows:
            held = pc.is_in(table["counter_name"], value_set=self.grouped).to_numpy(zero_copy_only=False)
            if held.any():
                self.groups.add(table.filter(held), rows[held])
                table, rows = table.filter(~held), rows[~held]
        if table.num_rows or rejects:
            yield self._part(table, rows, rejects)

    def _negative_terms(self, table: pa.Table, rows: np.ndarray, rejects: list[Reject]):
        bad = pc.and_(pc.is_in(table["counter_name"], value_set=self.signed_names),
                      pc.less(table["value"], 0.0)).fill_null(False).to_numpy(zero_copy_only=False)
        if not bad.any():
            return table, rows, rejects
        at = np.flatnonzero(bad)
        picked = table.take(pa.array(at)).select(["object_dn", "counter_name", "value"]).to_pylist()
        rejects = sorted([*rejects, *(Reject(int(rows[i]), f"{r['counter_name']} value {r['value']:g} is negative, but "
                                                          f"{self.signed[r['counter_name']]} is computed from it and "
                                                          "cannot be negative",
                                             r["object_dn"], r["counter_name"], str(r["value"]))
                                      for i, r in zip(at.tolist(), picked))], key=lambda r: r.row_number)
        return table.filter(pa.array(~bad)), rows[~bad], rejects

    def finish(self) -> Iterator[Part]:
        """The held rows, whole per object-period, mapped; at least one Part per file."""
        if self.groups is not None:
            for table, rows in self.groups.tables():
                yield self._part(table, rows, [])
        if not self.yielded or self.unreported:
            yield self._part(PM_COUNTERS.schema.empty_table(), np.zeros(0, np.int64), [])

    def _part(self, table: pa.Table, rows: np.ndarray, rejects: list[Reject]) -> Part:
        read, self.unreported, self.yielded = self.unreported, 0, True
        if self.dictionary is None:
            return Part("pm_counters", table, rows, rejects, values_read=read)
        table, rows, note = map_rows(table, self.dictionary, rows)
        return Part("pm_counters", table, rows, rejects, values_read=read, mapping=note)


class _Spill:
    """Rows written to ``BUCKETS`` temporary Arrow files by a hash of their object-period."""

    def __init__(self, salt: int):
        self.salt = salt
        self.folder = tempfile.TemporaryDirectory(prefix="opencem-pm-groups-")
        self.writers: dict[int, ipc.RecordBatchFileWriter] = {}
        self.sizes = np.zeros(BUCKETS, np.int64)
        self.closed = False

    def write(self, table: pa.Table) -> None:
        bucket = _buckets(table, self.salt)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        table = table.take(pa.array(order))
        for b in np.flatnonzero(np.diff(bounds)):
            writer = self.writers.get(b)
            if writer is None:
                writer = self.writers[b] = ipc.new_file(str(self._path(b)), table.schema)
            writer.write_table(table.slice(bounds[b], bounds[b + 1] - bounds[b]))
        self.sizes += np.diff(bounds)

    def buckets(self) -> Iterator[tuple[int, Path]]:
        """(rows, file) of each bucket written, its writer closed."""
        self._close()
        for b in sorted(self.writers):
            yield int(self.sizes[b]), self._path(b)

    def _path(self, bucket: int) -> Path:
        return Path(self.folder.name) / f"{bucket}.arrow"

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self.folder.cleanup()

    def _close(self) -> None:
        if not self.closed:
            for writer in self.writers.values():
                writer.close()
            self.closed = True


def _buckets(table: pa.Table, salt: int) -> np.ndarray:
    """Bucket 0..BUCKETS-1 of each row, a hash of (object_dn, period_start, granularity_s)."""
    dns = pc.dictionary_encode(table["object_dn"].combine_chunks())
    # Python's string hash is stable within a process, which is all a spill lives for.
    dn_hash = np.array([hash((salt, dn)) for dn in dns.dictionary.to_pylist()], np.int64)
    key = dn_hash[dns.indices.to_numpy(zero_copy_only=False)].view(np.uint64)
    start = table["period_start"].cast(pa.int64()).to_numpy().view(np.uint64)
    gran = table["granularity_s"].cast(pa.int64()).to_numpy().view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (key ^ (start * np.uint64(0x9E3779B97F4A7C15)) ^ (gran * np.uint64(0xC2B2AE3D27D4EB4F)))
        mixed = (mixed ^ (mixed >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    return ((mixed >> np.uint64(32)) % np.uint64(BUCKETS)).astype(np.int64)


def _count_groups(source: Path, bucket: Path) -> int:
    """Object-periods in a bucket file; one of more than ``MAX_GROUP_VALUES`` values raises."""
    with pa.memory_map(str(bucket)) as f:
        table = ipc.open_file(f).read_all().select(["object_dn", "period_start", "granularity_s"])
    counts = table.group_by(["object_dn", "period_start", "granularity_s"]).aggregate([([], "count_all")])
    big = pc.greater(counts["count_all"], MAX_GROUP_VALUES)
    if pc.any(big).as_py():
        dn = counts.filter(big)["object_dn"][0].as_py()
        raise PMFileError(source, f"has more than {MAX_GROUP_VALUES:,} values for object {dn!r} in one period, "
                                  "far more counters than any managed object has")
    return counts.num_rows


def _split_rows(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    rows = table[ROW].to_numpy()
    return table.drop_columns([ROW]), rows
