"""Reader for China Mobile (CMCC) NanoCell ``PmFile`` PM XML ("NanoCell-eNB-PM-V2.5.0", written
by Baicells small cells and read by magma's enodebd).

Layout (the files carry their XSD as a comment at the end)::

    <PmFile>
      <FileHeader> InfoModelReferenced DnPrefix SenderName VendorName JobId BeginTime EndTime
      <Measurements>                      (one per object class)
        <ObjectType>EutranCellTdd</ObjectType>
        <PmName><N i="5">RRC.AttConnEstab</N> <N i="6">RRC.AttConnEstab._Cause</N> ...</PmName>
        <PmData>
          <Pm Dn="CMCC,SubNetwork=1,ManagedElement=1,EnbFunction=1,EutranCellTdd=1" UserLabel="BJ01">
            <V i="5">123</V>
            <CV i="6"><SN>RRC.AttConnEstab.MO_DATA</SN><SV>0</SV> ...</CV>

Rows: one per ``V``, named by its ``N``, and one per ``SN``/``SV`` pair of a ``CV``, named by the
``SN`` (``RRC.AttConnEstab.MO_DATA``). A grouped parent (``..._Cause``, ``..._Qci``) gets no
total row: the file carries the total under its own name at the neighbouring index, a group may
list only some causes, and summing is wrong for levels (``PHY.ULMeanNL._PRB`` is dBm per PRB);
a dictionary ``sum`` over SN names builds a total where one is wanted. The period is the
FileHeader's BeginTime (UTC) and EndTime - BeginTime.

Device identity: every NanoCell calls itself ``ManagedElement=1`` (and its cell
``EutranCellTdd=1``), so the DN alone cannot tell two devices apart; magma names a device by the
serial of the eNodeB whose upload it receives, which a file at rest does not carry. The
ManagedElement RDN value is replaced by, first that applies: ``element_id`` (ingest passes the
device folder of ``pm/<vendor>/<device>/``), the ``UserLabel`` of the file's ManagedElement
object (else the first non-empty one), else it stays as written. ``managed_element`` is that
value; ``cell_id`` the last RDN's value when it is a cell class (EutranCellTdd/Fdd).

Values: a number is a row; ``NIL`` or empty is a row with a null value (as for 3GPP files);
anything else, a ``V``/``CV`` whose ``i`` no ``N`` declares, a ``Pm`` without ``Dn``, an ``SN``
without ``SV`` and a counter repeated in one ``Pm`` are :class:`Reject` s numbered by the 1-based
``Pm`` ordinal, and so are the values of a ``Pm`` that repeats an earlier one's object (found
before a ``sum`` could add them in). A file that is not a PmFile, not well-formed, declares entities or has no usable
period raises :class:`PMFileError` (one sentence). Safety as for the other readers: entities never
expanded, no network, no DTD loading, the limits of :mod:`opencem.ingest.pm_limits` (one ``Pm``
4 MiB, a gzipped file's inflation 400:1).

Memory: lxml's pull parser is fed 256 KiB at a time, each ``Pm`` is read into lists and freed, and
rows leave in Parts of about ``BATCH_VALUES`` values, cut between ``Pm`` s (a ``Pm`` is one object
in the file's one period, so a dictionary ``sum`` sees all of its terms). The first Part needs the
device: when no ``element_id`` is given and the ManagedElement object has not been read yet (the
real export writes it after the cells), one pass over the file, which builds no rows, finds the
label the whole file would give.
"""

from __future__ import annotations

import re
import zlib
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime
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

ROOT_ELEMENT = "PmFile"
CELL_CLASSES = frozenset({"eutrancelltdd", "eutrancellfdd"})  # compared lower-case
PEEK_BYTES = 1 << 16
BATCH_VALUES = 200_000  # values per Part, enough to amortise Arrow and dictionary calls
_TAGS = ("{*}FileHeader", "{*}ObjectType", "{*}PmName", "{*}Pm", "{*}Measurements")
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_INDEX = re.compile(r"[ \t\r\n]*(\d{1,9})[ \t\r\n]*")
_RDN_SPLIT = re.compile(r"(?<!\\),")
# Prolog before the root: BOM, whitespace, declaration, comments, PIs, a DOCTYPE (group 1); group 2
# is the root element's name.
_PROLOG = re.compile(
    rb"^(?:\xef\xbb\xbf)?(?:[ \t\r\n]+|<\?(?:[^?]|\?(?!>))*\?>|<!--(?:[^-]|-(?!->))*-->"
    rb"|(<!DOCTYPE(?:[^\[>]|\[[^\]]*\])*>))*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


def read_pmfile_parts(path: str | Path, dictionary: CounterDictionary | None = None,
                      element_id: str | None = None) -> Iterator[Part]:
    """Stream one PmFile (plain or gzipped) as ``pm_counters`` Parts of about ``BATCH_VALUES``
    values (at least one Part), cut between ``Pm`` s, mapped through ``dictionary`` when given;
    each row is numbered by the ``Pm`` it came from and ``element_id`` names the device (module
    notes). A file found broken part-way raises :class:`PMFileError` after the earlier Parts
    were yielded: callers that need all or nothing must undo what they did."""
    path = Path(path)
    try:
        mapper = FileMapper(path, dictionary)
        for table, rows, rejects in _Reader(path, element_id).parts():
            yield from mapper.batch(table, rows, rejects)
        yield from mapper.finish()
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def read_pmfile(path: str | Path, dictionary: CounterDictionary | None = None,
                element_id: str | None = None) -> pa.Table:
    """The rows of :func:`read_pmfile_parts` in one table (values that cannot be used are left out)."""
    return pa.concat_tables([part.data for part in read_pmfile_parts(path, dictionary, element_id)])


class _Reader:
    """One file: the header, then each Pm turned into value lists and freed; every
    ``BATCH_VALUES`` values those lists become a Part."""

    def __init__(self, path: Path, element_id: str | None):
        self.path = path
        self.element_id = element_id or None
        self.header: dict[str, str] | None = None
        self.start_ms = self.gran_s = 0
        self.vendor: str | None = None
        self.object_type: str | None = None
        self.names: dict[str, str] = {}  # i as written -> counter name
        self.name_ids: dict[str, int] = {}
        self.element_label: str | None = None  # UserLabel of the first labelled ManagedElement Pm
        self.first_label: str | None = None  # the first non-empty UserLabel
        self.fixed_device: tuple[str | None] | None = None  # the device, once a Part used it
        self.pm_done = 0  # Pms handed out in earlier Parts
        self.finished = False  # the whole file was read
        self._clear()

    def _clear(self) -> None:
        self.pm_dn: list[str | None] = []
        self.val_pm = array("q")
        self.val_name = array("q")
        self.val_text: list[str] = []
        self.rejects: list[Reject] = []

    def parts(self) -> Iterator[tuple[pa.Table, np.ndarray, list[Reject]]]:
        with _open(self.path) as raw:
            stream = Inflation(raw, self.path)
            first = lstrip_space(stream.read(PEEK_BYTES))
            self._check_prolog(first)
            events = Pull(self.path, _Rest(first, stream), _TAGS, ("end",), "Pm")
            for _, elem in events:
                name = _local(elem.tag)
                if name == "Pm":
                    self._pm(elem)
                    _free(elem)
                    if len(self.val_text) >= BATCH_VALUES:
                        yield self._take()
                elif name == "PmName":
                    self.names = {}
                    for n in elem:
                        if isinstance(n.tag, str) and _local(n.tag) == "N" and (n.text or "").strip(XML_WS):
                            self.names.setdefault((n.get("i") or "").strip(XML_WS), n.text.strip(XML_WS))
                elif name == "ObjectType":
                    self.object_type = (elem.text or "").strip(XML_WS) or None
                elif name == "Measurements":
                    self.object_type, self.names = None, {}
                    _free(elem)
                elif name == "FileHeader" and self.header is None:
                    self._file_header(elem)
        root = events.root
        if root is None or _local(root.tag) != ROOT_ELEMENT:
            found = "nothing" if root is None else f"<{_local(root.tag)}>"
            raise PMFileError(self.path, f"is not a China Mobile NanoCell PmFile (root element is {found})")
        if self.header is None:
            raise PMFileError(self.path, "has no FileHeader")
        self.finished = True
        if self.pm_dn or self.rejects or not self.pm_done:
            yield self._take()

    def _check_prolog(self, head: bytes) -> None:
        m = _PROLOG.match(head)
        if m is None:
            return  # an unusual prolog: the parser decides
        if m.group(1) and b"<!ENTITY" in m.group(1):
            raise PMFileError(self.path, "declares XML entities in its DTD, which PM files never need")
        if m.group(2) != ROOT_ELEMENT.encode():
            found = m.group(2).decode("ascii", "replace")
            raise PMFileError(self.path, f"is not a China Mobile NanoCell PmFile (root element is <{found}>)")

    def _file_header(self, elem: etree._Element) -> None:
        fields = {_local(c.tag): (c.text or "").strip(XML_WS) for c in elem if isinstance(c.tag, str)}
        self.header = fields
        begin = _time(self.path, "BeginTime", fields.get("BeginTime"))
        end = _time(self.path, "EndTime", fields.get("EndTime"))
        seconds = (end - begin).total_seconds()
        if not 0 < seconds < 2**31:
            raise PMFileError(self.path, f"has EndTime {fields['EndTime']!r} not after BeginTime "
                                         f"{fields['BeginTime']!r}")
        self.start_ms, self.gran_s = round(begin.timestamp() * 1000), round(seconds)
        self.vendor = vendor_label(fields.get("VendorName"), fields.get("InfoModelReferenced"),
                                   fields.get("DnPrefix"))

    def _pm(self, pm: etree._Element) -> None:
        if self.header is None:
            raise PMFileError(self.path, "has Measurements before its FileHeader")
        row = self.pm_done + len(self.pm_dn) + 1
        dn = (pm.get("Dn") or "").strip(XML_WS) or None
        self.pm_dn.append(dn)
        label = (pm.get("UserLabel") or "").strip(XML_WS)
        if label:
            self.first_label = self.first_label or label
            if self.object_type == "ManagedElement":
                self.element_label = self.element_label or label
        names, texts = self._values(pm, row, dn)
        if dn is None:
            self.rejects += [Reject(row, f"Pm has no Dn attribute, so {n} cannot be placed",
                                    f"Pm #{row} in Measurements {self.object_type!r}", "Dn", t)
                             for n, t in zip(names, texts)]
            return
        if len(set(names)) < len(names):  # a counter repeated in the Pm: the first is kept
            seen: set[str] = set()
            kept = []
            for k, (name, text) in enumerate(zip(names, texts)):
                if name in seen:
                    self.rejects.append(Reject(row, f"Pm repeats counter {name}", dn, name, text))
                else:
                    seen.add(name)
                    kept.append(k)
            names, texts = [names[k] for k in kept], [texts[k] for k in kept]
        ids = self.name_ids
        self.val_name.extend([ids.setdefault(name, len(ids)) for name in names])
        self.val_text += texts
        self.val_pm.extend([len(self.pm_dn) - 1] * len(names))

    def _values(self, pm: etree._Element, row: int, dn: str | None) -> tuple[list[str], list[str]]:
        """Counter names and value texts of one Pm, in file order; problems become rejects."""
        names: list[str] = []
        texts: list[str] = []
        where = dn or f"Pm #{row} in Measurements {self.object_type!r}"
        lookup = self.names
        for child in pm.iterchildren(etree.Element):  # comments and PIs are removed by the parser
            tag, raw_i = child.tag, child.get("i")
            if tag == "V" and (name := lookup.get(raw_i)) is not None:  # the usual case, first
                names.append(name)
                texts.append(child.text or "")
                continue
            tag = _local(tag)
            if tag not in ("V", "CV"):
                self.rejects.append(Reject(row, f"Pm holds <{tag}>, which is neither V nor CV", where, tag))
                continue
            name = self.names.get((raw_i or "").strip(XML_WS))
            if name is None:
                reason = (f"{tag} i={raw_i!r} is not a whole number" if not _INDEX.fullmatch(raw_i or "")
                          else f"{tag} i={raw_i.strip(XML_WS)} matches no N of the PmName of Measurements "
                               f"{self.object_type!r}")
                self.rejects.append(Reject(row, reason, where, "i", raw_i))
                continue
            if tag == "V":
                names.append(name)
                texts.append(child.text or "")
                continue
            sub: str | None = None
            for item in child:
                kind = _local(item.tag) if isinstance(item.tag, str) else ""
                if kind == "SN":
                    if sub is not None:
                        self.rejects.append(Reject(row, f"SN {sub} of {name} has no SV", where, sub))
                    sub = (item.text or "").strip(XML_WS) or None
                    if sub is None:
                        self.rejects.append(Reject(row, f"CV {name} has an empty SN", where, name))
                elif kind == "SV":
                    if sub is None:
                        self.rejects.append(Reject(row, f"CV {name} has an SV without its SN", where, name,
                                                   item.text))
                        continue
                    names.append(sub)
                    texts.append(item.text or "")
                    sub = None
            if sub is not None:
                self.rejects.append(Reject(row, f"SN {sub} of {name} has no SV", where, sub))
        return names, texts

    def device(self) -> str | None:
        """The value the ManagedElement RDN takes (module notes): fixed by the first Part that
        needs it; before the file ends, a label not seen yet is looked for ahead (:meth:`_scan`)."""
        if self.element_id:
            return self.element_id
        if self.fixed_device is None:
            label = self.element_label or (self.first_label if self.finished else None)
            self.fixed_device = (label,) if label or self.finished else (self._scan(),)
        return self.fixed_device[0]

    def _scan(self) -> str | None:
        """The device label from a separate pass over the whole file (a Part is due before the
        ManagedElement object was read); a file that breaks stops it, the main pass reports why."""
        element = first = object_type = None
        try:
            with _open(self.path) as raw:
                stream = Inflation(raw, self.path)
                head = lstrip_space(stream.read(PEEK_BYTES))
                for _, elem in Pull(self.path, _Rest(head, stream), _TAGS, ("end",), "Pm"):
                    name = _local(elem.tag)
                    if name == "ObjectType":
                        object_type = (elem.text or "").strip(XML_WS) or None
                    elif name == "Pm":
                        label = (elem.get("UserLabel") or "").strip(XML_WS)
                        first = first or label or None
                        if label and object_type == "ManagedElement":
                            element = label
                            break
                        _free(elem)
                    elif name == "Measurements":
                        object_type = None
                        _free(elem)
        except (etree.XMLSyntaxError, OSError, EOFError, zlib.error, PMFileError):
            pass
        return element or first

    def _take(self) -> tuple[pa.Table, np.ndarray, list[Reject]]:
        """Rows and rejects of the Pms read since the last call."""
        device = self.device()
        facts = [_dn(dn, device) for dn in self.pm_dn]  # one per Pm (object), not per value
        val_pm = np.frombuffer(self.val_pm, np.int64) if len(self.val_pm) else np.zeros(0, np.int64)
        name_id = np.frombuffer(self.val_name, np.int64) if len(self.val_name) else np.zeros(0, np.int64)
        text = pc.utf8_trim(pa.array(self.val_text, pa.string()), XML_WS)
        numeric = pc.match_substring_regex(text, _NUMBER)
        values = pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64())
        numeric = pc.and_(numeric, pc.is_finite(values).fill_null(False)).fill_null(False)  # 1e999
        empty = pc.is_in(pc.utf8_upper(text), value_set=pa.array(["", "NIL"]))
        ok = pc.or_(numeric, empty).to_numpy(zero_copy_only=False)
        all_names = pa.array(list(self.name_ids), pa.string())
        rejects = list(self.rejects)
        for k in np.flatnonzero(~ok):
            raw, name = self.val_text[int(k)], all_names[int(name_id[k])].as_py()
            rejects.append(Reject(self.pm_done + int(val_pm[k]) + 1,
                                  f"value {raw.strip(XML_WS)!r} of {name} is not a number",
                                  facts[val_pm[k]][0], name, raw))
        rejects.sort(key=lambda r: r.row_number)
        keep = np.flatnonzero(ok)
        pm_of = pa.array(val_pm[keep])
        n = len(keep)
        columns = {
            "object_dn": pa.array([f[0] for f in facts], pa.string()).take(pm_of),
            "managed_element": pa.array([f[1] for f in facts], pa.string()).take(pm_of),
            "cell_id": pa.array([f[2] for f in facts], pa.string()).take(pm_of),
            "period_start": pa.array(np.full(n, self.start_ms, np.int64)).cast(TIMESTAMP),
            "granularity_s": pa.array(np.full(n, self.gran_s, np.int32)),
            "counter_name": all_names.take(pa.array(name_id[keep])),
            "value": pc.if_else(numeric, values, pa.scalar(None, pa.float64())).take(pa.array(keep)),
            "vendor": pa.nulls(n, pa.string()).fill_null(self.vendor) if self.vendor else pa.nulls(n, pa.string()),
            "suspect": pa.array(np.zeros(n, bool)),
        }
        rows = self.pm_done + val_pm[keep] + 1
        self.pm_done += len(self.pm_dn)
        self._clear()
        return pa.table(columns).cast(PM_COUNTERS.schema), rows, rejects


def vendor_label(vendor_name: str | None, info_model: str | None, dn_prefix: str | None) -> str | None:
    """``VendorName`` if given, else "<dnprefix>-<model family>" lower-case ("cmcc-nanocell")."""
    if vendor_name and vendor_name.strip(XML_WS):
        return vendor_name.strip(XML_WS)
    family = re.match(r"[A-Za-z][A-Za-z0-9]*", (info_model or "").strip(XML_WS))
    parts = [p for p in ((dn_prefix or "").strip(XML_WS), family.group(0) if family else "") if p]
    return "-".join(parts).lower() or None


def _dn(dn: str | None, device: str | None) -> tuple[str | None, str | None, str | None]:
    """(object_dn, managed_element, cell_id) of one Pm's Dn, the ManagedElement RDN set to ``device``."""
    if dn is None:
        return None, None, None
    rdns = [r.strip(XML_WS) for r in _RDN_SPLIT.split(dn)]
    me = cell = None
    for k, rdn in enumerate(rdns):
        cls, eq, val = (p.strip(XML_WS) for p in rdn.partition("="))
        if not eq:
            continue
        if cls == "ManagedElement" and me is None:
            if device is not None:
                val, rdns[k] = device, f"{cls}={device}"
            me = val
        if k == len(rdns) - 1 and cls.lower() in CELL_CLASSES:
            cell = val
    return ",".join(rdns), me if me is not None else device, cell


def _time(path: Path, name: str, text: str | None) -> datetime:
    if not text:
        raise PMFileError(path, f"has no {name} in its FileHeader")
    t = _parse_time(text)
    if t is None:
        raise PMFileError(path, f"has {name} {text!r}, not an ISO 8601 time in years 1-9999")
    return t
