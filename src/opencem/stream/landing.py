"""Landing-folder source: micro-batch Parquet files, taken in the order they arrived.

The folder is the one ``opencem simulate --stream --to DIR`` (or any writer that writes a
hidden temporary file and renames it when complete) fills: ``DIR/tables/<table>_<stamp>.parquet``
(or ``<table>.parquet`` files directly in DIR/tables). Files are taken in order of their delivery
stamp, then name; a file's name is its token, so a committed file is never read again and an
uncommitted one is read again whole after a restart. ``DIR/manifest.json`` with ``complete: true``
says the feed has ended. PM files (``DIR/pm/<vendor>/<file>``, as the OSS hands them over) are
taken in the order they arrived (modification time, then name; their names carry no delivery
stamp), after the batch's table files; their token is ``pm/<vendor>/<file>``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import Table
from .sources import Batch, Delivery, PMFile, StreamError
from .state import canonical

STAMPED = re.compile(r"^(?P<table>[a-z][a-z0-9_]*?)_(?P<stamp>\d{8}T\d{6})\.parquet$")
PLAIN = re.compile(r"^(?P<table>[a-z][a-z0-9_]*)\.parquet$")
PM_BYTES_PER_ROW = 64  # a PM file counts this many bytes per row towards a batch's max_records
DEFAULT_BYTES_PER_ROW = 100.0  # a table's Parquet files before any was read (then learnt)


def read_files(paths: list[Path], spec: Table, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Landing files of one table as one table of its columns, rows in the files' order: one
    multi-threaded DuckDB scan (reading small files one by one costs a footer read and a task
    each, which dominate); files whose columns do not convert that way are read one by one."""
    try:
        return canonical(con.read_parquet([str(p) for p in paths], union_by_name=True).to_arrow_table(), spec)
    except (duckdb.Error, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.concat_tables([_read_one(p, spec) for p in paths])


def _read_one(path: Path, spec: Table) -> pa.Table:
    try:
        return canonical(pq.read_table(path), spec)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as err:
        raise StreamError(f"{path} is not a Parquet file of {spec.name}'s columns ({str(err).splitlines()[0][:200]}); "
                          "move it out of the landing folder and start the stream again") from None


class LandingSource:
    name = "landing"

    def __init__(self, folder: Path, tables: dict[str, Table]):
        self.folder = Path(folder)
        self.tables = tables
        self.done: set[str] = set()
        self.skipped: dict[str, int] = {}  # files of tables opencem does not know, per table
        self.bytes_per_row: dict[str, float] = {}  # per table, learnt from the files read
        self._reader: duckdb.DuckDBPyConnection | None = None

    def start(self, committed: set[str]) -> None:
        self.done = set(committed)

    def pending(self) -> list[tuple[str, str, Path]]:
        """(stamp, table, path) of files not consumed yet, in arrival order."""
        found = []
        folder = self.folder / "tables"
        for path in folder.glob("*.parquet") if folder.is_dir() else ():
            token = f"tables/{path.name}"
            if path.name.startswith(".") or token in self.done:
                continue
            m = STAMPED.match(path.name) or PLAIN.match(path.name)
            if m is None or m["table"] not in self.tables:
                self.skipped[m["table"] if m else path.name] = self.skipped.get(m["table"] if m else path.name, 0) + 1
                self.done.add(token)
                continue
            found.append((m.groupdict().get("stamp") or "", path.name, path))
        return sorted(found)

    def pending_pm(self) -> list[tuple[int, str, Path]]:
        """(mtime_ns, token, path) of PM files not consumed yet, in arrival order."""
        found = []
        folder = self.folder / "pm"
        for path in folder.glob("*/*") if folder.is_dir() else ():
            token = f"pm/{path.parent.name}/{path.name}"
            if path.name.startswith(".") or path.parent.name.startswith(".") or token in self.done or not path.is_file():
                continue
            found.append((path.stat().st_mtime_ns, token, path))
        return sorted(found)

    def poll(self, max_records: int, timeout_s: float) -> Batch | None:
        deadline = time.monotonic() + timeout_s
        while True:
            files, pm = self.pending(), self.pending_pm()
            if files or pm:
                break
            if time.monotonic() >= deadline or self.finished():
                return None
            time.sleep(min(0.2, timeout_s))
        # Files are chosen by their size at the bytes per row each table's files had so far (a
        # file's row count is in its footer, and reading footers one by one costs as much as
        # reading the small files), then read in bulk, one scan per table in arrival order.
        chosen: dict[str, list[Path]] = {}
        tokens, rows = [], 0.0
        for _, name, path in files:
            table = (STAMPED.match(name) or PLAIN.match(name))["table"]
            chosen.setdefault(table, []).append(path)
            tokens.append(f"tables/{name}")
            rows += max(1.0, path.stat().st_size / self.bytes_per_row.get(table, DEFAULT_BYTES_PER_ROW))
            if rows >= max_records:
                break
        deliveries: list[Delivery | PMFile] = []
        rows = 0
        for table, paths in chosen.items():
            records = read_files(paths, self.tables[table], self.reader())
            deliveries.append(Delivery(table, records))
            rows += records.num_rows
            self._learn(table, paths, records.num_rows)
        for _, token, path in pm:  # after the table files: the cells snapshot comes before them
            if rows >= max_records:
                break
            data = path.read_bytes()
            deliveries.append(PMFile(path.parent.name, path.name, data))
            tokens.append(token)
            rows += max(1, len(data) // PM_BYTES_PER_ROW)
        return Batch(deliveries, tokens)

    def reader(self) -> duckdb.DuckDBPyConnection:
        if self._reader is None:  # its own connection: the state's is in a transaction
            self._reader = duckdb.connect()
            self._reader.execute("SET TimeZone = 'UTC'")
        return self._reader

    def _learn(self, table: str, paths: list[Path], rows: int) -> None:
        size = sum(p.stat().st_size for p in paths)
        if rows:
            self.bytes_per_row[table] = max(1.0, size / rows)

    def ack(self, batch: Batch) -> None:
        self.done.update(batch.tokens)

    def finished(self) -> bool:
        try:
            return bool(json.loads((self.folder / "manifest.json").read_text()).get("complete"))
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
