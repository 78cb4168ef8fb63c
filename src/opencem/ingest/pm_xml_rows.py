"""What the two read paths of :mod:`opencem.ingest.pm_xml` share: measInfo headers, and the
collector that turns their values into PM_COUNTERS rows and rejects.

Both paths, the byte-level fast path (:mod:`opencem.ingest.pm_xml_scan`) and lxml ``iterparse``,
parse measInfo headers with :func:`_header` and feed :class:`_Collector` the same arrays (values
per measInfo and measValue, each value's slot and text), so rows, row numbers and rejects cannot
differ between them. The file error, the safe parser settings and the entity and root-element
checks both paths apply are here too. Kept apart so each path's module holds only how it finds
the values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..errors import OpencemError
from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .parts import Reject

CELL_CLASSES = frozenset({"EUtranCellFDD", "EUtranCellTDD", "NRCellDU", "NRCellCU", "UtranCell", "GsmCell"})
ROOT_ELEMENTS = frozenset({"measCollecFile", "measDataFile"})
SAFE = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
XML_WS = " \t\r\n"
# Slot of a value: its r p (0..999999999), or LIST_SLOT + position for a measResults token.
LIST_SLOT = 1 << 40
NO_P, BAD_P = -1, -2
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
# An RDN value: anything up to the next comma that is not escaped (TS 32.300 writes "a\,b").
RDN_VALUE = r"(?:[^,\\]|\\[\s\S]|\\$)*"
_CELL_RDN = "[ \t\r\n]*(?:" + "|".join(sorted(CELL_CLASSES)) + ")[ \t\r\n]*=(?P<cell>" + RDN_VALUE + ")"
_CELL = f"^(?:{RDN_VALUE},)*" + _CELL_RDN  # the last cell RDN, wherever it is
_CELL_LAST = "(?:^|,)" + _CELL_RDN + "$"  # the usual case, four times cheaper to match
_CELL_RE = re.compile(_CELL)
_P = re.compile(r"[ \t\r\n]*(\d{1,9})[ \t\r\n]*", re.ASCII)
_SPLIT = re.compile(r"[ \t\r\n]+")


class PMFileError(OpencemError, ValueError):
    """A PM file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"PM file {self.path.name}: {reason}.")


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


@dataclass
class _Batch:
    table: pa.Table
    row_numbers: np.ndarray  # measValue ordinal per row
    rejects: list[Reject]


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


@lru_cache(maxsize=4096)  # files repeat the same few p values
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
    """An ISO 8601 time in UTC (one without an offset is taken as UTC, as PM files carry one);
    None when it is not one or falls outside years 1-9999 once in UTC (9999-12-31T23:00-01:00)."""
    # Files repeat the same few period stamps thousands of times.
    try:
        t = datetime.fromisoformat(text)  # also takes Nokia's +02:00:00 offsets
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


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
    cut between measInfos. Both read paths feed it the same arrays."""

    def __init__(self, vendor: str | None, batch_values: int):
        self.vendor = vendor           # the dictionary's vendor, else the header's vendorName
        self.dn_prefix: str | None = None  # the fileHeader's dnPrefix
        self.batch_values = batch_values
        self.names: dict[str, int] = {}
        self.n_mv_done = 0             # measValues already handed out in batches
        self.n_infos = 0               # measInfos added, for the hand-over to lxml
        self._clear()

    def _clear(self) -> None:
        self.headers: list[_Header] = []
        self.entities: list[str | None] = []  # per measInfo: its measData's managed element DN
        self.info_mv: list[np.ndarray] = []
        self.ldn: list[pa.Array] = []
        self.suspect: list[np.ndarray] = []
        self.mv_values: list[np.ndarray] = []
        self.type_id: list[np.ndarray] = []
        self.slot: list[np.ndarray] = []
        self.text: list[pa.Array] = []
        self.raw_p: dict[int, str] = {}            # value index -> p text, for a p that is not a number
        self.missing: list[tuple[int, Reject]] = []  # (mv index, reject) for short measResults
        self.n_values = self.n_mv = 0

    def add(self, headers: list[_Header], entities: list[str | None], info_mv: np.ndarray, ldn: pa.Array,
            suspect: np.ndarray, mv_values: np.ndarray, slot: np.ndarray, text: pa.Array,
            missing: list[tuple[int, Reject]] = ()) -> None:
        """Values of whole measInfos: per measInfo its measData's entity (:func:`entity_dn`) and
        measValue count, then per measValue its ldn (null if absent), suspect flag and value
        count, then per value its slot and text; ``missing`` are the rejects of measTypes a short
        measResults left without a value, by pending measValue index."""
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
        self.entities += entities
        self.n_infos += len(headers)
        for store, item in ((self.info_mv, info_mv), (self.ldn, ldn), (self.suspect, suspect),
                            (self.mv_values, mv_values), (self.type_id, type_id), (self.slot, slot),
                            (self.text, text)):
            store.append(item)
        self.missing += missing
        self.n_values += len(slot)
        self.n_mv += len(mv_values)

    def _batch_ids(self, h: _Header) -> np.ndarray:
        # Position -1 (no measType) maps to -1 through the appended sentinel.
        return np.array([*(self.names.setdefault(n, len(self.names)) for n in h.names), -1], np.int64)

    def ready(self) -> Iterator[_Batch]:
        """Batches of at least ``batch_values`` values, cut after a whole measInfo (a dictionary
        sum's terms are gathered per object and period by the caller, wherever they are)."""
        while self.n_values >= self.batch_values:
            values = np.concatenate([[0], np.cumsum(np.concatenate(self.mv_values))])
            values_at_end = values[np.cumsum(np.concatenate(self.info_mv))]  # after each pending measInfo
            enough = np.flatnonzero(values_at_end >= self.batch_values)
            if not len(enough):
                return
            yield self._take(int(enough[0]) + 1)

    def rest(self) -> Iterator[_Batch]:
        if self.headers:
            yield self._take(len(self.headers))

    def _take(self, n_infos: int) -> _Batch:
        """Rows and rejects of the first ``n_infos`` pending measInfos; the rest stays pending."""
        info_mv = np.concatenate(self.info_mv)
        mv_values = np.concatenate(self.mv_values)
        n_mv = int(info_mv[:n_infos].sum())
        n_val = int(mv_values[:n_mv].sum())
        headers, entities = self.headers, self.entities
        ldn = pa.concat_arrays(self.ldn) if self.ldn else pa.array([], pa.string())
        suspect, type_id, slot = (np.concatenate(x) for x in (self.suspect, self.type_id, self.slot))
        text = pa.concat_arrays(self.text) if self.text else pa.array([], pa.string())
        raw_p, missing = self.raw_p, self.missing
        batch = self._rows(headers[:n_infos], entities[:n_infos], info_mv[:n_infos], ldn[:n_mv], suspect[:n_mv],
                           mv_values[:n_mv], type_id[:n_val], slot[:n_val], text[:n_val], raw_p,
                           [(i, r) for i, r in missing if i < n_mv])
        self._clear()
        if n_infos < len(headers):
            self.headers, self.entities = headers[n_infos:], entities[n_infos:]
            for store, item in ((self.info_mv, info_mv[n_infos:]), (self.ldn, ldn[n_mv:]),
                                (self.suspect, suspect[n_mv:]), (self.mv_values, mv_values[n_mv:]),
                                (self.type_id, type_id[n_val:]), (self.slot, slot[n_val:]),
                                (self.text, text[n_val:])):
                store.append(item)
            self.n_mv, self.n_values = len(mv_values) - n_mv, len(slot) - n_val
            self.raw_p = {i - n_val: t for i, t in raw_p.items() if i >= n_val}
            self.missing = [(i - n_mv, r) for i, r in missing if i >= n_mv]
        self.n_mv_done += n_mv
        return batch

    def _rows(self, headers, entities, info_mv, ldn, suspect, mv_values, type_id, slot, text, raw_p,
              missing) -> _Batch:
        mv_info = np.repeat(np.arange(len(headers)), info_mv)
        val_mv = np.repeat(np.arange(len(mv_values)), mv_values)
        bad_header = np.array([h.problem is not None for h in headers], bool)
        # The measured object's DN: its measObjLdn below the node's DN (the measData's managed
        # element, under the dnPrefix when that names the node); an empty one is the node itself.
        nodes = [node_dn(self.dn_prefix, e) for e in entities]
        dn = object_dns(ldn, nodes, mv_info)
        ok = (type_id >= 0) & ~bad_header[mv_info][val_mv] & dn.is_valid().to_numpy(zero_copy_only=False)[val_mv]
        keep = np.flatnonzero(ok)
        mv, info = val_mv[keep], mv_info[val_mv[keep]]
        n = len(keep)
        me = managed_elements(dn)
        columns = {
            "object_dn": dn.take(mv),
            "managed_element": me.take(mv),
            "cell_id": _cell_ids(dn).take(mv),
            "period_start": pa.array(np.array([h.start_ms for h in headers], np.int64)[info]).cast(TIMESTAMP),
            "granularity_s": pa.array(np.array([h.gran_s for h in headers], np.int32)[info]),
            "counter_name": pa.array(list(self.names), pa.string()).take(type_id[keep]),
            "value": _numbers(text.take(keep)),
            "vendor": pa.nulls(n, pa.string()).fill_null(self.vendor) if self.vendor else pa.nulls(n, pa.string()),
            "suspect": pa.array(suspect[mv]),
        }
        rejects = [self._reject(i, headers[mv_info[val_mv[i]]], val_mv[i], ldn, dn, mv_values, slot, text, raw_p)
                   for i in np.flatnonzero(~ok)]
        # A short measResults list was noted with its measObjLdn as written: name the object as stored.
        # Without an object (an empty measObjLdn, no managed element) only its values are reported,
        # as for a measValue without measObjLdn.
        missing = [dataclasses.replace(r, record_text=dn[i].as_py()) for i, r in missing if dn[i].is_valid]
        rejects = sorted(rejects + missing, key=lambda r: r.row_number)  # file order, whatever the batch
        return _Batch(pa.table(columns).cast(PM_COUNTERS.schema), self.n_mv_done + mv + 1, rejects)

    def _reject(self, i, header: _Header, mv, ldn, dn, mv_values, slot, text, raw_p) -> Reject:
        row, object_dn, s = self.n_mv_done + int(mv) + 1, dn[int(mv)].as_py(), int(slot[i])
        where = object_dn if object_dn is not None else header.label
        if header.problem:
            return Reject(row, header.problem, where)
        if object_dn is None and ldn[int(mv)].as_py() is not None:
            return Reject(row, f"measValue in {header.label} has an empty measObjLdn and its measData names no "
                               "managed element (managedElement or measEntity localDn)", where, "measObjLdn", "")
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


def entity_dn(local_dn: str | None) -> str | None:
    """The DN of a measData's measured entity from its managedElement (TS 32.435) or measEntity
    (TS 28.532) localDn: as written when it is a DN, ``ManagedElement=<name>`` when it is a bare
    name (Ericsson writes ``localDn="seliitdus00487"``), None when there is none."""
    text = (local_dn or "").strip(XML_WS)
    if not text:
        return None
    return text if "=" in text else f"ManagedElement={text}"


# The first RDN of each class (not a match that starts at an escaped comma inside a value).
_ME_RDNS = tuple(f"^(?:{RDN_VALUE},)*?[ \t\r\n]*{cls}[ \t\r\n]*=(?P<me>{RDN_VALUE})"
                 for cls in ("MeContext", "ManagedElement", "NE"))
_FIRST_RDN = f"^(?P<first>{RDN_VALUE})"
_RDN_TEXT = re.compile(RDN_VALUE)
NODE_CLASSES = ("MeContext", "ManagedElement")  # RDNs that name a node: a DN holds one of each


def rdn_texts(dn: str) -> list[str]:
    """The RDNs of ``dn`` as written, split at the commas that are not escaped."""
    out, pos = [], 0
    while True:
        m = _RDN_TEXT.match(dn, pos)
        out.append(m.group())
        if m.end() >= len(dn):
            return out
        pos = m.end() + 1


@lru_cache(maxsize=4096)
def _rdns(dn: str) -> tuple[tuple[str, str], ...]:
    """(class, value) of each RDN of ``dn``, both trimmed; an RDN without ``=`` has class ''."""
    out = []
    for text in rdn_texts(dn):
        cls, eq, value = text.partition("=")
        out.append((cls.strip(XML_WS), value.strip(XML_WS)) if eq else ("", text.strip(XML_WS)))
    return tuple(out)


def node_dn(dn_prefix: str | None, entity: str | None) -> str | None:
    """The DN of a measData's node: its managedElement/measEntity DN (:func:`entity_dn`), under
    the fileHeader's dnPrefix when the prefix names a node (a MeContext or ManagedElement RDN:
    Ericsson's per-node files write ``dnPrefix="SubNetwork=...,MeContext=<node>"`` and
    ``localDn="ManagedElement=1"``). A dnPrefix that names no node is the OSS's own prefix, the
    same for every object: it is left out. None when neither names anything."""
    prefix = (dn_prefix or "").strip(XML_WS)
    if not any(c in NODE_CLASSES for c, _ in _rdns(prefix)):
        return entity
    return join_dn(prefix, entity) if entity is not None else prefix


@lru_cache(maxsize=4096)
def join_dn(node: str | None, ldn: str) -> str:
    """``ldn`` (a measObjLdn: the object's LDN within the scope of its node, TS 32.432/32.435)
    as a DN below ``node``: ``node,ldn``, except that an ``ldn`` that starts with a MeContext or
    ManagedElement RDN replaces the node's RDN of that class and what follows it, and one that
    starts with an RDN of the node's DN continues from there (``ManagedElement=me1,...`` under
    ``ManagedElement=me1`` is written once)."""
    if not node:
        return ldn
    rdns = _rdns(node)
    cls, value = _rdns(ldn)[0]
    cut = None
    for j, (c, v) in enumerate(rdns):
        if (cls in NODE_CLASSES and c == cls) or (c, v) == (cls, value):
            cut = j
    head = rdn_texts(node)[:cut]
    return ",".join([*head, ldn]) if head else ldn


def object_dns(ldn: pa.Array, nodes: list[str | None], mv_info: np.ndarray) -> pa.Array:
    """:func:`join_dn` of each measValue's ldn below its measInfo's node (``nodes`` per measInfo,
    ``mv_info`` the measInfo of each measValue); a blank ldn is the node itself, a missing one
    null. Python runs once per node and first RDN, not per measValue."""
    node = pa.array(nodes, pa.string()).take(pa.array(np.asarray(mv_info, np.int64)))
    blank = pc.and_(ldn.is_valid(), pc.equal(pc.utf8_trim(ldn, XML_WS), "")).fill_null(False)
    dn = pc.if_else(blank, node, ldn) if pc.any(blank).as_py() else ldn
    if not len(ldn) or all(n is None for n in nodes):
        return dn
    if len(set(nodes)) == 1 and pc.all(pc.or_(blank, pc.starts_with(ldn, nodes[0] + ","))).as_py():
        return dn  # every ldn starts with the node's DN (the usual file of one node): as written
    ids: dict[str | None, int] = {}
    node_id = np.array([ids.setdefault(n, len(ids)) for n in nodes], np.int64)[mv_info]
    first = pc.dictionary_encode(pc.struct_field(pc.extract_regex(ldn.fill_null(""), _FIRST_RDN), 0))
    firsts, distinct = first.dictionary.to_pylist(), list(ids)
    pair = node_id * len(firsts) + first.indices.to_numpy(zero_copy_only=False)
    uniq, inverse = np.unique(pair, return_inverse=True)
    heads = []  # what goes before the ldn, per (node, first RDN)
    for p in uniq.tolist():
        text, rdn = distinct[p // len(firsts)], firsts[p % len(firsts)]
        joined = join_dn(text, rdn)
        heads.append(joined[: len(joined) - len(rdn)])
    head = pa.array(heads, pa.string()).take(pa.array(inverse.reshape(-1)))
    return pc.if_else(pc.or_(blank, pc.equal(head, "")), dn, pc.binary_join_element_wise(head, ldn, ""))


def managed_elements(ldn: pa.Array) -> pa.Array:
    """The node each DN names: its MeContext RDN (Ericsson names the node there and every
    ManagedElement under it ``1``), else its ManagedElement RDN, else NE."""
    me = pa.nulls(len(ldn), pa.string())
    for pattern in _ME_RDNS:
        missing = pc.is_null(me)
        if not pc.any(missing).as_py():
            break
        found = pc.struct_field(pc.extract_regex(ldn, pattern), 0)
        me = pc.if_else(missing, found, me)
    return pc.utf8_trim(me, XML_WS)


def _cell_ids(ldn: pa.Array) -> pa.Array:
    """:func:`~opencem.ingest.pm_xml.cell_id_of` of every DN."""
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


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _refuse_entities(path: Path, elem: etree._Element) -> None:
    # Entity declarations have no place in PM files and are how expansion attacks start.
    dtd = elem.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise PMFileError(path, "declares XML entities in its DTD, which PM files never need")
