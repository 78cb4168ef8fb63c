"""The stream's state: one DuckDB database per run, committed once per batch.

It holds, per source the streamed cubes read, the records kept so far (deduplicated: one row
per record id), the event-time watermark per source, the late records, the counts, the tokens
of what was consumed, and the window outputs, one table per cube. Everything a batch changes
is committed in one transaction, and the source is acknowledged after it: that is the
exactly-once effect (docs/stream.md).

Record ids are a table's keys joined with ``|`` (what the simulator's ``Nats-Msg-Id`` carries up
to its ``#``). A copy with more columns set supersedes a copy with fewer (an alarm's clearing
update, a resolved complaint); any other copy is a duplicate and counts once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import Table
from .windows import DEFINITION_VERSION, StreamCube
from .sources import StreamError

COUNTS = ("delivered", "accepted", "updates", "duplicates", "late")
STATUS_SQL = ("SELECT c.*, coalesce(e.records, 0) AS evicted, make_timestamptz(w.max_event_ms * 1000) AS watermark "
              "FROM counts c LEFT JOIN watermarks w USING (source) LEFT JOIN evicted e USING (source) ORDER BY source")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StreamState:
    def __init__(self, path: Path, tables: dict[str, Table], sources: Iterable[str], lookups: Iterable[str]):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tables = tables
        self.sources = sorted(set(sources))
        self.lookups = sorted(set(lookups))
        self.con = duckdb.connect(str(path))
        self.con.execute("SET TimeZone = 'UTC'")
        self._create()
        self.changed: set[str] = set()  # sources with records kept or replaced in the open transaction
        self.horizons: dict[str, tuple[list[int], int, int]] = {}  # see retain()
        self._pm_known: dict[str, int] | None = None  # pm_files by load key, read once per batch
        self._pm_taken: list[tuple[str, str, int]] = []  # written before the commit
        self.watermarks: dict[str, int] = dict(self.con.execute("SELECT source, max_event_ms FROM watermarks").fetchall())

    # -- schema ---------------------------------------------------------------------------
    def _create(self) -> None:
        c = self.con
        c.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        c.execute("CREATE TABLE IF NOT EXISTS consumed (token VARCHAR PRIMARY KEY)")
        c.execute("CREATE TABLE IF NOT EXISTS watermarks (source VARCHAR PRIMARY KEY, max_event_ms BIGINT)")
        c.execute("CREATE TABLE IF NOT EXISTS counts (source VARCHAR PRIMARY KEY, "
                  + ", ".join(f"{n} BIGINT DEFAULT 0" for n in COUNTS) + ")")
        c.execute("CREATE TABLE IF NOT EXISTS late_records (source VARCHAR, record_id VARCHAR, event_time TIMESTAMPTZ, "
                  "window_start TIMESTAMPTZ, watermark TIMESTAMPTZ, filled INTEGER, record VARCHAR)")
        # PM files by load key (content and dictionary digests): a re-sent file is read once.
        c.execute("CREATE TABLE IF NOT EXISTS pm_files (load_key VARCHAR PRIMARY KEY, first_name VARCHAR, "
                  "rows BIGINT, copies BIGINT)")
        c.execute("CREATE TABLE IF NOT EXISTS rejected_records (source VARCHAR, file VARCHAR, row_number BIGINT, "
                  "reason VARCHAR, record VARCHAR)")
        # Per source: records before this event time (epoch ms) were deleted, their spans closed.
        c.execute("CREATE TABLE IF NOT EXISTS evicted (source VARCHAR PRIMARY KEY, before_ms BIGINT, records BIGINT)")
        # (cube, UTC hour since the epoch) changed by a committed batch and not yet published (publish.py).
        c.execute("CREATE TABLE IF NOT EXISTS unpublished (cube VARCHAR, hour BIGINT, PRIMARY KEY (cube, hour))")
        for name in self.sources:
            self._empty_like(f"rec_{name}", self.tables[name].schema, "_id VARCHAR, _filled INTEGER, _t BIGINT")
        for name in self.lookups:
            self._empty_like(f"snap_{name}", self.tables[name].schema, "")

    def _empty_like(self, table: str, schema: pa.Schema, extra: str) -> None:
        if self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchall()[0][0]:
            return
        self.con.register("_schema", schema.empty_table())
        extras = "".join(f", NULL::{e.split()[1]} AS {e.split()[0]}" for e in extra.split(", ") if e)
        self.con.execute(f"CREATE TABLE {q(table)} AS SELECT *{extras} FROM _schema")
        self.con.unregister("_schema")

    def check_meta(self, settings: dict) -> dict | None:
        """The settings the state was kept with, if they differ from ``settings`` (first use: stores them)."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'settings'").fetchall()
        if not row:
            self.con.execute("INSERT INTO meta VALUES ('settings', ?)", [json.dumps(settings, sort_keys=True)])
            return None
        kept = json.loads(row[0][0])
        return kept if kept != settings else None

    def committed(self) -> set[str]:
        return {t for (t,) in self.con.execute("SELECT token FROM consumed").fetchall()}

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN TRANSACTION")
        saved = dict(self.watermarks)
        for name in self.changed:
            self.con.execute(f"DROP TABLE IF EXISTS {q('_changed_' + name)}")
        self.changed: set[str] = set()
        self._pm_known, self._pm_taken = None, []
        try:
            yield self
            self._flush_pm_files()
            self.con.execute("COMMIT")
        except BaseException:
            self.watermarks = saved
            self._pm_known, self._pm_taken = None, []
            self.con.execute("ROLLBACK")
            raise

    def consume(self, tokens: list[str]) -> None:
        if tokens:
            self.con.register("_tokens", pa.table({"token": pa.array(tokens, pa.string())}))
            self.con.execute("INSERT INTO consumed SELECT DISTINCT token FROM _tokens ON CONFLICT DO NOTHING")
            self.con.unregister("_tokens")

    # -- intake ---------------------------------------------------------------------------
    def snapshot(self, name: str, rows: pa.Table) -> None:
        """A snapshot table (cells, subscribers) delivered again replaces the one kept."""
        spec = self.tables[name]
        self.con.register("_snap", canonical(rows, spec))
        self.con.execute(f"DELETE FROM {q('snap_' + name)}")
        self.con.execute(f"INSERT INTO {q('snap_' + name)} BY NAME SELECT * FROM _snap")
        self.con.unregister("_snap")

    def add(self, name: str, rows: pa.Table, window_s: int, lateness_s: int,
            parts: list[int] | None = None) -> tuple[np.ndarray, list[dict] | None]:
        """Take one delivery of an event table: records late past ``lateness_s`` (their window
        closed for that long by the source's watermark, judged record by record in arrival
        order) go to ``late_records``; of the rest, a new id or a fuller copy is kept. Returns
        the event times (epoch ms) of the records kept or replaced (their windows changed) and,
        when ``parts`` gives the row counts of the deliveries ``rows`` joins, counts per part."""
        spec = self.tables[name]
        rows = canonical(rows, spec)
        n = rows.num_rows
        t = pc.cast(rows.column(spec.time_column), pa.int64()).to_numpy(zero_copy_only=False)
        no_time = np.isnan(t) if t.dtype.kind == "f" else np.zeros(n, bool)
        t = np.where(no_time, np.iinfo(np.int64).min, t).astype(np.int64)
        before = np.maximum.accumulate(np.r_[self.watermarks.get(name, np.iinfo(np.int64).min), t])
        window_ms = window_s * 1000
        window_end = (np.floor_divide(t, window_ms) + 1) * window_ms
        late = no_time | (window_end + lateness_s * 1000 <= before[:-1])
        # A late copy of a record past the horizon goes to late_records whether or not the record
        # is deleted yet (evict() runs per batch): the same result however batches are cut.
        horizon = self.horizon(name, before[:-1])
        beyond = late & (t < horizon) if horizon is not None else np.zeros(n, bool)
        if n:
            self.watermarks[name] = int(before[-1])
        inc = rows.append_column("_ord", pa.array(np.arange(n))).append_column("_t", pa.array(t)) \
                  .append_column("_late", pa.array(late)).append_column("_wm", pa.array(before[:-1])) \
                  .append_column("_beyond", pa.array(beyond))
        part = np.repeat(np.arange(len(parts)), parts) if parts else np.zeros(n, np.int64)
        inc = inc.append_column("_part", pa.array(part, pa.int64()))
        c, rec = self.con, q(f"rec_{name}")
        keys = ", ".join(f"coalesce(CAST({q(k)} AS VARCHAR), '')" for k in spec.keys)
        filled = " + ".join(f"CAST({q(f)} IS NOT NULL AS INTEGER)" for f in spec.schema.names)
        cols = ", ".join(q(f) for f in spec.schema.names)
        # A view over the delivery's Arrow table, not a copy: it is read once, twice with late records.
        c.register("_arrow", inc)
        c.execute(f"CREATE OR REPLACE TEMP VIEW _inc AS SELECT *, concat_ws('|', {keys}) AS _id, {filled} AS _filled FROM _arrow")
        c.execute("CREATE OR REPLACE TEMP TABLE _best AS SELECT * FROM _inc WHERE NOT _late "
                  "QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _filled DESC, _ord) = 1")
        c.execute(f"CREATE OR REPLACE TEMP TABLE _win AS SELECT b.*, r._t AS _old_t FROM _best b LEFT JOIN {rec} r "
                  "USING (_id) WHERE r._id IS NULL OR b._filled > r._filled")
        updates = c.execute("SELECT count(_old_t) FROM _win").fetchall()[0][0]
        if updates:  # (each statement on rec scans it: skipped when it has nothing to do)
            c.execute(f"DELETE FROM {rec} WHERE _id IN (SELECT _id FROM _win WHERE _old_t IS NOT NULL)")
        c.execute(f"INSERT INTO {rec} SELECT {cols}, _id, _filled, _t FROM _win")
        struct = ", ".join(f"{q(f)} := i.{q(f)}" for f in spec.schema.names)
        # Late: an id not kept (or a fuller copy than the one kept), once per id and copy.
        has_late = bool(late.any())
        c.execute(f"""
            CREATE OR REPLACE TEMP TABLE _late AS
            SELECT ? AS source, i._id, CASE WHEN i._t = {np.iinfo(np.int64).min} THEN NULL ELSE make_timestamptz(i._t * 1000) END,
                   CASE WHEN i._t = {np.iinfo(np.int64).min} THEN NULL ELSE make_timestamptz((i._t // {window_ms}) * {window_ms} * 1000) END,
                   CASE WHEN i._wm = {np.iinfo(np.int64).min} THEN NULL ELSE make_timestamptz(i._wm * 1000) END,
                   i._filled, to_json(struct_pack({struct})), i._part
            FROM _inc i LEFT JOIN {rec} r USING (_id)
            WHERE i._late AND (i._beyond OR r._id IS NULL OR i._filled > r._filled)
              AND NOT EXISTS (SELECT 1 FROM late_records l WHERE l.source = ? AND l.record_id = i._id AND l.filled >= i._filled)
              AND {'true' if has_late else 'false'}
            QUALIFY row_number() OVER (PARTITION BY i._id ORDER BY i._filled DESC, i._ord) = 1""", [name, name])
        late_n = c.execute("INSERT INTO late_records SELECT * EXCLUDE (_part) FROM _late").fetchall()[0][0] if has_late else 0
        c.execute("DROP VIEW _inc")
        c.unregister("_arrow")
        accepted = c.execute("SELECT count(*) FROM _win").fetchall()[0][0] - updates
        receipts = self._receipts(parts) if parts else None
        self._count(name, delivered=n, accepted=accepted, updates=updates, late=late_n,
                    duplicates=n - accepted - updates - late_n)
        c.execute("INSERT INTO watermarks VALUES (?, ?) ON CONFLICT DO UPDATE SET max_event_ms = excluded.max_event_ms",
                  [name, self.watermarks.get(name)])
        # The batch's kept and replaced records, by id, for what runs after the cubes (rules).
        changed_table = q(f"_changed_{name}")
        if name not in self.changed:
            c.execute(f"CREATE OR REPLACE TEMP TABLE {changed_table} (_id VARCHAR, _t BIGINT)")
            self.changed.add(name)
        c.execute(f"INSERT INTO {changed_table} SELECT _id, _t FROM _win")
        changed = c.execute("SELECT _t FROM _win UNION ALL SELECT _old_t FROM _win WHERE _old_t IS NOT NULL").fetchnumpy()
        return (changed["_t"].astype(np.int64) if len(changed["_t"]) else np.array([], np.int64)), receipts

    def _receipts(self, parts: list[int]) -> list[dict]:
        """Counts per part of the delivery just taken (``_win``: kept, ``_late``: late)."""
        out = [{"delivered": int(k), "accepted": 0, "updates": 0, "duplicates": 0, "late": 0} for k in parts]
        for p, accepted, updates in self.con.execute(
                "SELECT _part, count(*) FILTER (WHERE _old_t IS NULL), count(_old_t) FROM _win GROUP BY 1").fetchall():
            out[p]["accepted"], out[p]["updates"] = accepted, updates
        for p, late in self.con.execute("SELECT _part, count(*) FROM _late GROUP BY 1").fetchall():
            out[p]["late"] = late
        for r in out:
            r["duplicates"] = r["delivered"] - r["accepted"] - r["updates"] - r["late"]
        return out

    # -- eviction -------------------------------------------------------------------------
    def retain(self, spans_s: dict[str, list[int]], lateness_s: int, retain_s: int | None) -> None:
        """Let records go once their spans can no longer change (``spans_s``: per source, the span
        lengths of the cubes reading it) and they are ``retain_s`` older than the watermark;
        None keeps every record."""
        self.horizons = {} if retain_s is None else {
            name: ([s * 1000 for s in spans], lateness_s * 1000, retain_s * 1000) for name, spans in spans_s.items() if spans}

    def horizon(self, name: str, watermark: np.ndarray) -> np.ndarray | None:
        """Per watermark (epoch ms), the event time before which ``name``'s records are let go:
        every window of their spans closed past the lateness (so any copy of them now is late),
        and older than the retention. None: kept for ever."""
        if name not in self.horizons:
            return None
        spans_ms, lateness_ms, retain_ms = self.horizons[name]
        low = np.iinfo(np.int64).min
        wm = np.maximum(np.asarray(watermark, np.int64), low // 2)  # no watermark yet: nothing to let go
        closed = np.min([(wm - lateness_ms) // s * s for s in spans_ms], axis=0)
        return np.where(np.asarray(watermark) == low, low, np.minimum(closed, wm - retain_ms))

    def evict(self) -> int:
        """Delete the kept records past their source's horizon (their window outputs stay). A
        copy of one arriving later is judged against the same horizon, record by record, not
        against what happens to be deleted yet, so how batches are cut still changes nothing.
        Returns the records deleted."""
        deleted = 0
        done = dict(self.con.execute("SELECT source, before_ms FROM evicted").fetchall())
        for name in self.horizons:
            watermark = self.watermarks.get(name)
            if watermark is None:
                continue
            before = int(self.horizon(name, np.array([watermark]))[0])
            if before <= done.get(name, np.iinfo(np.int64).min):
                continue
            n = self.con.execute(f"DELETE FROM {q('rec_' + name)} WHERE _t < ?", [before]).fetchall()[0][0]
            self.con.execute("INSERT INTO evicted VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET before_ms = excluded.before_ms, "
                             "records = evicted.records + excluded.records", [name, before, n])
            deleted += n
        return deleted

    def kept(self) -> int:
        """Records kept in the state, all sources."""
        return sum(self.con.execute(f"SELECT count(*) FROM {q('rec_' + n)}").fetchall()[0][0] for n in self.sources)

    def cells(self, lake_files: list[Path] | None) -> pa.Table | None:
        """The cells inventory PM files are keyed to: the snapshot the stream carried, else the lake's."""
        if "cells" in self.lookups and self.con.execute("SELECT count(*) FROM snap_cells").fetchall()[0][0]:
            return self.con.sql("SELECT * FROM snap_cells").to_arrow_table()
        if lake_files:
            import pyarrow.parquet as pq

            return pa.concat_tables([pq.read_table(p) for p in lake_files], promote_options="default")
        return None

    def pm_file(self, key: str) -> int | None:
        """The rows of the PM file taken before under this load key, or None."""
        if self._pm_known is None:  # one query per batch, not one per file (a few ms each)
            self._pm_known = dict(self.con.execute("SELECT load_key, rows FROM pm_files").fetchall())
        return self._pm_known.get(key)

    def pm_file_taken(self, key: str, name: str, rows: int) -> None:
        """Recorded with the batch's other PM files in one statement before its commit."""
        self.pm_file(key)
        self._pm_known.setdefault(key, rows)
        self._pm_taken.append((key, name, rows))

    def _flush_pm_files(self) -> None:
        if self._pm_taken:
            keys, names, rows = zip(*self._pm_taken)
            self.con.register("_pm", pa.table({"k": pa.array(keys, pa.string()), "n": pa.array(names, pa.string()),
                                               "r": pa.array(rows, pa.int64()), "o": pa.array(range(len(keys)), pa.int64())}))
            self.con.execute("INSERT INTO pm_files SELECT k, arg_min(n, o), arg_min(r, o), count(*) FROM _pm GROUP BY k "
                             "ON CONFLICT DO UPDATE SET copies = pm_files.copies + excluded.copies")
            self.con.unregister("_pm")
        self._pm_taken = []

    def reject(self, source: str, file: str, row_numbers: list, reasons: list[str], records: list) -> None:
        """Records (a row number of None: the whole file) that could not be read or validated."""
        if not reasons:
            return
        n = len(reasons)
        self.con.register("_rejected", pa.table({
            "source": [source] * n, "file": [file] * n, "row_number": pa.array(row_numbers, pa.int64()),
            "reason": pa.array(reasons, pa.string()), "record": pa.array(records, pa.string())}))
        self.con.execute("INSERT INTO rejected_records SELECT * FROM _rejected")
        self.con.unregister("_rejected")

    def count(self, name: str, **counts: int) -> None:
        self._count(name, **counts)

    def ignore(self, name: str, rows: int) -> None:
        """Records of a table no streamed cube reads: counted, not kept."""
        self._count(name, delivered=rows)

    def _count(self, name: str, **counts: int) -> None:
        values = [counts.get(k, 0) for k in COUNTS]
        self.con.execute(f"INSERT INTO counts VALUES (?, {', '.join('?' * len(COUNTS))}) ON CONFLICT DO UPDATE SET "
                         + ", ".join(f"{k} = counts.{k} + excluded.{k}" for k in COUNTS), [name, *values])

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, cube: StreamCube, spans: set[int], cat, lake_lookups: dict[str, list[Path]]) -> int:
        """Evaluate ``cube`` over every record of these spans (span numbers: epoch // span) and
        replace its rows there. Returns the rows written."""
        if not spans:
            return 0
        c = self.con
        span_ms = cube.span_s * 1000
        c.register("_spans", pa.table({"s": pa.array(sorted(spans), pa.int64())}))
        c.execute("CREATE OR REPLACE TEMP TABLE _dirty AS SELECT s FROM _spans")
        c.unregister("_spans")
        lo, hi = min(spans) * span_ms, (max(spans) + 1) * span_ms
        for scan in cube.plan.scans:
            cols = ", ".join(q(f) for f in self.tables[scan.source].schema.names)
            c.execute(f"CREATE OR REPLACE TEMP VIEW {q(scan.source)} AS SELECT {cols} FROM {q('rec_' + scan.source)} "
                      f"WHERE _t >= {lo} AND _t < {hi} AND _t // {span_ms} IN (SELECT s FROM _dirty)")
        self._lookups(cube, lake_lookups)
        out = cube.conform(c.sql(cube.sql).to_arrow_table(), cat)
        table = q(cube.table)
        if not c.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [cube.table]).fetchall()[0][0]:
            c.register("_out", out.schema.empty_table())
            c.execute(f"CREATE TABLE {table} AS SELECT * FROM _out")
        else:
            have = [r[0] for r in c.execute(f"DESCRIBE {table}").fetchall()]
            if have != out.column_names:
                raise StreamError(f"the definitions of {cube.table} changed since {self.path} was started (its columns "
                                  "differ); start a new state with --state FILE or --reset")
        c.register("_out", out)
        c.execute(f"DELETE FROM {table} WHERE {DEFINITION_VERSION} = ? AND epoch_ms(period_start) // {span_ms} "
                  "IN (SELECT s FROM _dirty)", [cube.version])
        c.execute(f"INSERT INTO {table} SELECT * FROM _out")
        c.unregister("_out")
        return out.num_rows

    def _lookups(self, cube: StreamCube, lake_lookups: dict[str, list[Path]]) -> None:
        from ..indicators.evaluate import _lookups, grid_of_cells
        from ..indicators.render import grid_table

        c = self.con
        for name in sorted(_lookups(cube.plan)):
            kept = f"snap_{name}" in {f"snap_{n}" for n in self.lookups} and \
                c.execute(f"SELECT count(*) FROM {q('snap_' + name)}").fetchall()[0][0]
            if kept:
                c.execute(f"CREATE OR REPLACE TEMP VIEW {q(name)} AS SELECT * FROM {q('snap_' + name)}")
            elif lake_lookups.get(name):
                files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in lake_lookups[name])
                c.execute(f"CREATE OR REPLACE TEMP VIEW {q(name)} AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
            else:
                c.register(f"_empty_{name}", self.tables[name].schema.empty_table())
                c.execute(f"CREATE OR REPLACE TEMP VIEW {q(name)} AS SELECT * FROM {q('_empty_' + name)}")
        if any(b.kind == "grid" for s in cube.plan.scans for b in s.dims):
            cells = c.sql("SELECT cell_id, lat, lon FROM cells").to_arrow_table()
            c.register("_grid", grid_of_cells(cells, cube.plan.grid_resolution))
            c.execute(f"CREATE OR REPLACE TEMP VIEW {q(grid_table(cube.plan.grid_resolution))} AS SELECT * FROM _grid")

    # -- reading --------------------------------------------------------------------------
    def counts(self) -> pa.Table:
        return self.con.sql("SELECT * FROM counts ORDER BY source").to_arrow_table()

    def output(self, table: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {q(table)} ORDER BY ALL").to_arrow_table()

    def close(self) -> None:
        self.con.close()


def read_status(path: Path) -> pa.Table:
    """Counts and watermark per source of a state file (opened read-only)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(STATUS_SQL).to_arrow_table()
    finally:
        con.close()


def canonical(rows: pa.Table, spec: Table) -> pa.Table:
    """The table's columns in its order and types; a column the delivery lacks is null."""
    columns = []
    for f in spec.schema:
        if f.name in rows.column_names:
            columns.append(rows.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(rows.num_rows, f.type))
    return pa.table(columns, schema=spec.schema)
