"""Reader for 3GPP PM XML files (TS 32.435 measCollecFile, also TS 28.532/28.550 measDataFile).

Safety: entities are never expanded, nothing is fetched from the network, a file declaring
entities is refused, and libxml2 checks that the whole file is well-formed XML.

Speed: building an lxml tree alone costs about as much time as the 1M values/s budget, so values
are not read from a tree. libxml2 checks the file in a SAX pass without callbacks (no tree, no
Python), and values are pulled from the bytes of each measInfo in bulk: one regular expression
match per measValue, then NumPy and Arrow over every ``<r>`` of a block at once. Only the plain
layout OSSs write is read that way (unprefixed tags, ``measObjLdn`` as the only measValue
attribute, no comment, CDATA or entity reference inside a measInfo); from the first measInfo that
is not plain, the rest of the file goes through lxml ``iterparse``, one measInfo at a time, which
is the reference the fast path is tested against. measInfo headers are always parsed by lxml.
Memory follows the read block and the largest measInfo, not the file.

Leniency: junk before the XML declaration is skipped, and values that cannot be used (a bad
granPeriod, no measObjLdn, an ``r`` without p or whose p no measType declares, measResults longer
or shorter than the measTypes) are reported as :class:`~opencem.ingest.parts.Reject` rows, one per
value or missing counter, numbered by the 1-based measValue ordinal in the file.
"""

from __future__ import annotations

import gzip
import queue
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary, apply_dictionary_long, load_dictionary
from .parts import Part, Reject

CELL_CLASSES = frozenset({"EUtranCellFDD", "EUtranCellTDD", "NRCellDU", "NRCellCU", "UtranCell", "GsmCell"})
ROOT_ELEMENTS = frozenset({"measCollecFile", "measDataFile"})
GZIP_MAGIC = b"\x1f\x8b"
# Values gathered before building an Arrow table: large enough to amortise Arrow calls.
BATCH_VALUES = 200_000
READ_BYTES = 4 << 20
HEAD_BYTES = 1 << 20  # the fileHeader must end within this for the fast path
FAST_PATH = True  # False reads every file with lxml iterparse (the reference the tests compare to)
SAFE = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
XML_WS = " \t\r\n"
# Slot of a value: its r p (0..999999999), or LIST_SLOT + position for a measResults token.
LIST_SLOT = 1 << 40
NO_P, BAD_P = -1, -2
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_CELL_RDN = "[ \t\r\n]*(?:" + "|".join(sorted(CELL_CLASSES)) + ")[ \t\r\n]*=(?P<cell>[^,]*)"
_CELL = "^(?:.*,)?" + _CELL_RDN
_CELL_LAST = "(?:^|,)" + _CELL_RDN + "$"  # the usual case, four times cheaper to match
_CELL_RE = re.compile(_CELL)
_P = re.compile(r"[ \t\r\n]*(\d{1,9})[ \t\r\n]*", re.ASCII)
_SPLIT = re.compile(r"[ \t\r\n]+")
# Comments, PIs (not the declaration), whitespace and byte order marks before the document.
_JUNK = re.compile(rb"(?:[ \t\r\n]|\xef\xbb\xbf|<\?(?!xml[ \t\r\n?])[^?]*(?:\?(?!>)[^?]*)*\?>"
                   rb"|<!--(?:[^-]|-(?!->))*-->)*")
_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z0-9._-]+)")
# The plain layout: anything else between measInfos, or inside measValues, hands over to lxml.
_INFO_START = re.compile(rb"<measInfo(?:[ \t\r\n][^>]*)?>")
_GAP_SURPRISE = re.compile(rb"<[!?]|measInfo|measValue|</?[\w.-]*:|xmlns")
_MEAS_VALUE = re.compile(
    rb'<measValue measObjLdn="([^"<&\t\r\n]*)">[ \t\r\n]*'
    rb'((?:<r p="\d{1,9}">[^<>&]*</r>[ \t\r\n]*)*)'
    rb"(?:(<measResults>[^<&]*</measResults>)[ \t\r\n]*)?"
    rb"(?:(<suspect>[^<&]*</suspect>)[ \t\r\n]*)?</measValue>")


class PMFileError(ValueError):
    """A PM file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"PM file {self.path.name}: {reason}.")


def read_pm_xml_parts(path: str | Path, vendor: str | Path | CounterDictionary | None = None) -> list[Part]:
    """Read one 3GPP PM XML file (plain or gzipped) for ingest: one ``pm_counters`` Part.

    ``row_numbers`` and each reject's ``row_number`` are the 1-based ordinal of the measValue the
    value came from (a dictionary sum cites the first of its parts). Rows read = values kept +
    rejects; for measResults lists each measType without a value counts as one reject.
    ``vendor`` is as for :func:`read_meascollec`.
    """
    tables, rows, rejects = [], [], []
    for batch in _iter_batches(Path(path), vendor):
        tables.append(batch.table)
        rows.append(batch.row_numbers)
        rejects += batch.rejects
    data = pa.concat_tables(tables) if tables else PM_COUNTERS.schema.empty_table()
    row_numbers = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return [Part("pm_counters", data, row_numbers, rejects)]


def read_meascollec(path: str | Path, vendor: str | Path | CounterDictionary | None = None) -> pa.Table:
    """Read one 3GPP PM XML file (plain or gzipped) into the PM_COUNTERS long table.

    ``vendor`` is a vendor name, dictionary path or loaded dictionary used to map counter names and
    units to canonical ones; without it names are kept as in the file and ``vendor`` is the file
    header's vendorName. Non-numeric values (NIL, empty, multi-value lists) become null. Values that
    cannot be used are left out; :func:`read_pm_xml_parts` reports them. The whole result is held
    in memory; use :func:`iter_meascollec` to stream large files.
    """
    return read_pm_xml_parts(path, vendor)[0].data


def iter_meascollec(path: str | Path,
                    vendor: str | Path | CounterDictionary | None = None) -> Iterator[pa.Table]:
    """Yield the file as PM_COUNTERS tables of about ``BATCH_VALUES`` values each, in file order.

    Batches end at a measData boundary, so a dictionary ``sum`` sees every part one managed
    element reports for a period.
    """
    for batch in _iter_batches(Path(path), vendor):
        yield batch.table


def cell_id_of(object_dn: str | None) -> str | None:
    """Value of the last RDN of a known cell class (EUtranCellFDD, NRCellDU, ...), else None."""
    m = _CELL_RE.match(object_dn or "")
    return m.group(1).strip(XML_WS) if m else None


@dataclass
class _Batch:
    table: pa.Table
    row_numbers: np.ndarray  # measValue ordinal per row
    rejects: list[Reject]


def _iter_batches(path: Path, vendor: str | Path | CounterDictionary | None) -> Iterator[_Batch]:
    dictionary = (vendor if isinstance(vendor, CounterDictionary) or vendor is None
                  else load_dictionary(vendor))
    collector = _Collector(dictionary.vendor if dictionary is not None else None)
    try:
        for batch in _Reader(path, collector).batches():
            yield batch if dictionary is None else _apply_dictionary(batch, dictionary)
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def _apply_dictionary(batch: _Batch, dictionary: CounterDictionary) -> _Batch:
    """Map counter names and units; each output row keeps the first measValue it came from."""
    raw = batch.table
    mapped = apply_dictionary_long(raw, dictionary)
    if mapped.num_rows == 0:
        return _Batch(mapped, np.zeros(0, np.int64), batch.rejects)
    if all(s.sum is None for s in dictionary.counters.values()):
        # Renames keep the file order: renamed rows, then unmapped ones. Checked, not assumed.
        names = raw["counter_name"]
        used = pc.is_in(names, value_set=pa.array(sorted(dictionary.source_names()), pa.string()))
        picked = [used] + ([pc.invert(used)] if dictionary.keep_unmapped else [])
        index = np.concatenate([np.flatnonzero(m.to_numpy(zero_copy_only=False)) for m in picked])
        if len(index) == mapped.num_rows and all(
                pc.all(pc.equal(mapped[k], raw[k].take(index))).as_py() is not False
                for k in ("object_dn", "period_start")):
            return _Batch(mapped, batch.row_numbers[index], batch.rejects)
    sources = {src: name for name, s in dictionary.counters.items() for src in s.source_names}
    index = pc.index_in(raw["counter_name"], value_set=pa.array(list(sources), pa.string()))
    out_name = pc.coalesce(pa.array(list(sources.values()), pa.string()).take(index), raw["counter_name"])
    keys = ["object_dn", "period_start", "granularity_s", "counter_name"]
    first = (pa.table([raw[k] for k in keys[:3]] + [out_name, pa.array(batch.row_numbers)], names=[*keys, "_row"])
             .group_by(keys, use_threads=False).aggregate([("_row", "min")]))
    order = pa.table([mapped[k] for k in keys] + [pa.array(np.arange(mapped.num_rows))], names=[*keys, "_i"])
    joined = order.join(first, keys, join_type="left outer", use_threads=False).sort_by("_i")
    return _Batch(mapped, joined["_row_min"].to_numpy(zero_copy_only=False).astype(np.int64), batch.rejects)


# --- measInfo headers ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Header:
    """What a measInfo says about its values; ``problem`` set means none of them can be used."""

    label: str
    start_ms: int
    gran_s: int
    problem: str | None
    names: tuple[str, ...]
    keys: np.ndarray      # sorted slots the measTypes answer to
    key_type: np.ndarray  # index into names per key

    def types(self, slots: np.ndarray) -> np.ndarray:
        """Index into ``names`` per value slot, -1 where no measType matches."""
        if len(self.keys) == 0:
            return np.full(len(slots), -1, np.int64)
        i = np.searchsorted(self.keys, slots).clip(0, len(self.keys) - 1)
        return np.where(self.keys[i] == slots, self.key_type[i], -1)


def _header(info: etree._Element, begin: datetime | None, begin_text: str | None) -> _Header:
    ns = info.tag[: info.tag.index("}") + 1] if info.tag.startswith("{") else ""
    label = f"measInfo {info.get('measInfoId')!r}" if info.get("measInfoId") else "measInfo (no measInfoId)"
    type_elems = info.findall(ns + "measType")
    if type_elems:
        names = tuple((t.text or "").strip() for t in type_elems)
        ps = [_p_slot(t.get("p")) for t in type_elems]
    else:
        names = tuple(_words(info.findtext(ns + "measTypes")))
        ps = list(range(1, len(names) + 1))
    slots = np.array([*ps, *(LIST_SLOT + np.arange(len(names)))], np.int64)
    order = np.arange(2 * len(names)) % max(len(names), 1)
    keys, first = np.unique(slots, return_index=True)  # the first measType wins a repeated p
    keep = keys >= 0
    start_ms, gran_s, problem = 0, 0, None
    gran = info.find(ns + "granPeriod")
    duration = gran.get("duration") if gran is not None else None
    seconds = _duration_s(duration)
    end_text = gran.get("endTime") if gran is not None else None
    end = _parse_time(end_text.strip()) if end_text else None
    if gran is None:
        problem = f"{label} has no granPeriod"
    elif seconds is None or not 0 < seconds < 2**31:
        problem = f"{label} has granPeriod duration {duration!r}, not an ISO 8601 duration"
    elif end_text and end is None:
        problem = f"{label} has granPeriod endTime {end_text!r}, not an ISO 8601 time"
    elif not end_text and begin is None:
        problem = (f"{label} has no granPeriod endTime and the file no beginTime" if begin_text is None
                   else f"{label} has no granPeriod endTime and the file beginTime {begin_text!r} is not an "
                        "ISO 8601 time")
    else:
        try:
            start = end - timedelta(seconds=seconds) if end else begin
            start_ms, gran_s = round(start.timestamp() * 1000), round(seconds)
        except (OverflowError, ValueError):
            problem = f"{label} has a granPeriod that starts before year 1"
    return _Header(label, start_ms, gran_s, problem, names, keys[keep], order[first][keep])


def _p_slot(text: str | None) -> int:
    if text is None:
        return NO_P
    m = _P.fullmatch(text)
    return int(m.group(1)) if m else BAD_P


def _words(text: str | None) -> list[str]:
    text = (text or "").strip(XML_WS)
    return _SPLIT.split(text) if text else []


@lru_cache(maxsize=1024)
def _parse_time(text: str) -> datetime | None:
    # Files repeat the same few period stamps thousands of times.
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    # 32.435 times carry an offset; one without is taken as UTC.
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@lru_cache(maxsize=64)
def _duration_s(text: str | None) -> float | None:
    m = _DURATION.match((text or "").strip())
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


# --- values to rows ------------------------------------------------------------------------------

class _Collector:
    """Values of the measInfos read so far, turned into PM_COUNTERS rows and rejects in batches
    that end at a measData boundary. Both read paths feed it the same arrays."""

    def __init__(self, vendor: str | None):
        self.vendor = vendor           # the dictionary's vendor, else the header's vendorName
        self.names: dict[str, int] = {}
        self.n_mv_done = 0             # measValues already handed out in batches
        self.n_infos = 0               # measInfos added, for the hand-over to lxml
        self._clear()

    def _clear(self) -> None:
        self.headers: list[_Header] = []
        self.info_mv: list[np.ndarray] = []
        self.ldn: list[pa.Array] = []
        self.suspect: list[np.ndarray] = []
        self.mv_values: list[np.ndarray] = []
        self.type_id: list[np.ndarray] = []
        self.slot: list[np.ndarray] = []
        self.text: list[pa.Array] = []
        self.raw_p: dict[int, str] = {}            # value index -> p text, for a p that is not a number
        self.missing: list[tuple[int, Reject]] = []  # (mv index, reject) for short measResults
        self.boundaries: list[tuple[int, int]] = []  # (measInfos, values) at each measData end
        self.n_values = self.n_mv = 0

    def add(self, headers: list[_Header], info_mv: np.ndarray, ldn: pa.Array, suspect: np.ndarray,
            mv_values: np.ndarray, slot: np.ndarray, text: pa.Array, ends: list[int] = (),
            missing: list[tuple[int, Reject]] = ()) -> None:
        """Values of whole measInfos: measValues per measInfo, then per measValue its ldn (null if
        absent), suspect flag and value count, then per value its slot and text. A measData ends
        after each of the first ``ends`` measInfos; ``missing`` are the rejects of measTypes a
        short measResults left without a value, by pending measValue index."""
        if len(headers) > 1:
            uniq = {h: i for i, h in enumerate(dict.fromkeys(headers))}
            val_header = np.repeat(np.repeat([uniq[h] for h in headers], info_mv), mv_values)
            type_id = np.full(len(slot), -1, np.int64)
            for h, i in uniq.items():
                mask = val_header == i
                type_id[mask] = self._batch_ids(h)[h.types(slot[mask])]
        elif headers:
            type_id = self._batch_ids(headers[0])[headers[0].types(slot)]
        else:
            type_id = np.zeros(0, np.int64)
        self.headers += headers
        self.n_infos += len(headers)
        for store, item in ((self.info_mv, info_mv), (self.ldn, ldn), (self.suspect, suspect),
                            (self.mv_values, mv_values), (self.type_id, type_id), (self.slot, slot),
                            (self.text, text)):
            store.append(item)
        if len(ends):
            mv_end = np.cumsum(info_mv)[np.array(ends) - 1]
            values = np.concatenate([[0], np.cumsum(mv_values)])[mv_end]
            base = len(self.headers) - len(headers)
            self.boundaries += [(base + k, self.n_values + int(v)) for k, v in zip(ends, values)]
        self.missing += missing
        self.n_values += len(slot)
        self.n_mv += len(mv_values)

    def _batch_ids(self, h: _Header) -> np.ndarray:
        # Position -1 (no measType) maps to -1 through the appended sentinel.
        return np.array([*(self.names.setdefault(n, len(self.names)) for n in h.names), -1], np.int64)

    def measdata_end(self) -> None:
        if self.headers and (not self.boundaries or self.boundaries[-1][0] != len(self.headers)):
            self.boundaries.append((len(self.headers), self.n_values))

    def ready(self) -> Iterator[_Batch]:
        """Batches of at least BATCH_VALUES values that end at a measData boundary."""
        while True:
            cut = next((b for b in self.boundaries if b[1] >= BATCH_VALUES), None)
            if cut is None:
                return
            yield self._take(cut[0])

    def rest(self) -> Iterator[_Batch]:
        if self.headers:
            yield self._take(len(self.headers))

    def _take(self, n_infos: int) -> _Batch:
        """Rows and rejects of the first ``n_infos`` pending measInfos; the rest stays pending."""
        info_mv = np.concatenate(self.info_mv)
        mv_values = np.concatenate(self.mv_values)
        n_mv = int(info_mv[:n_infos].sum())
        n_val = int(mv_values[:n_mv].sum())
        headers = self.headers
        ldn = pa.concat_arrays(self.ldn) if self.ldn else pa.array([], pa.string())
        suspect, type_id, slot = (np.concatenate(x) for x in (self.suspect, self.type_id, self.slot))
        text = pa.concat_arrays(self.text) if self.text else pa.array([], pa.string())
        raw_p, missing, boundaries = self.raw_p, self.missing, self.boundaries
        batch = self._rows(headers[:n_infos], info_mv[:n_infos], ldn[:n_mv], suspect[:n_mv],
                           mv_values[:n_mv], type_id[:n_val], slot[:n_val], text[:n_val], raw_p,
                           [r for i, r in missing if i < n_mv])
        self._clear()
        if n_infos < len(headers):
            self.headers = headers[n_infos:]
            for store, item in ((self.info_mv, info_mv[n_infos:]), (self.ldn, ldn[n_mv:]),
                                (self.suspect, suspect[n_mv:]), (self.mv_values, mv_values[n_mv:]),
                                (self.type_id, type_id[n_val:]), (self.slot, slot[n_val:]),
                                (self.text, text[n_val:])):
                store.append(item)
            self.n_mv, self.n_values = len(mv_values) - n_mv, len(slot) - n_val
            self.raw_p = {i - n_val: t for i, t in raw_p.items() if i >= n_val}
            self.missing = [(i - n_mv, r) for i, r in missing if i >= n_mv]
            self.boundaries = [(b - n_infos, v - n_val) for b, v in boundaries if b > n_infos]
        self.n_mv_done += n_mv
        return batch

    def _rows(self, headers, info_mv, ldn, suspect, mv_values, type_id, slot, text, raw_p, missing) -> _Batch:
        mv_info = np.repeat(np.arange(len(headers)), info_mv)
        val_mv = np.repeat(np.arange(len(mv_values)), mv_values)
        bad_header = np.array([h.problem is not None for h in headers], bool)
        ok = (type_id >= 0) & ~bad_header[mv_info][val_mv] & ldn.is_valid().to_numpy(zero_copy_only=False)[val_mv]
        keep = np.flatnonzero(ok)
        mv, info = val_mv[keep], mv_info[val_mv[keep]]
        n = len(keep)
        columns = {
            "object_dn": ldn.take(mv),
            "cell_id": _cell_ids(ldn).take(mv),
            "period_start": pa.array(np.array([h.start_ms for h in headers], np.int64)[info]).cast(TIMESTAMP),
            "granularity_s": pa.array(np.array([h.gran_s for h in headers], np.int32)[info]),
            "counter_name": pa.array(list(self.names), pa.string()).take(type_id[keep]),
            "value": _numbers(text.take(keep)),
            "vendor": pa.nulls(n, pa.string()).fill_null(self.vendor) if self.vendor else pa.nulls(n, pa.string()),
            "suspect": pa.array(suspect[mv]),
        }
        rejects = [self._reject(i, headers[mv_info[val_mv[i]]], val_mv[i], ldn, mv_values, slot, text, raw_p)
                   for i in np.flatnonzero(~ok)]
        rejects = sorted(rejects + missing, key=lambda r: r.row_number)  # file order, whatever the batch
        return _Batch(pa.table(columns).cast(PM_COUNTERS.schema), self.n_mv_done + mv + 1, rejects)

    def _reject(self, i, header: _Header, mv, ldn, mv_values, slot, text, raw_p) -> Reject:
        row, object_dn, s = self.n_mv_done + int(mv) + 1, ldn[int(mv)].as_py(), int(slot[i])
        where = object_dn if object_dn is not None else header.label
        if header.problem:
            return Reject(row, header.problem, where)
        if object_dn is None:
            return Reject(row, f"measValue in {header.label} has no measObjLdn", where, "measObjLdn")
        if s == NO_P:
            return Reject(row, "r has no p attribute", where, "p")
        if s == BAD_P:
            return Reject(row, f"r p={raw_p.get(i)!r} is not a whole number", where, "p", raw_p.get(i))
        if s >= LIST_SLOT:
            return Reject(row, f"measValue has {int(mv_values[mv])} measResults for {len(header.names)} "
                               "measTypes", where, "measResults", text[int(i)].as_py())
        return Reject(row, f"r p={s} matches no measType of {header.label}", where, "p", str(s))


def _cell_ids(ldn: pa.Array) -> pa.Array:
    """:func:`cell_id_of` of every DN."""
    cell = pc.struct_field(pc.extract_regex(ldn, _CELL_LAST), 0)
    other = pc.and_(pc.is_null(cell), pc.is_valid(ldn))
    if pc.any(other).as_py():
        cell = pc.replace_with_mask(cell, other, pc.struct_field(pc.extract_regex(ldn.filter(other), _CELL), 0))
    return pc.utf8_trim(cell, XML_WS)


def _numbers(text: pa.Array) -> pa.Array:
    """Numbers as float64; anything else (NIL, empty, multi-value lists) null."""
    try:  # Arrow's parser accepts no finite number the pattern below refuses (tested)
        values = pc.cast(text, pa.float64())
        if pc.all(pc.is_finite(values)).as_py() is not False:
            return values
    except pa.ArrowInvalid:
        pass
    text = pc.utf8_trim_whitespace(text)
    numeric = pc.match_substring_regex(text, _NUMBER)
    return pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64())


# --- reading the file ----------------------------------------------------------------------------

class _Discard:
    """A SAX target with no callbacks: libxml2 checks the XML without building anything."""

    def close(self) -> None:
        return None


class _Validator:
    """libxml2's well-formedness check of the bytes fed, in a thread: lxml parses a chunk
    without holding the GIL, so the check runs beside the extraction on another core."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="pm-xml-check", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        parser = None
        # Every chunk is taken and acknowledged whatever happens, so the reader never waits forever.
        while (chunk := self.chunks.get()) is not None:
            try:
                if self.error is None:
                    parser = parser or etree.XMLParser(target=_Discard(), **SAFE)
                    parser.feed(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                self.error = exc
            self.chunks.task_done()
        try:
            if self.error is None and parser is not None:
                parser.close()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        self.chunks.task_done()

    def feed(self, chunk: bytes) -> None:
        self._raise()
        self.chunks.put(chunk)

    def finish(self) -> None:
        """Wait for the check of everything fed, as a whole document; raise what it found."""
        self.stop()
        self._raise()

    def sync(self) -> None:
        """Wait for the check of the chunks fed so far; raise what it found."""
        self.chunks.join()
        self._raise()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.chunks.put(None)
            self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


class _Rest:
    """A stream that starts with ``first`` and continues with ``stream``."""

    def __init__(self, first: bytes, stream: BinaryIO):
        self.first, self.stream = first, stream

    def read(self, n: int = -1) -> bytes:
        if self.first:
            out = self.first if n < 0 or n >= len(self.first) else self.first[:n]
            self.first = self.first[len(out):]
            return out
        return self.stream.read(n)


class _Irregular(Exception):
    """The bytes are not in the plain layout; lxml reads the file from here on."""


class _Reader:
    def __init__(self, path: Path, collector: _Collector):
        self.path, self.out = path, collector
        self.begin: datetime | None = None
        self.begin_text: str | None = None
        self.wrap = (b"", b"")
        self.header_cache: dict[bytes, _Header] = {}

    def batches(self) -> Iterator[_Batch]:
        with _open(self.path) as stream:
            first = stream.read(65536)
            first = first[_JUNK.match(first).end():]
            done = (yield from self._fast(_Rest(first, stream))) if FAST_PATH else False
        if not done:
            with _open(self.path) as stream:
                first = stream.read(65536)
                yield from self._lxml(_Rest(first[_JUNK.match(first).end():], stream), self.out.n_infos)
        yield from self.out.rest()

    def _fast(self, stream: _Rest):
        """Read in the plain layout; False when lxml must read from measInfo ``out.n_infos`` on."""
        buf = stream.read(READ_BYTES)
        while (end := buf.find(b"</fileHeader>")) < 0 and len(buf) < HEAD_BYTES and (more := stream.read(READ_BYTES)):
            buf += more
        m = _ENCODING.match(buf)
        if end < 0 or (m and m.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii")):
            return False
        end += len(b"</fileHeader>")
        if not self._head(buf[:end]):
            return False
        validator = _Validator()
        try:
            validator.feed(buf)
            done = yield from self._blocks(stream, validator, buf[end:])
            if done:
                validator.finish()
            return done
        finally:
            validator.stop()

    def _blocks(self, stream: _Rest, validator: _Validator, tail: bytes):
        eof = False
        while not eof:
            pieces, carry = [tail], tail[-15:]
            while True:  # read until a block boundary (a measInfo may be longer than READ_BYTES)
                data = stream.read(READ_BYTES)
                eof = not data
                if eof:
                    cut = sum(len(p) for p in pieces)
                    break
                validator.feed(data)
                pieces.append(data)
                probe = carry + data
                last = max(probe.rfind(b"</measData>") + 11, probe.rfind(b"</measInfo>") + 11)
                if last > 10:
                    cut = sum(len(p) for p in pieces) - len(probe) + last
                    break
                carry = probe[-15:]
            block = b"".join(pieces)
            tail = block[cut:]
            try:
                self._block(block, cut)
            except _Irregular:
                return False
            except (UnicodeDecodeError, pa.ArrowInvalid):
                validator.sync()  # bytes the check had not reached yet: it raises what is wrong
                return False
            yield from self.out.ready()
        return True

    def _head(self, head: bytes) -> bool:
        """Root, DTD and fileHeader from the bytes up to ``</fileHeader>``; False if unusual."""
        parser = etree.XMLPullParser(events=("start", "end"), remove_comments=True, remove_pis=True, **SAFE)
        parser.feed(head)
        events = list(parser.read_events())
        if not events:
            return False
        root = events[0][1]
        _refuse_entities(self.path, root)
        if _local(root.tag) not in ROOT_ELEMENTS:
            raise PMFileError(self.path, f"is not a 3GPP measCollecFile or measDataFile (root element is "
                                         f"<{_local(root.tag)}>)")
        event, header = events[-1]
        if event != "end" or _local(header.tag) != "fileHeader" or header.getparent() is not root:
            return False
        # Closing the root makes lxml report namespace errors, which the SAX check does not.
        parser.feed(f"</{root.prefix + ':' if root.prefix else ''}{_local(root.tag)}>".encode())
        parser.close()
        self._file_header(header)
        decls = " ".join(f"xmlns{':' + k if k else ''}={quoteattr(v)}" for k, v in root.nsmap.items())
        self.wrap = (f"<w {decls}>".encode(), b"</w>")
        return True

    def _file_header(self, header: etree._Element) -> None:
        self.out.vendor = self.out.vendor or header.get("vendorName")
        self.begin_text = next((c.get("beginTime") for c in header if c.get("beginTime")), None)
        self.begin = _parse_time(self.begin_text.strip()) if self.begin_text else None

    def _block(self, block: bytes, size: int) -> None:
        """Add the measInfos of ``block[:size]``: whole measInfos and what lies between them."""
        infos: list[tuple[_Header, bytes]] = []
        ends: list[int] = []  # measData ends after this many of the block's measInfos
        pos = 0
        while True:
            i = block.find(b"<measInfo", pos, size)
            gap_end = size if i < 0 else i
            if _GAP_SURPRISE.search(block, pos, gap_end):
                raise _Irregular
            if block.find(b"measData", pos, gap_end) >= 0:
                if infos:
                    ends.append(len(infos))
                else:
                    self.out.measdata_end()
            if i < 0:
                break
            start = _INFO_START.match(block, i, size)
            if start is None:
                raise _Irregular
            if start.group().endswith(b"/>"):
                infos.append((self._cached_header(start.group(), b""), b""))
                pos = start.end()
                continue
            e = block.find(b"</measInfo>", start.end(), size)
            v = block.find(b"<measValue", start.end(), e)
            if e < 0 or block.find(b"<measInfo", start.end(), e) >= 0:
                raise _Irregular
            head_end = e if v < 0 else v
            infos.append((self._cached_header(block[i:head_end], b"</measInfo>"), block[head_end:e]))
            pos = e + 11
        if infos:
            self._add_plain(infos, ends)

    def _cached_header(self, head: bytes, close: bytes) -> _Header:
        header = self.header_cache.get(head)
        if header is None:
            try:
                wrapper = etree.fromstring(self.wrap[0] + head + close + self.wrap[1],
                                           etree.XMLParser(remove_comments=True, remove_pis=True, **SAFE))
            except etree.XMLSyntaxError:
                raise _Irregular from None
            if len(wrapper) != 1 or _local(wrapper[0].tag) != "measInfo":
                raise _Irregular
            if len(self.header_cache) > 4096:
                self.header_cache.clear()
            header = self.header_cache[head] = _header(wrapper[0], self.begin, self.begin_text)
        return header

    def _add_plain(self, infos: list[tuple[_Header, bytes]], ends: list[int]) -> None:
        found = [_MEAS_VALUE.findall(region) for _, region in infos]
        mvs = [m for f in found for m in f]
        ldns = [m[0] for m in mvs]
        bodies = [m[1] for m in mvs]
        joined = b"".join(bodies)
        lists = [i for i, m in enumerate(mvs) if m[2]]
        susp = [m[3] for m in mvs]
        n_tags = sum(region.count(b"<") for _, region in infos)
        expected = joined.count(b"<") + 2 * (len(mvs) + len(lists) + sum(1 for s in susp if s))
        if n_tags != expected or any(bodies[i] for i in lists):
            raise _Irregular
        counts, slots, texts = _r_values(joined, np.fromiter(map(len, bodies), np.int64, len(bodies)))
        missing: list[tuple[int, Reject]] = []
        if lists:
            counts, slots, texts = self._with_lists(infos, found, mvs, lists, counts, slots, texts, missing)
        suspect = np.array([s[9:-10].strip(b" \t\r\n").lower() == b"true" for s in susp], bool)
        ldn = pa.array(ldns, pa.binary()).cast(pa.string()) if ldns else pa.array([], pa.string())
        self.out.add([h for h, _ in infos], np.array([len(f) for f in found], np.int64), ldn, suspect,
                     counts, slots, texts, ends, missing)

    def _with_lists(self, infos, found, mvs, lists, counts, slots, texts, missing):
        """Merge measResults tokens into the r values, in measValue order."""
        headers = [h for (h, _), f in zip(infos, found) for _ in f]
        tokens = [mvs[i][2][13:-14].split() for i in lists]
        list_counts = np.array([len(t) for t in tokens], np.int64)
        mv_of_r = np.repeat(np.arange(len(mvs)), counts)
        counts = counts.copy()
        counts[lists] = list_counts
        mv_of_list = np.repeat(np.array(lists, np.int64), list_counts)
        order = np.argsort(np.concatenate([mv_of_r, mv_of_list]), kind="stable")
        within = np.arange(len(mv_of_list)) - np.repeat(np.cumsum(list_counts) - list_counts, list_counts)
        slots = np.concatenate([slots, LIST_SLOT + within])[order]
        flat = pa.array([t for ts in tokens for t in ts], pa.binary()).cast(pa.string())
        texts = pa.concat_arrays([texts, flat]).take(order)
        for i, ts in zip(lists, tokens):
            missing += self._missing(self.out.n_mv + i, headers[i], mvs[i][0].decode(), len(ts))
        return counts, slots, texts

    def _missing(self, mv: int, header: _Header, ldn: str | None, n_tokens: int) -> list[tuple[int, Reject]]:
        """A short measResults list: one reject per measType left without a value."""
        if header.problem is not None or ldn is None or n_tokens >= len(header.names):
            return []
        reason = f"measValue has {n_tokens} measResults for {len(header.names)} measTypes"
        row = self.out.n_mv_done + mv + 1
        return [(mv, Reject(row, reason, ldn, name)) for name in header.names[n_tokens:]]

    def _lxml(self, stream: _Rest, skip: int) -> Iterator[_Batch]:
        """Read with lxml iterparse, leaving out the first ``skip`` measInfos (already read)."""
        context = etree.iterparse(stream, events=("end",), tag=("{*}fileHeader", "{*}measInfo", "{*}measData"),
                                  remove_comments=True, remove_pis=True, **SAFE)
        checked, n_info = False, 0
        for _, elem in context:
            if not checked:
                _refuse_entities(self.path, elem)
                checked = True
            name = _local(elem.tag)
            if name == "fileHeader":
                self._file_header(elem)
            elif name == "measInfo":
                n_info += 1
                if n_info > skip:
                    self._add_tree(elem)
                _free(elem)
            elif name == "measData" and elem.getparent() is not None and elem.getparent().getparent() is None:
                _free(elem)
                if n_info >= skip:  # before that, the fast path has already seen this boundary
                    self.out.measdata_end()
                yield from self.out.ready()
        root = context.root
        if root is None or _local(root.tag) not in ROOT_ELEMENTS:
            found = "nothing" if root is None else f"<{_local(root.tag)}>"
            raise PMFileError(self.path, f"is not a 3GPP measCollecFile or measDataFile (root element is {found})")

    def _add_tree(self, info: etree._Element) -> None:
        ns = info.tag[: info.tag.index("}") + 1] if info.tag.startswith("{") else ""
        header = _header(info, self.begin, self.begin_text)
        ldns, suspects, counts, slots, texts, missing = [], [], [], [], [], []
        base, done = self.out.n_values, 0
        for mv in info.iterfind(ns + "measValue"):
            ldn = mv.get("measObjLdn")
            rs = mv.findall(ns + "r")
            if rs:
                for r in rs:
                    slot = _p_slot(r.get("p"))
                    if slot == BAD_P:
                        self.out.raw_p[base + len(slots)] = r.get("p")
                    slots.append(slot)
                    texts.append(r.text or "")
            elif (results := mv.find(ns + "measResults")) is not None:
                tokens = _words(results.text)
                slots += range(LIST_SLOT, LIST_SLOT + len(tokens))
                texts += tokens
                missing += self._missing(self.out.n_mv + len(ldns), header, ldn, len(tokens))
            counts.append(len(slots) - done)
            done = len(slots)
            ldns.append(ldn)
            suspects.append((mv.findtext(ns + "suspect") or "").strip(XML_WS).lower() == "true")
        self.out.add([header], np.array([len(ldns)], np.int64), pa.array(ldns, pa.string()),
                     np.array(suspects, bool), np.array(counts, np.int64), np.array(slots, np.int64),
                     pa.array(texts, pa.string()), missing=missing)


def _r_values(joined: bytes, body_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Count per measValue, p and text of every ``<r p="N">text</r>`` in ``joined``, the r elements
    of consecutive measValues (``body_lens`` bytes each) with whitespace between them."""
    a = np.frombuffer(joined, np.uint8)
    lt, gt = np.flatnonzero(a == ord("<")), np.flatnonzero(a == ord(">"))
    # Only r tags are here, and text excludes '>': tags alternate open, close.
    opens, closes, open_ends = lt[0::2], lt[1::2], gt[0::2]
    counts = np.diff(np.searchsorted(opens, np.cumsum(body_lens)), prepend=0)
    first, last = opens + 6, open_ends - 1  # the digits of p="N"
    p = np.zeros(len(opens), np.int64)
    for k in range(int((last - first).max(initial=0))):
        more = first + k < last
        p = np.where(more, p * 10 + a[np.minimum(first + k, len(a) - 1)] - ord("0"), p)
    return counts, p, _slices(joined, open_ends + 1, closes)


def _slices(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """``buf[starts[i]:ends[i]]`` as a string array, sliced by Arrow."""
    if len(starts) == 0:
        return pa.array([], pa.string())
    offsets = np.empty(2 * len(starts), np.int64)
    offsets[0::2], offsets[1::2] = starts, ends
    spans = pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    return spans.take(pa.array(np.arange(0, len(offsets), 2))).cast(pa.large_string()).cast(pa.string())


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        yield gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _refuse_entities(path: Path, elem: etree._Element) -> None:
    # Entity declarations have no place in PM files and are how expansion attacks start.
    dtd = elem.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise PMFileError(path, "declares XML entities in its DTD, which PM files never need")


def _free(elem: etree._Element) -> None:
    """Drop a handled element and the siblings before it so the tree stays small."""
    elem.clear(keep_tail=False)
    parent = elem.getparent()
    while elem.getprevious() is not None:
        del parent[0]
