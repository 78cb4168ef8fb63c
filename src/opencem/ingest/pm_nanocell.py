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
``Pm`` ordinal. A file that is not a PmFile, not well-formed, declares entities or has no usable
period raises :class:`PMFileError` (one sentence). Safety as for the other readers: entities never
expanded, no network, no DTD loading; each ``Pm`` is read into lists and freed.
"""

from __future__ import annotations

import re
import zlib
from array import array
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary
from .dictionary_apply import map_counters
from .parts import Part, Reject
from .pm_xml import _free, _open
from .pm_xml_rows import SAFE, XML_WS, PMFileError, _local, _refuse_entities, _Rest

ROOT_ELEMENT = "PmFile"
CELL_CLASSES = frozenset({"eutrancelltdd", "eutrancellfdd"})  # compared lower-case
PEEK_BYTES = 1 << 16
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
                      element_id: str | None = None) -> list[Part]:
    """The whole file as one ``pm_counters`` Part (mapped through ``dictionary`` when given),
    each row numbered by the ``Pm`` it came from; ``element_id`` names the device (module notes)."""
    path = Path(path)
    reader = _Reader(path)
    try:
        reader.run()
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    table, rows, rejects = reader.result(element_id)
    if dictionary is not None:
        table, rows = map_counters(table, dictionary, rows)
    return [Part("pm_counters", table, rows, rejects)]


def read_pmfile(path: str | Path, dictionary: CounterDictionary | None = None,
                element_id: str | None = None) -> pa.Table:
    """The rows of :func:`read_pmfile_parts` (values that cannot be used are left out)."""
    return read_pmfile_parts(path, dictionary, element_id)[0].data


class _Reader:
    """One file: the header, then each Pm turned into value lists and freed."""

    def __init__(self, path: Path):
        self.path = path
        self.header: dict[str, str] | None = None
        self.start_ms = self.gran_s = 0
        self.vendor: str | None = None
        self.object_type: str | None = None
        self.names: dict[str, str] = {}  # i as written -> counter name
        self.pm_dn: list[str | None] = []
        self.pm_label: list[tuple[str | None, str]] = []  # (object type, UserLabel) per Pm
        self.val_pm = array("q")
        self.val_name = array("q")
        self.val_text: list[str] = []
        self.name_ids: dict[str, int] = {}
        self.rejects: list[Reject] = []

    def run(self) -> None:
        with _open(self.path) as stream:
            first = stream.read(PEEK_BYTES)
            first = first[len(first) - len(first.lstrip(b" \t\r\n")):]
            self._check_prolog(first)
            context = etree.iterparse(_Rest(first, stream), events=("end",), tag=_TAGS,
                                      remove_comments=True, remove_pis=True, **SAFE)
            checked = False
            for _, elem in context:
                if not checked:
                    _refuse_entities(self.path, elem)
                    checked = True
                name = _local(elem.tag)
                if name == "Pm":
                    self._pm(elem)
                    _free(elem)
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
            root = context.root
            if root is None or _local(root.tag) != ROOT_ELEMENT:
                found = "nothing" if root is None else f"<{_local(root.tag)}>"
                raise PMFileError(self.path, f"is not a China Mobile NanoCell PmFile (root element is {found})")
            if self.header is None:
                raise PMFileError(self.path, "has no FileHeader")

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
        row = len(self.pm_dn) + 1
        dn = (pm.get("Dn") or "").strip(XML_WS) or None
        self.pm_dn.append(dn)
        self.pm_label.append((self.object_type, (pm.get("UserLabel") or "").strip(XML_WS)))
        names, texts = self._values(pm, row, dn)
        if dn is None:
            self.rejects += [Reject(row, f"Pm has no Dn attribute, so {n} cannot be placed",
                                    f"Pm #{row} in Measurements {self.object_type!r}", "Dn", t)
                             for n, t in zip(names, texts)]
            return
        seen: set[str] = set()
        for name, text in zip(names, texts):
            if name in seen:
                self.rejects.append(Reject(row, f"Pm repeats counter {name}", dn, name, text))
                continue
            seen.add(name)
            self.val_name.append(self.name_ids.setdefault(name, len(self.name_ids)))
            self.val_text.append(text)
            self.val_pm.append(row - 1)

    def _values(self, pm: etree._Element, row: int, dn: str | None) -> tuple[list[str], list[str]]:
        """Counter names and value texts of one Pm, in file order; problems become rejects."""
        names: list[str] = []
        texts: list[str] = []
        where = dn or f"Pm #{row} in Measurements {self.object_type!r}"
        for child in pm:
            if not isinstance(child.tag, str):
                continue
            tag, raw_i = _local(child.tag), child.get("i")
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

    def device(self, element_id: str | None) -> str | None:
        """The value the ManagedElement RDN takes (module notes)."""
        if element_id:
            return element_id
        element = [label for kind, label in self.pm_label if kind == "ManagedElement" and label]
        return next(iter(element or [label for _, label in self.pm_label if label]), None)

    def result(self, element_id: str | None) -> tuple[pa.Table, np.ndarray, list[Reject]]:
        device = self.device(element_id)
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
            rejects.append(Reject(int(val_pm[k]) + 1, f"value {raw.strip(XML_WS)!r} of {name} is not a number",
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
        return pa.table(columns).cast(PM_COUNTERS.schema), val_pm[keep] + 1, rejects


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
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise PMFileError(path, f"has {name} {text!r}, not an ISO 8601 time") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
