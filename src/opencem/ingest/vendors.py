"""Which vendor wrote a PM file, and which counter dictionary maps its counters.

The choice, first that applies:

1. ``--vendor NAME`` (``opencem ingest --vendor``): that vendor's dictionary for every PM file;
2. the folder: a file under ``pm/<vendor>/`` uses ``<vendor>.yaml`` (an XML file under a folder
   that names no dictionary, e.g. ``pm/baicells/``, is detected instead);
3. the file itself: its format (3GPP measCollec/measData, Nokia OMeS, China Mobile
   NanoCell ``PmFile``), then its header (3GPP ``vendorName``, ``fileSender``; PmFile
   ``VendorName``, ``SenderName``, ``InfoModelReferenced``) and its counter names, matched
   against each dictionary's ``detect:`` rules;
4. none: counter names are kept as the file writes them (3GPP names need no dictionary).

Dictionaries are looked up in the workspace's ``dictionaries/`` folder first, then among the
bundled ones, so a workspace file replaces a bundled dictionary of the same vendor and can add
vendors whose counters are not public (Huawei, ZTE, Samsung). The choice and its reason travel
with the file's result (``FileResult.dictionary``), and so do the counters no entry maps (by
name, and by name and object class for a counter the dictionary maps on other classes only).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..schema.counters import CANONICAL_COUNTERS
from .dictionary import DICTIONARY_DIR, CounterDictionary, DictionaryError, load_dictionary

HEAD_BYTES = 256 << 10  # enough for a header and the first measTypes of any PM file seen
# Root elements of the PM XML formats opencem reads, and the reader each needs.
XML_FORMATS = {"measCollecFile": "xml_32435", "measDataFile": "xml_32435", "OMeS": "omes",
               "PmFile": "nanocell_pmfile"}
_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(measCollecFile|measDataFile|OMeS|PmFile)[\s>/]")
# Comments and processing instructions are not markup: a vendorName="..." or a root element
# written in one says nothing about the file (an unclosed one runs to the end of the head).
_NOT_MARKUP = re.compile(rb"<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)", re.DOTALL)
# An attribute of one element, in either quote style (XML allows both): the element's earlier
# attributes are skipped whole, so a '>' or a name=value inside their values cannot mislead.
_ATTR = (r"""<(?:[\w.-]+:)?{element}(?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*?\s+{name}\s*=\s*"""
         r"""(?:"([^"]*)"|'([^']*)')""")
_TEXT = r"<{name}>([^<]*)</{name}>"


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a PM file say: its format, the names its header gives, and the
    first counter names."""

    format: str | None
    vendor_name: str = ""
    sender: str = ""
    counters: tuple[str, ...] = ()


@dataclass
class DictionaryChoice:
    """The dictionary a PM file is read with (or none), and why."""

    dictionary: CounterDictionary | None
    format: str | None = None  # the file's PM format (a reader), for PM files
    key: str | None = None  # content digest of the dictionary file: part of the load fingerprint
    label: str | None = None  # e.g. "ericsson (bundled; vendorName 'Ericsson AB')"
    produced: frozenset[str] = field(default_factory=frozenset)
    reads: frozenset[str] = field(default_factory=frozenset)  # vendor counters the dictionary names

    def unmapped(self, names: set[str]) -> set[str]:
        """Counter names in a file's mapped rows that are neither canonical nor produced by the
        dictionary: rows no entry consumed, which keep the vendor's name. A name in ``reads``
        among them is one the dictionary maps on other object classes only (ingest lists it
        with the class it was found on)."""
        return {n for n in names if n not in self.produced and n not in CANONICAL_COUNTERS}


NO_CHOICE = DictionaryChoice(None)


def sniff(path: Path) -> Sniffed:
    """Format and header of a PM XML file from its first bytes (plain or gzip)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        try:
            head = stream.read(HEAD_BYTES)
        except (OSError, EOFError):
            return Sniffed(None)
    head = _NOT_MARKUP.sub(b"", head)
    m = _ROOT.search(head)
    if m is None:
        return Sniffed(None)
    text = head.decode("utf-8", errors="replace")
    fmt = XML_FORMATS[m.group(1).decode()]
    if fmt == "xml_32435":
        vendor = _first(_ATTR.format(element="fileHeader", name="vendorName"), text)
        sender = " ".join(filter(None, (_first(_ATTR.format(element="fileSender", name=a), text)
                                        for a in ("localDn", "senderName", "elementType"))))
        counters = re.findall(r"<measType[^>]*>([^<]+)</measType>", text) or \
            " ".join(re.findall(r"<measTypes>([^<]*)</measTypes>", text)).split()
    elif fmt == "nanocell_pmfile":
        vendor = _first(_TEXT.format(name="VendorName"), text)
        sender = " ".join(filter(None, (_first(_TEXT.format(name=n), text)
                                        for n in ("InfoModelReferenced", "SenderName", "DnPrefix"))))
        counters = re.findall(r"<N i=\"\d+\">([^<]+)</N>", text)
    else:  # Nokia OMeS: counters are element names (M8013C5) inside PMTarget
        vendor, sender = "Nokia", _first(_ATTR.format(element="OMeS", name="version"), text)
        counters = re.findall(r"<(M\d+C\d+)>", text)
    return Sniffed(fmt, vendor.strip(), sender.strip(), tuple(dict.fromkeys(c.strip() for c in counters)))


def _first(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    if m is None:
        return ""
    # The value as an XML parser reads it (&amp;, &#39;; either quote group).
    return html.unescape(next((g for g in m.groups() if g is not None), ""))


def dictionary_path(vendor: str, folder: Path | None = None) -> Path | None:
    """The vendor's counter dictionary file: the workspace's own first, then the bundled one."""
    for base in filter(None, (folder, DICTIONARY_DIR)):
        path = Path(base) / f"{vendor}.yaml"
        if path.is_file():
            return path
    return None


def available(folder: Path | None = None) -> dict[str, Path]:
    """Every dictionary by vendor name, a workspace file winning over a bundled one."""
    found = {p.stem: p for p in sorted(DICTIONARY_DIR.glob("*.yaml"))}
    if folder is not None and Path(folder).is_dir():
        found.update({p.stem: p for p in sorted(Path(folder).glob("*.yaml"))})
    return found


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> tuple[CounterDictionary, str]:
    return load_dictionary(path), hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load(path: Path) -> tuple[CounterDictionary, str]:
    """A dictionary file and its content digest (cached while the file is unchanged)."""
    return _load(path, path.stat().st_mtime_ns)


def choose_dictionary(src, folder: Path | None = None, vendor: str | None = None) -> DictionaryChoice:
    """The dictionary for source file ``src`` (a :class:`~opencem.ingest.load.SourceFile`);
    :data:`NO_CHOICE` for files that are not PM files."""
    if src.kind not in ("pm_xml", "pm_csv"):
        return NO_CHOICE
    sniffed = sniff(src.path) if src.kind == "pm_xml" else Sniffed("csv")
    if src.kind == "pm_xml" and sniffed.format is None:
        return DictionaryChoice(None, None)  # not a known PM XML layout: the reader says why
    named, why = (vendor, "--vendor") if vendor else (src.vendor, f"folder pm/{src.vendor}/")
    if named:
        path = dictionary_path(named, folder)
        if path is None:
            if src.kind == "pm_xml" and not vendor:
                return _detected(sniffed, folder)  # pm/<name>/ may name a brand or site, not a dictionary
            known = ", ".join(sorted(available(folder)))
            raise DictionaryError([f"No counter dictionary for vendor {named!r} ({why}); known: {known}. "
                                   f"Add <workspace>/dictionaries/{named}.yaml (see docs/ingest.md)."])
        return _choice(path, folder, sniffed.format, why)
    return _detected(sniffed, folder)


def _detected(sniffed: Sniffed, folder: Path | None) -> DictionaryChoice:
    best: tuple[int, str, Path] | None = None
    for name, path in available(folder).items():
        d, _ = load(path)
        if d.format != sniffed.format or d.detect is None:
            continue
        score, reason = d.detect.score(sniffed)
        if score and (best is None or score > best[0]):
            best = (score, reason, path)
    if best is None:
        why = (f"vendorName {sniffed.vendor_name!r} is in no dictionary's detect.vendor_names"
               if sniffed.vendor_name else "nothing in the file's header matches a dictionary's detect rules")
        return DictionaryChoice(None, sniffed.format, label=f"none: counter names kept as in the file ({why})")
    return _choice(best[2], folder, sniffed.format, best[1])


def _choice(path: Path, folder: Path | None, fmt: str | None, why: str) -> DictionaryChoice:
    d, digest = load(path)
    if fmt is not None and d.format != fmt:
        raise DictionaryError([f"Counter dictionary {path.name} ({why}) is for {d.format} files, but this file "
                               f"is {fmt}; choose the dictionary of this file's vendor."])
    where = "workspace" if folder is not None and path.parent == Path(folder) else "bundled"
    return DictionaryChoice(d, fmt if fmt != "csv" else None, key=digest,
                            label=f"{d.vendor} ({where}; {why})", produced=frozenset(d.counters),
                            reads=frozenset(d.source_names()))
