"""Measured-object DNs across PM formats: their object class, their cell RDN, and the cell
classes opencem knows.

Two DN syntaxes reach ingest. 3GPP (TS 32.300), the NanoCell PmFile and the object DNs the
CSV reader builds write ``Class=value`` RDNs joined by ``,``
(``ManagedElement=me1,GNBDUFunction=1,NRCellDU=7``); Nokia OMeS writes ``CLASS-value`` joined
by ``/`` (``PLMN-PLMN/MRBTS-1/LNBTS-1/LNCEL-1``). A DN with an ``=`` is read the first way,
any other the second. Everything here works on whole Arrow columns.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# Cell classes: (family, technology). A cell's key uses the family, so the CU and DU halves
# of one NR cell (NRCellCU=1, NRCellDU=1 under one gNB) are one cell, NRCell=1.
CELL_CLASSES: dict[str, tuple[str, str | None]] = {
    "EUtranCellFDD": ("EUtranCellFDD", "4G"), "EUtranCellTDD": ("EUtranCellTDD", "4G"),
    "NRCellDU": ("NRCell", "5G"), "NRCellCU": ("NRCell", "5G"),
    "UtranCell": ("UtranCell", "3G"), "GsmCell": ("GsmCell", "2G"),
    "EutranCellTdd": ("EutranCellTdd", "4G"), "EutranCellFdd": ("EutranCellFdd", "4G"),  # CMCC NanoCell
    "LNCEL": ("LNCEL", "4G"), "NRCELL": ("NRCELL", "5G"), "WCEL": ("WCEL", "3G"),      # Nokia
    "Cell": ("Cell", None),                                                             # CSV exports
}
# Other measured-object classes a dictionary's ``objects:`` may name.
OTHER_CLASSES = (
    "ManagedElement", "MeContext", "ENBFunction", "ENodeBFunction", "EnbFunction", "GNBDUFunction",
    "GNBCUCPFunction", "GNBCUUPFunction", "NRSectorCarrier", "EUtranRelation", "NRCellRelation",
    "SctpAssoc", "MRBTS", "LNBTS", "NRBTS", "WBTS",
)
OBJECT_CLASSES = (*CELL_CLASSES, *OTHER_CLASSES)
_WS = "[ \t\r\n]*"
_VALUE = r"(?:[^,\\]|\\[\s\S]|\\$)*"  # an RDN value: "\," is a comma inside it (TS 32.300)
_LAST_RDN = f"(?:^|,){_WS}(?P<cls>[^,=]*?){_WS}={_VALUE}$"
_LAST_NOKIA = "(?:^|/)(?:NE-)?(?P<cls>[A-Za-z][A-Za-z0-9_]*)-[^/]*$"
_CELL_3GPP = (f"^(?:{_VALUE},)*{_WS}(?P<cls>" + "|".join(c for c in CELL_CLASSES if c.upper() != c)
              + f"){_WS}=")
_CELL_NOKIA = "(?:^|/)(?:NE-)?(?P<cls>LNCEL|NRCELL|WCEL)-"


# Functions a node may hold several of, each numbering its own cells from 1 (TS 28.541: a
# gNB-DU per ManagedElement is 0..*), folded like the cell classes: the CU and DU halves of one
# gNB are one gNB. An eNodeB, RNC or BSC function is one per node and never enters a key.
FUNCTION_FAMILIES = {"GNBDUFunction": "GNB", "GNBCUCPFunction": "GNB", "GNBCUUPFunction": "GNB"}
_FUNCTION_3GPP = (f"^(?:{_VALUE},)*{_WS}(?P<fn>" + "|".join(FUNCTION_FAMILIES) + f"){_WS}=(?P<fv>{_VALUE}),{_WS}(?:"
                  + "|".join(c for c in CELL_CLASSES if c.upper() != c) + f"){_WS}=")


def known_class(name: str) -> str | None:
    """The object class ``name`` stands for (compared case-insensitively), or None."""
    return next((c for c in OBJECT_CLASSES if c.lower() == name.strip().lower()), None)


def object_classes(dns: pa.Array) -> pa.Array:
    """Class of the last RDN of each DN (``EUtranCellFDD``, ``LNCEL``, ``ManagedElement``), null
    when the DN has no RDN of either syntax."""
    dns = _array(dns)
    threegpp = pc.struct_field(pc.extract_regex(dns, _LAST_RDN), 0)
    nokia = pc.struct_field(pc.extract_regex(dns, _LAST_NOKIA), 0)
    return pc.if_else(pc.match_substring(dns, "="), threegpp, nokia)


def cell_classes(dns: pa.Array) -> pa.Array:
    """Class of each DN's cell RDN (one of :data:`CELL_CLASSES`, spelt as there): the last cell
    RDN of a ``Class=value`` DN (where the readers take ``cell_id`` from), the first of a Nokia
    DN; null when there is none."""
    dns = _array(dns)
    threegpp = pc.struct_field(pc.extract_regex(dns, _CELL_3GPP), 0)
    nokia = pc.struct_field(pc.extract_regex(dns, _CELL_NOKIA), 0)
    return pc.if_else(pc.match_substring(dns, "="), threegpp, nokia)


def function_parts(dns: pa.Array) -> pa.Array:
    """``<function family>=<value>/`` of the function RDN right above each DN's last cell RDN when
    its value is not ``1`` (``GNBDUFunction=2,NRCellDU=1`` -> ``GNB=2/``), else ``""``: most
    nodes have one function of each kind, numbered 1, and their cell keys leave it out."""
    dns = _array(dns)
    found = pc.extract_regex(dns, _FUNCTION_3GPP)
    fn, value = pc.struct_field(found, 0), pc.utf8_trim(pc.struct_field(found, 1), " \t\r\n")
    names = list(FUNCTION_FAMILIES)
    index = pc.index_in(fn, value_set=pa.array(names, pa.string()))
    family = pa.array(list(FUNCTION_FAMILIES.values()), pa.string()).take(index)
    part = pc.binary_join_element_wise(family, "=", value, "/", "")
    return pc.if_else(pc.and_(pc.is_valid(part), pc.not_equal(value, "1")), part, pa.scalar("")).fill_null("")


def measured_objects(dns: pa.Array, managed_elements: pa.Array) -> pa.Array:
    """Each measured object as two deliveries of one measurement are compared: a cell as its
    node, the function above it when numbered other than 1, its class and its id
    (``me1|EUtranCellFDD=1`` whether the DN says ``ENodeBFunction=1,EUtranCellFDD = 1 `` or
    ``EUtranCellFDD=1``); any other object as its DN without blanks around the separators. The
    class is kept, not folded: an NRCellCU and an NRCellDU report counters of their own."""
    dns = _array(dns)
    is_3gpp = pc.match_substring(dns, "=")
    threegpp, nokia = pc.extract_regex(dns, _CELL_3GPP + f"(?P<val>{_VALUE})"), pc.extract_regex(dns, _CELL_NOKIA + "(?P<val>[^/]*)")
    cls = pc.if_else(is_3gpp, pc.struct_field(threegpp, 0), pc.struct_field(nokia, 0))
    value = pc.utf8_trim(pc.if_else(is_3gpp, pc.struct_field(threegpp, 1), pc.struct_field(nokia, 1)), " \t\r\n")
    me = pc.utf8_trim(_array(managed_elements).cast(pa.string()).fill_null(""), " \t\r\n")
    cell = pc.binary_join_element_wise("\x1f", me, "|", function_parts(dns), cls, "=", value, "")
    plain = pc.utf8_trim(pc.replace_substring_regex(dns, "[ \t\r\n]*([,=/])[ \t\r\n]*", "\\1"), " \t\r\n")
    has_cell = pc.and_(pc.is_valid(cls), pc.not_equal(value, "")).fill_null(False)
    return pc.if_else(has_cell, cell, plain)


def families(classes: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(family, technology) of each cell class (null for other classes)."""
    names = list(CELL_CLASSES)
    index = pc.index_in(classes, value_set=pa.array(names, pa.string()))
    family = pa.array([CELL_CLASSES[n][0] for n in names], pa.string()).take(index)
    tech = pa.array([CELL_CLASSES[n][1] for n in names], pa.string()).take(index)
    return family, tech


def _array(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    return values
