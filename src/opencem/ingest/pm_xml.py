"""Reader for 3GPP PM XML files (TS 32.435 measCollecFile, also TS 28.532 measDataFile).

The file is streamed with ``lxml.etree.iterparse``: each ``measInfo`` is handled when it closes
and then freed from the tree, and values are handed on in batches, so memory follows the largest
measInfo and the batch size, not the file. Entities are never
expanded, nothing is fetched from the network, and a file declaring entities is refused.
Gzipped files are recognised by their magic bytes.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree

from ..schema.base import TIMESTAMP
from ..schema.network import PM_COUNTERS
from .dictionary import CounterDictionary, apply_dictionary_long, load_dictionary

CELL_CLASSES = frozenset({"EUtranCellFDD", "EUtranCellTDD", "NRCellDU", "NRCellCU", "UtranCell", "GsmCell"})
ROOT_ELEMENTS = frozenset({"measCollecFile", "measDataFile"})
GZIP_MAGIC = b"\x1f\x8b"
# Values gathered before building an Arrow table: large enough to amortise Arrow calls.
BATCH_VALUES = 200_000
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class PMFileError(ValueError):
    """A PM file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"PM file {self.path.name}: {reason}.")


def read_meascollec(path: str | Path, vendor: str | Path | CounterDictionary | None = None) -> pa.Table:
    """Read one 3GPP PM XML file (plain or gzipped) into the PM_COUNTERS long table.

    ``vendor`` is a vendor name, dictionary path or loaded dictionary used to map counter names and
    units to canonical ones; without it names are kept as in the file and ``vendor`` is the file
    header's vendorName. Non-numeric values (NIL, empty, multi-value lists) become null.
    The whole result is held in memory; use :func:`iter_meascollec` to stream large files.
    """
    batches = list(iter_meascollec(path, vendor))
    if not batches:
        return PM_COUNTERS.schema.empty_table()
    return pa.concat_tables(batches)


def iter_meascollec(path: str | Path,
                    vendor: str | Path | CounterDictionary | None = None) -> Iterator[pa.Table]:
    """Yield the file as PM_COUNTERS tables of about ``BATCH_VALUES`` values each, in file order.

    Batches end at a measData boundary, so a dictionary ``sum`` sees every part one managed
    element reports for a period.
    """
    dictionary = (vendor if isinstance(vendor, CounterDictionary) or vendor is None
                  else load_dictionary(vendor))
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            label = dictionary.vendor if dictionary is not None else None
            for table in _iter_raw(path, stream, label):
                yield table if dictionary is None else apply_dictionary_long(table, dictionary)
    except etree.XMLSyntaxError as exc:
        raise PMFileError(path, f"is not well-formed XML ({exc.msg})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise PMFileError(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def cell_id_of(object_dn: str | None) -> str | None:
    """Value of the last RDN of a known cell class (EUtranCellFDD, NRCellDU, ...), else None."""
    for rdn in reversed((object_dn or "").split(",")):
        cls, _, value = rdn.partition("=")
        if cls.strip() in CELL_CLASSES:
            return value.strip()
    return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _iter_raw(path: Path, stream: BinaryIO, vendor: str | None) -> Iterator[pa.Table]:
    """Tables in file counter names; ``vendor`` labels the rows (default: header vendorName)."""
    context = etree.iterparse(
        stream, events=("end",),
        tag=("{*}fileHeader", "{*}managedElement", "{*}measEntity", "{*}measInfo", "{*}measData"),
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
        remove_comments=True, remove_pis=True)
    begin: datetime | None = None
    batch = _Batch()
    checked_dtd = False
    for _, elem in context:
        if not checked_dtd:
            _refuse_entities(path, elem)
            checked_dtd = True
        name = _local(elem.tag)
        if name == "fileHeader":
            vendor = vendor or elem.get("vendorName")
            stamp = next((c.get("beginTime") for c in elem if c.get("beginTime")), None)
            begin = _time(path, stamp, "fileHeader beginTime") if stamp else None
        elif name == "measInfo":
            _meas_info(path, elem, begin, batch)
            _free(elem)
        elif name == "measData" and elem.getparent() is not None and elem.getparent().getparent() is None:
            _free(elem)
            # Batches end with a managed element, so a dictionary sum sees all its parts.
            if batch.n_values >= BATCH_VALUES:
                yield batch.table(vendor)
                batch = _Batch()
    if batch.n_values:
        yield batch.table(vendor)
    root = context.root
    if root is None or _local(root.tag) not in ROOT_ELEMENTS:
        found = "nothing" if root is None else f"<{_local(root.tag)}>"
        raise PMFileError(path, f"is not a 3GPP measCollecFile or measDataFile (root element is {found})")


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


def _time(path: Path, text: str, what: str) -> datetime:
    t = _parse_time(text.strip())
    if t is None:
        raise PMFileError(path, f"{what} {text!r} is not an ISO 8601 time")
    return t


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


class _Batch:
    """Values of several measInfos kept as plain lists and turned into one Arrow table at once
    (small measInfos are the norm; Arrow calls per measInfo would dominate the run time)."""

    def __init__(self) -> None:
        self.ldns: list[str] = []          # per measValue
        self.suspects: list[bool] = []
        self.values_per_ldn: list[int] = []
        self.texts: list[str | None] = []  # per value
        self.type_index: list[np.ndarray] = []
        self.names: dict[str, int] = {}    # counter name -> index into the batch's names
        self.start_ms: list[int] = []      # per measInfo
        self.gran_s: list[int] = []
        self.values_per_info: list[int] = []
        self.n_values = 0

    def table(self, vendor: str | None) -> pa.Table:
        n = self.n_values
        row = pa.array(np.repeat(np.arange(len(self.ldns)), self.values_per_ldn))
        text = pc.utf8_trim_whitespace(pa.array(self.texts, pa.string()))
        numeric = pc.match_substring_regex(text, _NUMBER)
        per_value = lambda per_info, dtype: np.repeat(np.array(per_info, dtype), self.values_per_info)  # noqa: E731
        type_index = pa.array(np.concatenate(self.type_index))
        columns = {
            "object_dn": pa.array(self.ldns, pa.string()).take(row),
            "cell_id": pa.array([cell_id_of(d) for d in self.ldns], pa.string()).take(row),
            "period_start": pa.array(per_value(self.start_ms, np.int64)).cast(TIMESTAMP),
            "granularity_s": pa.array(per_value(self.gran_s, np.int32)),
            "counter_name": pa.array(list(self.names), pa.string()).take(type_index),
            "value": pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64()),
            "vendor": pa.nulls(n, pa.string()).fill_null(vendor) if vendor else pa.nulls(n, pa.string()),
            "suspect": pa.array(self.suspects, pa.bool_()).take(row),
        }
        return pa.table(columns).cast(PM_COUNTERS.schema)


def _meas_info(path: Path, info: etree._Element, begin: datetime | None, batch: _Batch) -> None:
    """Append one measInfo's values to ``batch``."""
    ns = info.tag[: info.tag.index("}") + 1] if info.tag.startswith("{") else ""
    label = f"measInfo {info.get('measInfoId')!r}" if info.get("measInfoId") else "a measInfo"
    gran = info.find(ns + "granPeriod")
    duration = gran.get("duration") if gran is not None else None
    gran_s = _duration_s(duration)
    if gran_s is None or gran_s <= 0:
        raise PMFileError(path, f"{label} has granPeriod duration {duration!r}, not an ISO 8601 duration")
    end = gran.get("endTime")
    if end:
        start = _time(path, end, f"{label} granPeriod endTime") - timedelta(seconds=gran_s)
    elif begin is not None:
        start = begin
    else:
        raise PMFileError(path, f"{label} has no granPeriod endTime and the file no beginTime")

    type_elems = info.findall(ns + "measType")
    if type_elems:
        names = [(t.text or "").strip() for t in type_elems]
        p_text = [(t.get("p") or "").strip() for t in type_elems]
    else:
        names = (info.findtext(ns + "measTypes") or "").split()
        p_text = [str(i) for i in range(1, len(names) + 1)]

    ps: list[str | None] = []
    n_ldn = 0
    r_tag, results_tag, suspect_tag = ns + "r", ns + "measResults", ns + "suspect"
    for mv in info.iterfind(ns + "measValue"):
        ldn = mv.get("measObjLdn")
        if ldn is None:
            raise PMFileError(path, f"{label} has a measValue without measObjLdn")
        rs = mv.findall(r_tag)
        if rs:
            ps.extend([r.get("p") for r in rs])
            batch.texts.extend([r.text for r in rs])
        else:
            tokens = (mv.findtext(results_tag) or "").split()
            if len(tokens) != len(names):
                raise PMFileError(path, f"measValue {ldn!r} has {len(tokens)} measResults for "
                                        f"{len(names)} measTypes")
            ps.extend(p_text)
            batch.texts.extend(tokens)
        batch.ldns.append(ldn)
        batch.values_per_ldn.append(len(rs) or len(names))
        batch.suspects.append((mv.findtext(suspect_tag) or "").strip().lower() == "true")
        n_ldn += 1
    if not ps:
        return

    to_batch = np.array([batch.names.setdefault(nm, len(batch.names)) for nm in names], np.int64)
    if ps == p_text * n_ldn:
        # Usual layout: every measValue lists all measTypes in order.
        local = np.tile(np.arange(len(names)), n_ldn)
    else:
        try:
            positions = np.array(p_text, dtype=object).astype(np.int64)
            p = np.array(ps, dtype=object).astype(np.int64)
        except (TypeError, ValueError):
            raise PMFileError(path, f"{label} has a measType or r without a numeric p attribute") from None
        if (positions < 1).any():
            raise PMFileError(path, f"{label} has a measType with p={int(positions.min())}; p starts at 1")
        lookup = np.full(max(int(positions.max(initial=0)), int(p.max())) + 1, -1, np.int64)
        lookup[positions] = np.arange(len(positions))
        local = np.where(p >= 0, lookup[np.clip(p, 0, None)], -1)
        if (local < 0).any():
            raise PMFileError(path, f"{label} has r p={int(p[local < 0][0])} with no measType")
    batch.type_index.append(to_batch[local])
    batch.start_ms.append(round(start.timestamp() * 1000))
    batch.gran_s.append(round(gran_s))
    batch.values_per_info.append(len(ps))
    batch.n_values += len(ps)
