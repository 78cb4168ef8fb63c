"""A landing-zone watcher: probes and OSS drop files every few minutes; each is loaded
exactly once, also across restarts.

A file is taken once it has stopped changing (same size and modification time on two
consecutive scans), so half-written files are left alone; names starting with ``.`` or
ending in ``.tmp``/``.part`` are never taken. Each file is its own atomic batch, remembered by
content fingerprint in the lake manifest, then moved to ``.done/`` (or ``.rejected/`` with a
``.reason.txt``). If the watcher is killed after a commit but before the move, the restart
finds the content already loaded, records it as a duplicate and moves it: nothing is loaded
twice and nothing is lost.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..lake import Lake, LakeBusy, LakeError
from .load import IngestReport, ingest

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


@dataclass
class WatchStats:
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    rows: int = 0


def candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IGNORED_SUFFIXES))


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():  # a re-delivery under the same name: keep both
        target = folder / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
    shutil.move(str(path), target)
    return target


def watch(lake: Lake, folder: Path, interval_s: float = 5.0, mapping: Path | None = None,
          stop: Callable[[], bool] = lambda: False, on_file: Callable[[Path, IngestReport], None] | None = None,
          max_scans: int | None = None, dictionaries: Path | None = None, vendor: str | None = None) -> WatchStats:
    """Scan ``folder`` every ``interval_s`` and load what settled, until ``stop()`` is true
    (or after ``max_scans`` scans)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LakeError(f"{folder}: not a folder to watch")
    done, rejected = folder / ".done", folder / ".rejected"
    stats = WatchStats()
    seen: dict[Path, tuple[int, int]] = {}
    scans = 0
    while not stop() and (max_scans is None or scans < max_scans):
        scans += 1
        current = {}
        for path in candidates(folder):
            st = path.stat()
            current[path] = (st.st_size, st.st_mtime_ns)
        for path, signature in current.items():
            if seen.get(path) != signature:
                continue  # still being written, or new: look again next scan
            try:
                report = ingest(lake, [path], mapping=mapping, dictionaries=dictionaries, vendor=vendor)
            except LakeBusy:
                break  # another process is writing to the lake: try again next scan
            status = report.files[0].status
            if status == "rejected":
                target = _move(path, rejected)
                (rejected / (target.name + ".reason.txt")).write_text(report.files[0].message + "\n")
                stats.rejected += 1
            else:
                _move(path, done)
                stats.duplicates += status == "duplicate"
                stats.loaded += status != "duplicate"
                stats.rows += sum(report.rows().values())
            if on_file:
                on_file(path, report)
        seen = {p: s for p, s in current.items() if p.exists()}
        if not stop() and (max_scans is None or scans < max_scans):
            time.sleep(interval_s)
    return stats
