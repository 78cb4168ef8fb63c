"""How much a hostile PM XML file may make a reader hold or inflate, and the guard that counts it.

The readers stream, so memory follows these limits, never the file size. Each is far above what
a real PM file needs (the real figure is given), and crossing one is a
:class:`~opencem.ingest.pm_xml_rows.PMFileError` of one sentence naming the file and the limit:

- ``MAX_INFLATION`` (400): a gzipped file may not decompress to more than 400 times its size
  (once past ``MIN_INFLATED_BYTES``, 64 MiB, so small files stay readable whatever they hold).
  The real Ericsson and NanoCell exports gzip 7-16:1, a synthetic pretty-printed 3GPP file of
  idle cells (every value 0) 137:1; deflate bombs reach ~1000:1.
- ``MAX_GAP_BYTES`` (16 MiB): the 3GPP fast path's bytes between two measInfos (a few tags and
  whitespace, under 1 KiB in real files).
- ``MAX_MEASINFO_BYTES`` (64 MiB): one 3GPP measInfo, read whole by the fast path (one counter
  group of one managed element: kilobytes, a few MiB for an OSS-wide group).
- ``MAX_VALUE_BYTES`` (10,000,000): one ``<r>`` or ``<measResults>`` text; libxml2's own
  limit on a text node, so the fast path refuses exactly what the lxml path refuses.
- ``MAX_TREE_BYTES`` (32 MiB): one 3GPP measInfo read by the lxml path (files the fast path
  hands over: comments, CDATA, entities in values), held as a tree of about ten times its size.
- ``MAX_ELEMENT_BYTES`` (4 MiB): one OMeS ``PMMOResult`` or NanoCell ``Pm`` (or what lies
  between two), the unit those readers hold as a tree (real ones: under 100 KiB).
- ``MAX_GROUP_VALUES`` (1,000,000): values of one measured object in one period that a
  dictionary ``sum``/``expr`` must see together (real: a few thousand counters).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from .pm_xml_rows import SAFE, PMFileError, _refuse_entities

MAX_INFLATION = 400
MIN_INFLATED_BYTES = 64 << 20
MAX_GAP_BYTES = 16 << 20
MAX_MEASINFO_BYTES = 64 << 20  # held about 14 times over while its values are cut out
MAX_VALUE_BYTES = 10_000_000
MAX_TREE_BYTES = 32 << 20
MAX_ELEMENT_BYTES = 4 << 20
MAX_GROUP_VALUES = 1_000_000
FEED_BYTES = 1 << 18  # bytes fed to a pull parser between checks


def mib(n: int) -> str:
    """``n`` bytes as the MiB figure the messages give (``16 MiB``)."""
    return f"{n / (1 << 20):g} MiB"


class Inflation:
    """A stream that raises :class:`PMFileError` once more than ``MAX_INFLATION`` times the
    file's size (and more than ``MIN_INFLATED_BYTES``) was read from it: a plain file never
    reaches that, a decompression bomb does early."""

    def __init__(self, stream: BinaryIO, path: Path):
        self.stream, self.path = stream, path
        self.size = os.path.getsize(path)
        self.limit = max(MIN_INFLATED_BYTES, MAX_INFLATION * self.size)
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise PMFileError(self.path, f"decompresses to more than {MAX_INFLATION} times its {self.size:,} bytes, "
                                         "far more than PM files do, so it is refused as a decompression bomb")
        return data


class Span:
    """A stream that raises :class:`PMFileError` once more than ``limit`` bytes were read from it
    since the last :meth:`mark`: what a parser that builds one ``unit`` as a tree may hold."""

    def __init__(self, stream, path: Path, limit: int, unit: str):
        self.stream, self.path, self.limit, self.unit = stream, path, limit, unit
        self.since = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.since += len(data)
        if self.since > self.limit:
            raise PMFileError(self.path, f"has a {self.unit} of more than {mib(self.limit)} that is not plain XML "
                                         "(comments, CDATA or character references in it), more than is read as a "
                                         "tree; split the file per managed element")
        return data

    def mark(self) -> None:
        self.since = 0


class Pull:
    """lxml pull-parser events for ``tags`` in ``stream``, fed ``FEED_BYTES`` at a time; after the
    loop, ``root`` is the root element. The first element's document may not declare entities
    (refused in one sentence). More than ``MAX_ELEMENT_BYTES`` read without an event (one ``unit``
    that big, or that much between two) is a :class:`PMFileError`: the tree being built is bounded."""

    def __init__(self, path: Path, stream, tags: tuple[str, ...], events: tuple[str, ...], unit: str):
        self.path, self.stream, self.unit = path, stream, unit
        self.parser = etree.XMLPullParser(events=events, tag=tags, remove_comments=True, remove_pis=True, **SAFE)
        self.root: etree._Element | None = None

    def __iter__(self) -> Iterator[tuple[str, etree._Element]]:
        fed = mark = 0
        checked = False
        while chunk := self.stream.read(FEED_BYTES):
            self.parser.feed(chunk)
            fed += len(chunk)
            for event in self.parser.read_events():
                if not checked:
                    _refuse_entities(self.path, event[1])
                    checked = True
                mark = fed
                yield event
            if fed - mark > MAX_ELEMENT_BYTES:
                raise PMFileError(self.path, f"has more than {mib(MAX_ELEMENT_BYTES)} in one {self.unit} or between "
                                             f"two, far more than a real {self.unit} holds")
        self.root = self.parser.close()
        for event in self.parser.read_events():
            if not checked:
                _refuse_entities(self.path, event[1])
                checked = True
            yield event


def lstrip_space(data: bytes) -> bytes:
    """``data`` without leading XML whitespace (lxml refuses any before ``<?xml``)."""
    return data[len(data) - len(data.lstrip(b" \t\r\n")):]
