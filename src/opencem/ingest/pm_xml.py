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

Objects: ``object_dn`` is measObjLdn (the object's LDN within the scope of its node, TS
32.432) below the node's DN: the measData's managedElement (TS 32.435) or measEntity (TS 28.532)
localDn, under the fileHeader's dnPrefix when that names the node
(:func:`~opencem.ingest.pm_xml_rows.node_dn`, :func:`~opencem.ingest.pm_xml_rows.join_dn`); an
empty (or blank) measObjLdn is the node itself. ``managed_element`` is the DN's MeContext, else
its ManagedElement; ``cell_id`` the cell RDN's value, which ingest keys (:mod:`opencem.ingest.cells`).
A value that repeats an earlier one's object, counter and period is a reject, not a second row.

Layout: this module holds the public API, the reader that runs both paths and the lxml path;
the fast path is :mod:`opencem.ingest.pm_xml_scan`, and measInfo headers and the collector that
turns values into rows (what both paths share) are :mod:`opencem.ingest.pm_xml_rows`.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary, load_dictionary
from .measurements import TooManyKeys
from .parts import Part, Reject
from .pm_groups import FileMapper
from .pm_limits import MAX_TREE_BYTES, Inflation, Span
from .pm_xml_rows import (_CELL_RE, BAD_P, LIST_SLOT, ROOT_ELEMENTS, SAFE, XML_WS, PMFileError, _Batch, _Collector,
                          _Rest,
                          _Header, _header, _local, _p_slot, _parse_time, _refuse_entities, _words, entity_dn)
from .pm_xml_scan import _FastPath

GZIP_MAGIC = b"\x1f\x8b"
# Values gathered before building an Arrow table: large enough to amortise Arrow calls.
BATCH_VALUES = 200_000
READ_BYTES = 4 << 20
HEAD_BYTES = 1 << 20  # the fileHeader must end within this for the fast path
FAST_PATH = True  # False reads every file with lxml iterparse (the reference the tests compare to)
# Comments, PIs (not the declaration), whitespace and byte order marks before the document.
_JUNK = re.compile(rb"(?:[ \t\r\n]|\xef\xbb\xbf|<\?(?!xml[ \t\r\n?])[^?]*(?:\?(?!>)[^?]*)*\?>"
                   rb"|<!--(?:[^-]|-(?!->))*-->)*")


def iter_pm_xml_parts(path: str | Path, vendor: str | Path | CounterDictionary | None = None
                      ) -> Iterator[Part]:
    """Stream one 3GPP PM XML file (plain or gzipped) for ingest: ``pm_counters`` Parts of about
    ``BATCH_VALUES`` values each, so memory stays bounded whatever the file size.

    ``row_numbers`` and each reject's ``row_number`` are the 1-based ordinal of the measValue the
    value came from (a dictionary sum cites the first of its parts). ``values_read`` counts every
    value of the batch's measValues: rows + rejects without a dictionary, and with one the
    dictionary's ``mapping`` note says how many were folded into sum/expr rows or dropped. For
    measResults lists each measType without a value counts as one reject, and a value that
    repeats an earlier one of the file (object, counter, period) is a reject, not added to it.
    ``vendor`` is as for :func:`read_meascollec`. A file found broken part-way raises
    :class:`PMFileError` after the earlier parts were yielded: callers that need all or
    nothing must undo what they did with them.
    """
    yield from _iter_batches(Path(path), vendor)


def read_pm_xml_parts(path: str | Path, vendor: str | Path | CounterDictionary | None = None) -> list[Part]:
    """The whole file as one ``pm_counters`` Part (see :func:`iter_pm_xml_parts`)."""
    parts = list(iter_pm_xml_parts(path, vendor))
    if not parts:
        return [Part("pm_counters", PM_COUNTERS.schema.empty_table(), np.zeros(0, np.int64), [], values_read=0)]
    notes = [p.mapping for p in parts if p.mapping is not None]
    return [Part("pm_counters", pa.concat_tables([p.data for p in parts]),
                 np.concatenate([p.row_numbers for p in parts]), [r for p in parts for r in p.rejects],
                 values_read=sum(p.rows_read for p in parts), mapping=sum(notes[1:], notes[0]) if notes else None)]


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

    Batches are cut between measInfos; a dictionary ``sum`` still sees every term an object
    reports for a period, wherever the file puts it (those rows come in the last batches).
    """
    for part in _iter_batches(Path(path), vendor):
        yield part.data


def cell_id_of(object_dn: str | None) -> str | None:
    """Value of the last RDN of a known cell class (EUtranCellFDD, NRCellDU, ...), else None."""
    m = _CELL_RE.match(object_dn or "")
    return m.group(1).strip(XML_WS) if m else None


def _iter_batches(path: Path, vendor: str | Path | CounterDictionary | None) -> Iterator[Part]:
    dictionary = (vendor if isinstance(vendor, CounterDictionary) or vendor is None
                  else load_dictionary(vendor))
    collector = _Collector(dictionary.vendor if dictionary is not None else None, BATCH_VALUES)
    # Repeats are rejected across the file, and a sum/expr sees every term of an object and
    # period wherever the file puts them (one node in two measData, say).
    mapper = FileMapper(path, dictionary)
    try:
        try:
            for batch in _Reader(path, collector).batches():
                # Each output row keeps the first measValue it came from.
                yield from mapper.batch(batch.table, batch.row_numbers, batch.rejects)
            yield from mapper.finish()
        except TooManyKeys as exc:
            raise PMFileError(path, f"has {exc}, more than one file may; split it") from None
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


# --- reading the file ----------------------------------------------------------------------------

class _Reader(_FastPath):
    """One file: the fast path while measInfos are plain, then lxml for the rest."""

    def __init__(self, path: Path, collector: _Collector):
        self.path, self.out = path, collector
        self.read_bytes, self.head_bytes = READ_BYTES, HEAD_BYTES  # read here, so tests can patch them
        self.begin: datetime | None = None
        self.begin_text: str | None = None
        self.wrap = (b"", b"")
        self.header_cache: dict[bytes, _Header] = {}
        self.entity: str | None = None  # the fast path's current measData entity

    def batches(self) -> Iterator[_Batch]:
        with _open(self.path) as stream:
            first = stream.read(65536)
            first = first[_JUNK.match(first).end():]
            done = (yield from self._fast(_Rest(first, stream))) if FAST_PATH else False
        if not done:
            with _open(self.path) as raw:
                stream = Span(Inflation(raw, self.path), self.path, MAX_TREE_BYTES, "measInfo")
                first = stream.read(65536)
                yield from self._lxml(_Rest(first[_JUNK.match(first).end():], stream), self.out.n_infos, stream)
        yield from self.out.rest()

    def _file_header(self, header: etree._Element) -> None:
        self.out.vendor = self.out.vendor or header.get("vendorName")
        self.out.dn_prefix = header.get("dnPrefix")
        self.begin_text = next((c.get("beginTime") for c in header if c.get("beginTime")), None)
        self.begin = _parse_time(self.begin_text.strip()) if self.begin_text else None

    def _missing(self, mv: int, header: _Header, ldn: str | None, n_tokens: int) -> list[tuple[int, Reject]]:
        """A short measResults list: one reject per measType left without a value."""
        if header.problem is not None or ldn is None or n_tokens >= len(header.names):
            return []
        reason = f"measValue has {n_tokens} measResults for {len(header.names)} measTypes"
        row = self.out.n_mv_done + mv + 1
        return [(mv, Reject(row, reason, ldn, name)) for name in header.names[n_tokens:]]

    def _lxml(self, stream: _Rest, skip: int, span: Span) -> Iterator[_Batch]:
        """Read with lxml iterparse, leaving out the first ``skip`` measInfos (already read);
        ``span`` bounds the bytes between two measInfo ends."""
        context = etree.iterparse(stream, events=("end",), tag=("{*}fileHeader", "{*}measInfo", "{*}measData"),
                                  remove_comments=True, remove_pis=True, **SAFE)
        checked, n_info = False, 0
        measdata, entity = None, None
        for _, elem in context:
            if not checked:
                _refuse_entities(self.path, elem)
                checked = True
            name = _local(elem.tag)
            if name == "fileHeader":
                self._file_header(elem)
            elif name == "measInfo":
                n_info += 1
                if elem.getparent() is not measdata:  # the first measInfo of a measData
                    measdata, entity = elem.getparent(), _entity(elem.getparent())
                if n_info > skip:
                    self._add_tree(elem, entity)
                _free(elem)
                span.mark()
                yield from self.out.ready()
            elif name == "measData" and elem.getparent() is not None and elem.getparent().getparent() is None:
                # The measInfos read were freed with what came before them: an entity left is one
                # written after a measInfo, whose values were read without it.
                if measdata is elem and _entity(elem) is not None:
                    raise PMFileError(self.path, "has a managedElement or measEntity after a measInfo of its measData, "
                                                 "which TS 32.435 does not allow (it must come first)")
                _free(elem)
        root = context.root
        if root is None or _local(root.tag) not in ROOT_ELEMENTS:
            found = "nothing" if root is None else f"<{_local(root.tag)}>"
            raise PMFileError(self.path, f"is not a 3GPP measCollecFile or measDataFile (root element is {found})")

    def _add_tree(self, info: etree._Element, entity: str | None) -> None:
        ns = info.tag[: info.tag.index("}") + 1] if info.tag.startswith("{") else ""
        self._check_shape(info)
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
        self.out.add([header], [entity], np.array([len(ldns)], np.int64), pa.array(ldns, pa.string()),
                     np.array(suspects, bool), np.array(counts, np.int64), np.array(slots, np.int64),
                     pa.array(texts, pa.string()), missing=missing)


    def _check_shape(self, info: etree._Element) -> None:
        """Refuse what TS 32.435 does not allow in a measInfo and would otherwise be passed over
        unread (a measValue wrapped in another element, an r inside a group, r values beside a
        measResults list), so that no value is lost without a word."""
        for child in info.iterchildren(etree.Element):
            name = _local(child.tag)
            if name == "measValue":
                kinds = {_local(c.tag) for c in child.iterchildren(etree.Element)}
                if kinds - _MEASVALUE_PARTS or {"r", "measResults"} <= kinds:
                    extra = sorted(kinds - _MEASVALUE_PARTS) or ["both r and measResults"]
                    raise PMFileError(self.path, f"has a measValue holding {', '.join(extra)}, which TS 32.435 does "
                                                 "not allow, so its values cannot be read")
            elif name not in _MEASINFO_PARTS:
                raise PMFileError(self.path, f"has <{name}> inside a measInfo, which TS 32.435 does not allow, so "
                                             "what it holds cannot be read")


_MEASINFO_PARTS = frozenset({"job", "granPeriod", "repPeriod", "measTypes", "measType", "measValue"})
_MEASVALUE_PARTS = frozenset({"r", "measResults", "suspect"})


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        yield gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def _entity(measdata: etree._Element | None) -> str | None:
    """The DN of a measData's measured entity (its managedElement or measEntity localDn)."""
    for child in measdata if measdata is not None else ():
        if _local(child.tag) in ("managedElement", "measEntity"):
            return entity_dn(child.get("localDn"))
    return None


def _free(elem: etree._Element) -> None:
    """Drop a handled element and the siblings before it so the tree stays small."""
    elem.clear(keep_tail=False)
    parent = elem.getparent()
    while elem.getprevious() is not None:
        del parent[0]
