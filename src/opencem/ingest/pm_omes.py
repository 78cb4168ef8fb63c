"""Reader for Nokia OMeS PM XML files (the NetAct PM export and the BTS's own PM files).

Layout (no public XSD; read from Nokia-file parsers and generators, docs/ingest.md)::

    <OMeS version="2.3">                      root; ``version`` is optional
      <PMSetup startTime="2024-01-01T10:00:00.000+02:00:00" interval="15">
        <PMMOResult>                          one measured object, one measurement type
          <MO dimension="network_element"><DN>PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1</DN></MO>
          <PMTarget measurementType="LTE_UE_State">
            <M8013C5>12</M8013C5> ...         one element per counter, named by the counter id
          </PMTarget>
        </PMMOResult> ...
      </PMSetup> ...
    </OMeS>

The BTS writes ``<MO><baseId>NE-MRBTS-1</baseId><localMoid>DN:NE-LNBTS-1/LNCEL-1</localMoid></MO>``
instead of ``<DN>`` and names the target element ``NE-WBTS_1.0`` (or ``NE-LNBTS_1.0``) instead of
``PMTarget``; both are read. ``startTime`` carries an offset (Nokia writes it with seconds,
``+02:00:00``); ``interval`` is the period length in minutes.

Rows: ``object_dn`` is the MO DN (baseId and localMoid joined by ``/``; several MOs of one
PMMOResult joined by ``,`` in file order, as Nokia's own dashboards name them);
``managed_element`` is the MRBTS RDN (``MRBTS-1``, ``NE-`` dropped), else the DN up to and
including the first LNBTS/NRBTS/WBTS RDN; ``cell_id`` is the value of the first LNCEL/NRCELL/WCEL
RDN, which Nokia numbers per BTS (ingest makes it a key unique per managed element, see
:mod:`opencem.ingest.cells`). ``suspect`` is false (OMeS has no such flag).

Values: a number is a row; ``NIL`` or an empty element is a row with a null value (the same
convention as the 3GPP reader); anything else, a PMMOResult without a DN and a PMSetup with a
bad startTime or interval are :class:`~opencem.ingest.parts.Reject` s, one per value, numbered by
the 1-based ordinal of the counter value in the file; so is a value that repeats an earlier one's
measurement (object, counter, period: a PMMOResult written twice), found before a ``sum`` could
add it in (8 bytes remembered per value). A file that is not OMeS, is not well-formed
XML or declares entities raises :class:`PMFileError` (one sentence).

Safety and memory: lxml's pull parser with entities never expanded, no network, no DTD loading,
fed 256 KiB at a time; each PMMOResult and PMSetup is freed once read, and the limits of
:mod:`opencem.ingest.pm_limits` bound what one PMMOResult (4 MiB) and a gzipped file's inflation
(400:1) may cost. Rows leave in Parts of about ``BATCH_VALUES`` values, cut between PMMOResults.
Nokia's formulas add counters of different measurementTypes, which sit in different PMMOResults
and PMSetups: with a dictionary, the rows its ``sum``/``expr`` entries read are held per object
and period until the file ends (:mod:`opencem.ingest.pm_groups`, on disk past 500,000 rows) and
come in the last Parts, so each derived row sees all of its terms.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary
from .parts import Part, Reject
from .pm_groups import FileMapper
from .pm_limits import Inflation, Pull, lstrip_space
from .pm_xml import _free, _open
from .pm_xml_rows import XML_WS, PMFileError, _local, _parse_time, _Rest

VENDOR = "nokia"
HEAD_BYTES = 65536
BATCH_VALUES = 200_000  # values per Part, enough to amortise Arrow and dictionary calls
# Prolog before the root element: whitespace, BOM, XML declaration, PIs, comments, a DOCTYPE.
_PROLOG = rb"(?:[ \t\r\n]|\xef\xbb\xbf|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)*"
_ROOT = re.compile(_PROLOG + rb"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)", re.DOTALL)
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
# Nokia RDNs are CLASS-id joined by '/'; the BTS's own files prefix the top classes with 'NE-'.
_ME_MRBTS = r"(?:^|/)(?:NE-)?(?P<me>MRBTS-[^/,]+)"
_ME_BTS = r"^(?P<me>.*?(?:^|/)(?:NE-)?(?:LNBTS|NRBTS|WBTS)-[^/,]+)"
_CELL = r"(?:^|/)(?:NE-)?(?:LNCEL|NRCELL|WCEL)-(?P<cell>[^/,]+)"


def read_omes_parts(path: str | Path, dictionary: CounterDictionary | None = None) -> Iterator[Part]:
    """Stream one OMeS file (plain or gzipped) for ingest as ``pm_counters`` Parts of about
    ``BATCH_VALUES`` values (at least one Part), mapped through ``dictionary`` when given.

    ``row_numbers`` and each reject's ``row_number`` are the 1-based ordinal of the counter value
    in the file (a derived row cites the first of its terms); rows read = values + rejects. With
    a dictionary, the rows of its sum/expr entries come in the last Parts, whole per object and
    period (module notes). A file found broken part-way raises :class:`PMFileError` after the
    earlier Parts were yielded: callers that need all or nothing must undo what they did."""
    path = Path(path)
    try:
        yield from _Reader(path, dictionary).parts()
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def read_omes(path: str | Path, dictionary: CounterDictionary | None = None) -> pa.Table:
    """The rows of :func:`read_omes_parts` in one table (values that cannot be used are left out)."""
    return pa.concat_tables([part.data for part in read_omes_parts(path, dictionary)])


class _Collector:
    """Per PMSetup its period, per PMMOResult its DN and PMSetup, per value its counter and text;
    :meth:`take` turns what was read since the last call into a Part."""

    def __init__(self) -> None:
        self.done = 0  # values handed out in earlier Parts
        self.current: int | None = None  # the PMSetup being read
        self.local_names: dict[tuple[str, ...], tuple[str, ...]] = {}  # counter tags -> names
        self._clear()

    def _clear(self) -> None:
        self.setup_start: list[int] = []
        self.setup_gran: list[int] = []
        self.setup_problem: list[str | None] = []
        self.mo_dn: list[str | None] = []
        self.mo_first_dn: list[str | None] = []
        self.mo_setup: list[int] = []
        self.mo_values: list[int] = []
        self.names: list[str] = []
        self.texts: list[str | None] = []

    def setup(self, elem: etree._Element | None) -> None:
        """Start a PMSetup and read its period (None: the PMSetup ended)."""
        if elem is None:
            self.current = None
            return
        start_text, interval_text = elem.get("startTime"), elem.get("interval")
        start_ms, gran_s, problem = 0, 0, None
        start = _parse_time(start_text.strip(XML_WS)) if start_text else None
        minutes = interval_text.strip(XML_WS) if interval_text else ""
        if start_text is None:
            problem = "PMSetup has no startTime"
        elif start is None:
            problem = f"PMSetup startTime {start_text!r} is not an ISO 8601 time"
        elif not (minutes.isascii() and minutes.isdigit()) or not 0 < int(minutes) <= 1440:
            problem = f"PMSetup interval {interval_text!r} is not a whole number of minutes (1-1440)"
        else:
            start_ms, gran_s = round(start.timestamp() * 1000), int(minutes) * 60
        self.current = self._add_setup(start_ms, gran_s, problem)

    def _add_setup(self, start_ms: int, gran_s: int, problem: str | None) -> int:
        self.setup_start.append(start_ms)
        self.setup_gran.append(gran_s)
        self.setup_problem.append(problem)
        return len(self.setup_start) - 1

    def result(self, elem: etree._Element) -> None:
        """One PMMOResult of the current PMSetup."""
        setup = self.current
        if setup is None:  # no period: its values are rejected
            setup = self._add_setup(0, 0, "PMMOResult is not inside a PMSetup")
        dns: list[str] = []
        n_before = len(self.names)
        for child in elem:  # comments and PIs are removed by the parser, entities refused
            if not isinstance(child.tag, str):
                continue
            if _local(child.tag) == "MO":
                dn = _mo_dn(child)
                if dn:
                    dns.append(dn)
                continue
            # A measurement target (PMTarget, NE-WBTS_1.0, ...): its children are the counters;
            # a counter written straight under the PMMOResult is read as one, not dropped.
            counters = list(child.iterchildren(etree.Element))
            if not counters and (child.text or "").strip(XML_WS):
                counters = [child]
            tags = tuple(c.tag for c in counters)
            names = self.local_names.get(tags)
            if names is None:  # one list of counters per measurementType, met again and again
                if len(self.local_names) > 4096:
                    self.local_names.clear()
                names = self.local_names[tags] = tuple(_local(t) for t in tags)
            self.names += names
            self.texts += [c.text for c in counters]
        self.mo_dn.append(",".join(dns) if dns else None)
        self.mo_first_dn.append(dns[0] if dns else None)
        self.mo_setup.append(setup)
        self.mo_values.append(len(self.names) - n_before)

    def take(self) -> Part:
        """Rows and rejects of the values read since the last call, built column-wise."""
        n = len(self.names)
        mo_of_value = np.repeat(np.arange(len(self.mo_dn)), np.asarray(self.mo_values, np.int64))
        setup_of_value = np.asarray(self.mo_setup, np.int64)[mo_of_value] if n else np.zeros(0, np.int64)
        setup_bad = np.array([p is not None for p in self.setup_problem], bool)
        dn = pa.array(self.mo_dn, pa.string())
        mo_has_dn = dn.is_valid().to_numpy(zero_copy_only=False)
        text = pc.utf8_trim(pa.array(self.texts, pa.string()).fill_null(""), XML_WS)
        value, usable = _numbers(text)
        ok = usable & mo_has_dn[mo_of_value] & ~setup_bad[setup_of_value] if n else np.zeros(0, bool)
        keep = np.flatnonzero(ok)
        mo = mo_of_value[keep]
        first = pa.array(self.mo_first_dn, pa.string())
        columns = {
            "object_dn": dn.take(mo),
            "managed_element": managed_elements(first).take(mo),
            "cell_id": cell_ids(first).take(mo),
            "period_start": pa.array(np.asarray(self.setup_start, np.int64)[setup_of_value[keep]]).cast(TIMESTAMP),
            "granularity_s": pa.array(np.asarray(self.setup_gran, np.int32)[setup_of_value[keep]]),
            "counter_name": pa.array(self.names, pa.string()).take(keep),
            "value": value.take(keep),
            "vendor": pa.nulls(len(keep), pa.string()).fill_null(VENDOR),
            "suspect": pa.array(np.zeros(len(keep), bool)),
        }
        rejects = []
        for i in np.flatnonzero(~ok):
            m, s = int(mo_of_value[i]), int(setup_of_value[i])
            name, raw = self.names[i], self.texts[i]
            if self.setup_problem[s] is not None:
                reason = self.setup_problem[s]
            elif self.mo_dn[m] is None:
                reason = "PMMOResult has no MO DN"
            else:
                reason = f"counter {name} value {raw.strip(XML_WS)!r} is not a number"
            rejects.append(Reject(self.done + int(i) + 1, reason, self.mo_dn[m], name, raw))
        part = Part("pm_counters", pa.table(columns).cast(PM_COUNTERS.schema),
                    self.done + keep.astype(np.int64) + 1, rejects)
        # The PMSetup being read goes on into the next Part.
        current = None if self.current is None else (self.setup_start[self.current], self.setup_gran[self.current],
                                                     self.setup_problem[self.current])
        self.done += n
        self._clear()
        self.current = None if current is None else self._add_setup(*current)
        return part


class _Reader:
    """One file read as a stream of Parts (module notes)."""

    def __init__(self, path: Path, dictionary: CounterDictionary | None):
        self.path, self.dictionary = path, dictionary
        self.out = _Collector()
        self.mapper = FileMapper(path, dictionary)

    def parts(self) -> Iterator[Part]:
        with _open(self.path) as raw:
            stream = Inflation(raw, self.path)
            head = lstrip_space(stream.read(HEAD_BYTES))
            name = _root_name(head)
            if name is not None and name.rpartition(":")[2] != "OMeS":
                raise PMFileError(self.path, f"is not a Nokia OMeS PM file (root element is <{name}>)")
            events = Pull(self.path, _Rest(head, stream), ("{*}OMeS", "{*}PMSetup", "{*}PMMOResult"),
                          ("start", "end"), "PMMOResult")
            for event, elem in events:
                kind = _local(elem.tag)
                if event == "start":
                    if kind == "PMSetup":
                        self.out.setup(elem)
                elif kind == "PMMOResult":
                    self.out.result(elem)
                    _free(elem)
                    if len(self.out.names) >= BATCH_VALUES:
                        yield from self._flush()
                elif kind == "PMSetup":
                    self.out.setup(None)
                    _free(elem)
        root = events.root
        if root is None or _local(root.tag) != "OMeS":
            found = "nothing" if root is None else f"<{_local(root.tag)}>"
            raise PMFileError(self.path, f"is not a Nokia OMeS PM file (root element is {found})")
        yield from self._flush()
        yield from self.mapper.finish()

    def _flush(self) -> Iterator[Part]:
        part = self.out.take()
        yield from self.mapper.batch(part.data, part.row_numbers, part.rejects)


def _mo_dn(mo: etree._Element) -> str | None:
    """The DN an MO names: its DN element, else baseId and localMoid (``DN:`` dropped) joined by /."""
    parts: dict[str, str] = {}
    for child in mo:
        if isinstance(child.tag, str):
            parts.setdefault(_local(child.tag), (child.text or "").strip(XML_WS))
    if parts.get("DN"):
        return parts["DN"]
    local = parts.get("localMoid", "")
    local = local[3:] if local.startswith("DN:") else local
    return "/".join(p for p in (parts.get("baseId", ""), local) if p) or None


def managed_elements(dns: pa.Array) -> pa.Array:
    """Managed element of each Nokia DN: its MRBTS RDN (``MRBTS-1``), else the DN up to and
    including the first LNBTS/NRBTS/WBTS RDN, else null."""
    me = pc.struct_field(pc.extract_regex(dns, _ME_MRBTS), 0)
    return pc.coalesce(me, pc.struct_field(pc.extract_regex(dns, _ME_BTS), 0))


def cell_ids(dns: pa.Array) -> pa.Array:
    """Value of the first LNCEL/NRCELL/WCEL RDN of each DN (``.../LNCEL-3`` -> ``3``), else null."""
    return pc.struct_field(pc.extract_regex(dns, _CELL), 0)


def _numbers(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(value, usable) per trimmed text: finite numbers, and NIL or empty as null (usable);
    anything else null and not usable."""
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    value = pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64())
    numeric = pc.and_(numeric, pc.is_finite(value).fill_null(False))
    empty = pc.is_in(pc.utf8_upper(text), value_set=pa.array(["", "NIL"]))
    value = pc.if_else(numeric, value, pa.scalar(None, pa.float64()))
    return value, pc.or_(numeric, empty).to_numpy(zero_copy_only=False)


def _root_name(head: bytes) -> str | None:
    m = _ROOT.match(head)
    return m.group(1).decode("ascii") if m else None
