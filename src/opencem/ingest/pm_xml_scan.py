"""The fast path of the PM XML reader: measInfos in the plain layout read from the bytes.

Building an lxml tree alone costs about as much time as the 1M values/s budget, so values are
not read from a tree. libxml2 checks the file in a SAX pass without callbacks (no tree, no Python)
in a thread beside the extraction, and values are pulled from the bytes of each measInfo in bulk:
one regular expression match per measValue, then NumPy and Arrow over every ``<r>`` of a block at
once. Only the plain layout OSSs write is read that way (unprefixed tags, ``measObjLdn`` as the
only measValue attribute, no comment, CDATA or entity reference inside a measInfo); at the first
measInfo that is not plain, :class:`_Irregular` hands the rest of the file to lxml ``iterparse``.
measInfo headers are always parsed by lxml (:func:`~opencem.ingest.pm_xml_rows._header`).

Limits (:mod:`opencem.ingest.pm_limits`): the path holds one block, the bytes read up to the next
measInfo or measData end, so a hostile file is refused in one sentence when the bytes between two
measInfos pass 16 MiB, one measInfo 64 MiB, a gzipped file inflates more than 400 times, or a
text between two tags (a value, or whitespace) passes 10,000,000 bytes, libxml2's limit, so that
this path refuses what the lxml path refuses. The lxml path has the inflation limit and libxml2's
text limit only: a measInfo over 64 MiB of plain values is refused here and read there (up to 32 MiB of irregular ones).

Separate from :mod:`opencem.ingest.pm_xml`, which holds the public API, the reader that runs this
path and the lxml path it is tested against; :class:`_FastPath` is mixed into that reader.
"""

from __future__ import annotations

import queue
import re
import threading
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
from lxml import etree

from .parts import Reject
from . import pm_limits as limits
from .pm_xml_rows import (LIST_SLOT, ROOT_ELEMENTS, SAFE, PMFileError, _Header, _header, _local, _refuse_entities,
                          _Rest, entity_dn)

_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z0-9._-]+)")
# The plain layout: anything else between measInfos, or inside measValues, hands over to lxml.
_INFO_START = re.compile(rb"<measInfo(?:[ \t\r\n][^>]*)?>")
_GAP_SURPRISE = re.compile(rb"<[!?]|measInfo|measValue|</?[\w.-]*:|xmlns")
_ENTITY_TAG = re.compile(rb"<(?:managedElement|measEntity)[ \t\r\n/>]")
_ENTITY = re.compile(rb"<(?:managedElement|measEntity)(?:[ \t\r\n][^>]*?)?[ \t\r\n]localDn[ \t\r\n]*=[ \t\r\n]*"
                     rb"(?:\"([^\"<&]*)\"|'([^'<&]*)')")
_MEAS_VALUE = re.compile(
    rb'<measValue measObjLdn="([^"<&\t\r\n]*)">[ \t\r\n]*'
    rb'((?:<r p="\d{1,9}">[^<>&]*</r>[ \t\r\n]*)*)'
    rb"(?:(<measResults>[^<&]*</measResults>)[ \t\r\n]*)?"
    rb"(?:(<suspect>[^<&]*</suspect>)[ \t\r\n]*)?</measValue>")


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


class _Irregular(Exception):
    """The bytes are not in the plain layout; lxml reads the file from here on."""


class _FastPath:
    """The fast-path steps of :class:`opencem.ingest.pm_xml._Reader`, which provides ``path``,
    ``out`` (the collector), ``read_bytes``, ``head_bytes``, ``begin``/``begin_text``, ``wrap``,
    ``header_cache`` and the ``_file_header`` and ``_missing`` steps it shares with lxml."""

    def _fast(self, stream: _Rest):
        """Read in the plain layout; False when lxml must read from measInfo ``out.n_infos`` on."""
        buf = stream.read(self.read_bytes)
        while ((end := buf.find(b"</fileHeader>")) < 0 and len(buf) < self.head_bytes
               and (more := stream.read(self.read_bytes))):
            buf += more
        m = _ENCODING.match(buf)
        if end < 0 or (m and m.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii")):
            return False
        end += len(b"</fileHeader>")
        if not self._head(buf[:end]):
            return False
        stream = limits.Inflation(stream, self.path)
        stream.read_bytes = len(buf)
        validator = _Validator()
        try:
            validator.feed(buf)
            done = yield from self._blocks(stream, validator, buf[end:])
            if done:
                validator.finish()
            return done
        finally:
            validator.stop()

    def _blocks(self, stream: limits.Inflation, validator: _Validator, tail: bytes):
        eof = False
        while not eof:
            pieces, carry, size = [tail], tail[-15:], len(tail)
            info = tail.find(b"<measInfo")  # where the measInfo being read starts, -1: none yet
            while True:  # read until a block boundary (a measInfo may be longer than read_bytes)
                data = stream.read(self.read_bytes)
                eof = not data
                if eof:
                    cut = size
                    break
                validator.feed(data)
                pieces.append(data)
                probe = carry + data
                size += len(data)
                last = max(probe.rfind(b"</measData>") + 11, probe.rfind(b"</measInfo>") + 11)
                if last > 10:
                    cut = size - len(probe) + last
                    break
                if info < 0 and (at := probe.find(b"<measInfo")) >= 0:
                    info = size - len(probe) + at
                self._check_size(size, info)
                carry = probe[-15:]
            block = b"".join(pieces)
            if len(block) > limits.MAX_VALUE_BYTES:  # only then can a text be longer than that
                self._check_texts(block)
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

    def _check_size(self, size: int, info: int) -> None:
        """Refuse a block that grew past the limits without reaching a boundary: ``size`` bytes
        since the last one, the measInfo being read from ``info`` (-1: none)."""
        if info < 0 and size > limits.MAX_GAP_BYTES:
            raise PMFileError(self.path, f"has more than {limits.mib(limits.MAX_GAP_BYTES)} between two measInfos, "
                                         "far more than the few tags a PM file puts there")
        if info >= 0 and size - info > limits.MAX_MEASINFO_BYTES:
            raise PMFileError(self.path, f"has a measInfo of more than {limits.mib(limits.MAX_MEASINFO_BYTES)}, "
                                         "more than the fast reader holds; split the file per managed element")

    def _check_texts(self, block: bytes) -> None:
        """Refuse a text (a value, or the space between tags) longer than libxml2 allows, as the
        lxml path does."""
        a = np.frombuffer(block, np.uint8)
        lt, gt = np.flatnonzero(a == ord("<")), np.flatnonzero(a == ord(">"))
        ends = np.append(lt, len(a))
        starts = np.concatenate([[0], gt + 1])
        longest = int((ends[np.searchsorted(ends, starts)] - starts).max(initial=0))
        if longest > limits.MAX_VALUE_BYTES:
            raise PMFileError(self.path, f"has a text of more than {limits.MAX_VALUE_BYTES:,} bytes between two "
                                         "tags, more than XML parsers accept (a value that long is no PM counter)")

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


    def _block(self, block: bytes, size: int) -> None:
        """Add the measInfos of ``block[:size]``: whole measInfos and what lies between them."""
        infos: list[tuple[_Header, bytes]] = []
        entities: list[str | None] = []
        pos = 0
        while True:
            i = block.find(b"<measInfo", pos, size)
            gap_end = size if i < 0 else i
            if _GAP_SURPRISE.search(block, pos, gap_end):
                raise _Irregular
            opened = block.rfind(b"<measData", pos, gap_end) if block.find(b"measData", pos, gap_end) >= 0 else -1
            if _ENTITY_TAG.search(block, pos, opened if opened >= 0 else gap_end):
                raise _Irregular  # an entity not right after its measData opens: lxml refuses it
            self._entity_of(block, opened, gap_end)
            if i < 0:
                break
            start = _INFO_START.match(block, i, size)
            if start is None:
                raise _Irregular
            entities.append(self.entity)
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
            self._add_plain(infos, entities)

    def _entity_of(self, block: bytes, opened: int, end: int) -> None:
        """The managed element of a measData that opens at ``opened`` (-1: none opens here)."""
        if opened < 0:
            return
        self.entity = None
        tag = _ENTITY_TAG.search(block, opened, end)
        if tag is not None:
            m = _ENTITY.match(block, tag.start(), end)
            if m is None:  # an escaped or unusual localDn: lxml reads it
                raise _Irregular
            self.entity = entity_dn((m.group(1) if m.group(1) is not None else m.group(2)).decode())

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

    def _add_plain(self, infos: list[tuple[_Header, bytes]], entities: list[str | None]) -> None:
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
        self.out.add([h for h, _ in infos], entities, np.array([len(f) for f in found], np.int64), ldn, suspect,
                     counts, slots, texts, missing)

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
