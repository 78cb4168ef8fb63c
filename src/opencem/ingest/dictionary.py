"""Vendor counter dictionaries: user-editable YAML files that map vendor counters to canonical ones.

One file per vendor (``dictionaries/<vendor>.yaml``). Each canonical counter names its source,
or a list of sources for different measured objects::

    RRC.ConnEstabAtt: {from: pmRrcConnEstabAtt}                    # rename (aliases: older names)
    HO.ExeAtt: {sum: [pmHoExeAttIntra, pmHoExeAttInter]}            # sum of sub-counters
    RRC.ConnMean: {expr: "pmRrcConnLevelSum / pmRrcConnLevelSamp"}   # arithmetic, see counter_expr
    DRB.UEThpTimeDl:                                                # per object class
      - {from: pmUeThpTimeDl, objects: [EUtranCellFDD]}
      - {from: pmMacTimeDlDrb, scale: 0.125, objects: [NRCellDU]}

``scale`` converts the vendor unit into the canonical unit of
:data:`opencem.schema.counters.CANONICAL_COUNTERS` (value = vendor value x scale, after the sum
or expression). ``objects`` limits a source to measured objects of those classes (the last RDN
class of the object DN, :data:`opencem.ingest.dn.OBJECT_CLASSES`). A ``sum`` skips missing
parts and is null only when all are; an ``expr`` is null when a counter it needs is absent or
null, or it divides by zero. One vendor counter may feed several entries; only two renames of
it for the same objects conflict.

Validated in layers like every definition file: YAML, the typed model (unknown keys are
errors), then the rules below; every problem at once, each naming file, line and field.
Applying a dictionary is :mod:`opencem.ingest.dictionary_apply`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import re2
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from ..errors import suggest
from ..schema.counters import CANONICAL_COUNTERS
from ..specfile import Issue, SpecError, field_path, issue_of, line_of, read_yaml
from . import counter_expr
from .dn import OBJECT_CLASSES, known_class

DICTIONARY_DIR = Path(__file__).parent / "dictionaries"
KIND = "Counter dictionary"


class DictionaryError(SpecError):
    """A counter dictionary file that cannot be used; ``issues`` holds one sentence per problem."""


@functools.lru_cache(maxsize=1024)
def parse_expr(text: str) -> counter_expr.Node:
    """The tree of a dictionary expression (cached: every batch of a file applies it again)."""
    return counter_expr.parse(text)


class CounterSource(BaseModel):
    """Where one canonical counter comes from in the vendor's data."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: str | None = Field(default=None, alias="from")
    sum: list[str] | None = Field(default=None, min_length=1)
    expr: str | None = None
    scale: float = 1.0  # value = vendor value x scale: finite and above 0
    # Older software releases sometimes name the same counter differently.
    aliases: list[str] = []
    objects: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> CounterSource:
        given = [k for k, v in (("from", self.from_), ("sum", self.sum), ("expr", self.expr)) if v is not None]
        if not given:
            raise ValueError("give one of 'from', 'sum' or 'expr'")
        if len(given) > 1:
            quoted = [f"'{k}'" for k in given]
            raise ValueError(f"give exactly one of {', '.join(quoted[:-1])} or {quoted[-1]}")
        if self.aliases and self.from_ is None:
            raise ValueError("'aliases' only goes with 'from'")
        return self

    @field_validator("expr")
    @classmethod
    def _arithmetic(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_expr(value)
            except counter_expr.ExprError as err:
                shown = value if len(value) <= 80 else value[:60] + "..."
                raise ValueError(f"expression {shown!r} {err}") from None
        return value

    @field_validator("scale")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"scale must be a finite number above 0 (canonical value = vendor value x scale), "
                             f"not {value}")
        return value

    @field_validator("objects")
    @classmethod
    def _known_classes(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if known_class(name) is None:
                raise ValueError(f"unknown measured object class {name!r}{suggest(name, list(OBJECT_CLASSES))}; "
                                 "leave 'objects' out to apply the entry to every object")
        return None if value is None else [known_class(n) for n in value]

    @property
    def kind(self) -> str:
        return "rename" if self.from_ is not None else "sum" if self.sum is not None else "expr"

    @property
    def source_names(self) -> list[str]:
        """Every vendor counter name this entry reads."""
        if self.from_ is not None:
            return [self.from_, *self.aliases]
        if self.sum is not None:
            return list(self.sum)
        return counter_expr.names(parse_expr(self.expr))

    def overlaps(self, other: CounterSource) -> set[str] | None:
        """The object classes both sources apply to (None: every class), or an empty set."""
        if self.objects is None or other.objects is None:
            return set(other.objects or self.objects or []) or None
        return set(self.objects) & set(other.objects)  # spelt as OBJECT_CLASSES by the validator


class CsvLayout(BaseModel):
    """Columns of a wide vendor CSV export that are not counters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_column: str
    # The timestamps carry no offset; they are read as UTC.
    time_format: str = "%Y-%m-%d %H:%M:%S"
    period_column: str
    period_unit_s: int = Field(default=60, gt=0)
    ne_column: str
    cell_column: str
    delimiter: str = Field(default=",", min_length=1, max_length=1)


# Detect patterns come from workspace files and run on file content, so they run on RE2: time linear
# in the text, never backtracking ('^(a|aa)+$' took 16 s per counter name with Python re).
_RE2 = re2.Options()
_RE2.log_errors = False  # a refused pattern is a dictionary issue, not a line on stderr
_RE2.max_mem = 8 << 20  # bounds the compiled program: a pattern too big to run is refused, not built
MAX_MATCHED_CHARS = 256  # of a counter name or sender: a longer one is matched on its first characters


@functools.lru_cache(maxsize=256)
def detect_regex(pattern: str):
    """The compiled RE2 form of a detect pattern; raises ValueError (one clause) when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _RE2)
    except re2.error as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        shown = pattern if len(pattern) <= 80 else pattern[:60] + "..."
        raise ValueError(f"pattern '{shown}' cannot be used ({reason}): detect patterns are RE2 expressions, "
                         "matched in linear time, without backreferences, lookaround or repeats over 1000") from None


def _runnable(pattern: str) -> str:
    detect_regex(pattern)
    return pattern


DetectPattern = Annotated[str, AfterValidator(_runnable)]


class Detect(BaseModel):
    """How to recognise the vendor's files when they are not under ``pm/<vendor>/``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The fileHeader vendorName (3GPP) or VendorName (PmFile), compared case-insensitively.
    vendor_names: list[str] = []
    # RE2 regular expressions searched in the sender (3GPP fileSender localDn/elementType; PmFile
    # InfoModelReferenced, SenderName, DnPrefix; OMeS the root's version).
    senders: list[DetectPattern] = []
    # An RE2 regular expression most of the file's counter names match (e.g. ^pm[A-Z] for Ericsson).
    counter_pattern: DetectPattern | None = None

    def score(self, sniffed) -> tuple[int, str]:
        """How strongly a file's header (an :class:`~opencem.ingest.vendors.Sniffed`) points
        at this vendor (0: not at all), and the evidence in words. A vendor name in the header
        decides alone: the sender and the counter names are looked at only when it is empty (a
        Samsung file whose counters happen to look like Ericsson's is not Ericsson's)."""
        if sniffed.vendor_name:
            if sniffed.vendor_name.lower() in {v.lower() for v in self.vendor_names}:
                return 3, f"vendorName {sniffed.vendor_name!r}"
            return 0, ""
        sender = sniffed.sender[:MAX_MATCHED_CHARS]
        for pattern in self.senders:
            m = detect_regex(pattern).search(sender) if sender else None
            if m:  # the word of the sender that matched, e.g. 'NanoCell-eNB-PM-V2.5.0'
                start = sender.rfind(" ", 0, m.start() + 1) + 1
                end = sender.find(" ", max(m.end() - 1, start))
                return 2, f"sender '{sender[start:None if end < 0 else end].strip()}'"
        if self.counter_pattern and sniffed.counters:
            regex = detect_regex(self.counter_pattern)
            hits = [c for c in sniffed.counters if regex.search(c[:MAX_MATCHED_CHARS])]
            if len(hits) >= 0.8 * len(sniffed.counters):
                return 1, f"counter names like {hits[0]}"
        return 0, ""


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


Sources = Annotated[list[CounterSource], BeforeValidator(_one_or_many), Field(min_length=1)]


class CounterDictionary(BaseModel):
    """How one vendor's PM data maps onto canonical counters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str
    # The file layout: 3GPP TS 32.435 XML, a wide CSV export, Nokia OMeS XML, or China
    # Mobile's NanoCell PmFile XML.
    format: Literal["xml_32435", "csv", "omes", "nanocell_pmfile"]
    description: str = ""
    detect: Detect | None = None
    csv: CsvLayout | None = None
    # Counters the dictionary does not name are kept under their vendor name (true) or dropped.
    keep_unmapped: bool = True
    counters: dict[str, Sources]

    @model_validator(mode="after")
    def _layout(self) -> CounterDictionary:
        if (self.format == "csv") != (self.csv is not None):
            raise ValueError("'csv' layout is required for format csv and only allowed there")
        return self

    def source_names(self) -> set[str]:
        """All vendor counter names the dictionary reads."""
        return {n for sources in self.counters.values() for s in sources for n in s.source_names}

    def entries(self) -> list[tuple[str, int, CounterSource]]:
        """(canonical name, position in its list, source) for every source."""
        return [(name, i, s) for name, sources in self.counters.items() for i, s in enumerate(sources)]


# --- loading and the rules across entries ---------------------------------------------------------

def load_dictionary(vendor_or_path: str | Path) -> CounterDictionary:
    """Load a counter dictionary by vendor name (bundled file) or from a YAML path.

    Raises :class:`DictionaryError` with one sentence per problem, naming file, line and field.
    """
    path = _resolve(vendor_or_path)
    try:
        root, data = read_yaml(path, KIND)
    except SpecError as err:
        raise DictionaryError(err.issues) from None
    lists = _listed(data)
    names = [Issue(message, kind=KIND, file=path, line=line_of(root, ["counters", name]),
                   field=field_path(["counters", name])) for name, message in _unknown_names(data)]
    try:
        d = CounterDictionary.model_validate(data)
    except ValidationError as exc:
        issues = names + [issue_of(KIND, path, root, _singular(e, lists)) for e in exc.errors()]
        raise DictionaryError(sorted(issues, key=lambda i: (i.line or 0, str(i)))) from None
    problems = _rules(d)
    if problems or names:
        issues = list(names)
        for name, index, message in problems:
            loc = ["counters", name, *([str(index)] if name in lists else [])]
            issues.append(Issue(message, kind=KIND, file=path, line=line_of(root, loc), field=field_path(loc)))
        raise DictionaryError(sorted(issues, key=lambda i: (i.line or 0, str(i))))
    return d


def _unknown_names(data) -> list[tuple[str, str]]:
    """(name, message) for each counter the dictionary would produce that is not canonical: a
    dictionary maps onto the catalogue, it never adds a counter of its own."""
    counters = data.get("counters") if isinstance(data, dict) else None
    if not isinstance(counters, dict):
        return []
    return [(str(name), f"{name!s} is not a canonical counter{suggest(str(name), list(CANONICAL_COUNTERS))}; "
                        "a dictionary maps vendor counters onto the names in src/opencem/schema/counters.py "
                        "(vendor counters it does not name are kept as they are)")
            for name in counters if str(name) not in CANONICAL_COUNTERS]


def _listed(data: dict) -> set[str]:
    """Canonical names whose YAML value is a list of sources (the others are one mapping)."""
    counters = data.get("counters")
    return {str(k) for k, v in counters.items() if isinstance(v, list)} if isinstance(counters, dict) else set()


def _singular(error: dict, lists: set[str]) -> dict:
    """Drop the list position pydantic adds under a canonical counter written as one mapping."""
    loc = list(error["loc"])
    if len(loc) > 2 and loc[0] == "counters" and str(loc[1]) not in lists and loc[2] == 0:
        return {**error, "loc": tuple(loc[:2] + loc[3:])}
    return error


def _rules(d: CounterDictionary) -> list[tuple[str, int, str]]:
    """(canonical name, source position, message) for each rule broken across entries."""
    problems: list[tuple[str, int, str]] = []
    if d.format == "csv":
        problems += [(name, i, "'objects' does not apply to format csv: every row of a CSV export is a cell")
                     for name, i, s in d.entries() if s.objects is not None]
    for name, sources in d.counters.items():
        for j, later in enumerate(sources):
            for i, earlier in enumerate(sources[:j]):
                shared = earlier.overlaps(later)
                if shared is None or shared:
                    where = "every object" if shared is None else ", ".join(sorted(shared)) + " objects"
                    problems.append((name, j, f"sources {i + 1} and {j + 1} both apply to {where}; give each "
                                              "source the object classes it is for (objects: [...])"))
    renamed: dict[str, list[tuple[str, int, CounterSource]]] = {}
    for name, i, s in d.entries():
        if s.kind == "rename":
            for vendor_name in s.source_names:
                for other, _, o in renamed.get(vendor_name, []):
                    shared = o.overlaps(s)
                    if other != name and (shared is None or shared):
                        problems.append((name, i, f"vendor counter {vendor_name!r} is renamed to both {other} and "
                                                  f"{name}; a row takes one name (use sum or expr to feed both)"))
                renamed.setdefault(vendor_name, []).append((name, i, s))
    return problems


def _resolve(vendor_or_path: str | Path) -> Path:
    text = str(vendor_or_path)
    if isinstance(vendor_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(vendor_or_path)
        if not path.is_file():
            raise DictionaryError([f"Counter dictionary file {path} does not exist."])
        return path
    path = DICTIONARY_DIR / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in DICTIONARY_DIR.glob("*.yaml")))
        raise DictionaryError([f"No counter dictionary for vendor {text!r} (bundled: {known})."])
    return path

