"""What the tabular format readers share: the frame of records each hands the mapping step, and
the line index of a text file.

A :class:`_Frame` holds the source columns a mapping reads, the record number of each row (a
line number for text formats, 1..n for Parquet), the records that could not be parsed at all, and
a way to get a record's raw text by number for reject reports. :class:`_Lines` holds a text file in
memory with the byte range of each line, found with numpy a chunk at a time: the careful CSV path
and the JSON Lines reader work line by line on it, and raw texts come from it.

Kept apart from the readers (:mod:`opencem.ingest.tabular_csv`, :mod:`opencem.ingest.tabular_jsonl`,
Parquet in :mod:`opencem.ingest.tabular`) because all of them use it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .mapping import Source
from .mapping_apply import values_failing
from .parts import Reject

HEAD_BYTES = 1 << 20  # the header (and JSON type sniffing) must fit in the first MiB
CHUNK = 1 << 24
NOT_UTF8 = "is not valid UTF-8 text (check the file's encoding)"


@dataclass
class _Frame:
    table: pa.Table  # source columns the mapping reads
    row_numbers: np.ndarray  # 1-based record number per row (a line for text formats)
    rejects: list[Reject]  # records that could not be parsed at all
    texts: Callable[[np.ndarray], list[str | None]]  # raw text of records by number


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _open(path: Path, src: Source) -> pa.NativeFile:
    stream = pa.input_stream(str(path), compression="detect")
    if src.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        stream = pa.transcoding_input_stream(stream, src.encoding, "utf-8")
    return stream


def _count_lines(stream: pa.NativeFile, universal: bool) -> tuple[int, bytes]:
    """Lines in a stream (breaks: LF, CRLF and, if ``universal``, a lone CR; a last line
    without a break counts), and the last line's text."""
    n, last, pending_cr, tail = 0, None, False, b""
    while chunk := stream.read(CHUNK):
        a = np.frombuffer(chunk, np.uint8)
        n += int(np.count_nonzero(a == 10))
        if universal:
            if pending_cr and a[0] != 10:
                n += 1
            if b"\r" in chunk:  # a CR ends a line unless an LF follows
                n += int(np.count_nonzero((a[:-1] == 13) & (a[1:] != 10)))
            pending_cr = bool(a[-1] == 13)
        last = int(a[-1])
        tail = chunk[-HEAD_BYTES:] if len(chunk) >= HEAD_BYTES else (tail + chunk)[-HEAD_BYTES:]
    n += 1 if pending_cr or (last is not None and last not in (10, 13)) else 0
    return n, re.split(rb"\r\n|\r|\n", tail.rstrip(b"\r\n"))[-1]


def _lazy_texts(path: Path, src: Source, universal: bool) -> Callable[[np.ndarray], list[str | None]]:
    """Raw line texts by number, the file indexed on first use (only when something failed)."""
    lines = functools.cache(lambda: _Lines.of(path, src, universal))
    return lambda numbers: lines().texts(numbers)


class _Lines:
    """A text file held in memory with the byte range of each line (careful path only)."""

    def __init__(self, data: bytes, universal: bool):
        self.data = data
        a = np.frombuffer(data, np.uint8)
        n = len(a)
        lf = np.concatenate([np.flatnonzero(a[o:o + CHUNK] == 10) + o for o in range(0, n, CHUNK)]
                            or [np.zeros(0, np.int64)])
        brk = lf
        if universal and b"\r" in data:
            cr = np.concatenate([np.flatnonzero(a[o:o + CHUNK] == 13) + o for o in range(0, n, CHUNK)])
            lone = cr[(cr + 1 >= n) | (a[np.minimum(cr + 1, n - 1)] != 10)]
            brk = np.sort(np.concatenate([lf, lone]))
        ends = brk.copy()
        crlf = (a[brk] == 10) & (brk > 0) & (a[np.maximum(brk - 1, 0)] == 13)
        ends[crlf] -= 1
        self.starts = np.r_[0, brk + 1].astype(np.int64)
        self.ends = np.r_[ends, n].astype(np.int64)
        if self.starts[-1] == n:  # nothing after the last line break
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]

    @classmethod
    def of(cls, path: Path, src: Source, universal: bool = True) -> _Lines:
        with _open(path, src) as f:
            return cls(f.read(), universal)

    def text(self, number: int) -> str:
        i = number - 1
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8", "backslashreplace")

    def texts(self, numbers: np.ndarray) -> list[str | None]:
        return [self.text(int(n)) for n in numbers]

    def odd_quotes(self, quote: str) -> np.ndarray:
        """Per line: holds an odd number of ``quote`` characters (a chunk at a time)."""
        a, q = np.frombuffer(self.data, np.uint8), ord(quote)
        odd = np.zeros(len(self.starts), np.uint8)
        for o in range(0, len(a), CHUNK):
            hits = (a[o:o + CHUNK] == q).view(np.uint8)
            first = int(np.searchsorted(self.starts, o))  # first line starting in this chunk
            at = self.starts[first:np.searchsorted(self.starts, o + len(hits))] - o
            if len(at) == 0 or at[0] != 0:  # the chunk opens inside the line before
                at, first = np.r_[0, at], first - 1
            odd[first:first + len(at)] ^= np.bitwise_xor.reduceat(hits, at)
        return odd == 1

    def values(self) -> pa.Array:
        """Each line with its line break, as binary values over the file's bytes (no copy)."""
        offsets = np.r_[self.starts, len(self.data)].astype(np.int64)
        return pa.Array.from_buffers(pa.large_binary(), len(self.starts),
                                     [None, pa.py_buffer(offsets), pa.py_buffer(self.data)])

    @functools.cached_property
    def _invalid_utf8(self) -> np.ndarray:
        return values_failing(self.values(), lambda a: a.cast(pa.large_string()))

    def invalid_utf8(self) -> np.ndarray:
        """Per line: not valid UTF-8. Whole-file check first, halving only where it fails."""
        return self._invalid_utf8

    def join(self, indices: np.ndarray) -> pa.Buffer:
        """The text of the given lines (ascending) with their breaks; no copy for one run."""
        whole = pa.py_buffer(self.data)
        if len(indices) == 0:
            return whole.slice(0, 0)
        nexts = np.r_[self.starts[1:], len(self.data)]
        runs = np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1)
        pieces = [whole.slice(int(self.starts[r[0]]), int(nexts[r[-1]] - self.starts[r[0]]))
                  for r in runs]
        return pieces[0] if len(pieces) == 1 else pa.py_buffer(b"".join(memoryview(p) for p in pieces))
