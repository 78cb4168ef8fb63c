"""Vendor counter dictionaries: user-editable YAML files that map vendor counters to canonical ones.

One file per vendor (``dictionaries/<vendor>.yaml``). Each canonical counter names its source:
``{from: NAME, scale: F}`` (rename, value * F) or ``{sum: [A, B, ...], scale: F}`` (sum of several
vendor counters, then * F). ``scale`` converts the vendor unit into the canonical unit of
:data:`opencem.schema.counters.CANONICAL_COUNTERS`. Unknown keys are errors, reported all at once
with file, line and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..specfile import SpecError, load_spec

DICTIONARY_DIR = Path(__file__).parent / "dictionaries"


class DictionaryError(SpecError):
    """A counter dictionary file that cannot be used; ``issues`` holds one sentence per problem."""


class CounterSource(BaseModel):
    """Where one canonical counter comes from in the vendor's data."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: str | None = Field(default=None, alias="from")
    sum: list[str] | None = Field(default=None, min_length=1)
    scale: float = 1.0
    # Older software releases sometimes name the same counter differently.
    aliases: list[str] = []

    @model_validator(mode="after")
    def _one_source(self) -> CounterSource:
        if (self.from_ is None) == (self.sum is None):
            raise ValueError("give exactly one of 'from' or 'sum'")
        if self.aliases and self.sum is not None:
            raise ValueError("'aliases' only goes with 'from'")
        return self

    @property
    def source_names(self) -> list[str]:
        """Every vendor counter name this entry reads."""
        return [self.from_, *self.aliases] if self.from_ is not None else list(self.sum or [])


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


class Detect(BaseModel):
    """How to recognise the vendor's files when they are not under ``pm/<vendor>/``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The fileHeader vendorName (3GPP) or VendorName (PmFile), compared case-insensitively.
    vendor_names: list[str] = []
    # Regular expressions searched in the sender (3GPP fileSender localDn/elementType; PmFile
    # InfoModelReferenced, SenderName, DnPrefix).
    senders: list[str] = []
    # A regular expression most of the file's counter names match (e.g. ^pm[A-Z] for Ericsson).
    counter_pattern: str | None = None

    @field_validator("senders")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)
        return value

    @field_validator("counter_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def score(self, sniffed) -> tuple[int, str]:
        """How strongly a file's header (an :class:`~opencem.ingest.vendors.Sniffed`) points
        at this vendor (0: not at all), and the evidence in words."""
        if sniffed.vendor_name and sniffed.vendor_name.lower() in {v.lower() for v in self.vendor_names}:
            return 3, f"vendorName {sniffed.vendor_name!r}"
        for pattern in self.senders:
            if sniffed.sender and re.search(pattern, sniffed.sender):
                return 2, f"sender {sniffed.sender!r}"
        if self.counter_pattern and sniffed.counters:
            hits = [c for c in sniffed.counters if re.search(self.counter_pattern, c)]
            if len(hits) >= 0.8 * len(sniffed.counters):
                return 1, f"counter names like {hits[0]}"
        return 0, ""


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
    counters: dict[str, CounterSource]

    @model_validator(mode="after")
    def _consistent(self) -> CounterDictionary:
        if (self.format == "csv") != (self.csv is not None):
            raise ValueError("'csv' layout is required for format csv and only allowed there")
        seen: dict[str, str] = {}
        for canonical, source in self.counters.items():
            for name in source.source_names:
                if name in seen and seen[name] != canonical:
                    raise ValueError(f"vendor counter {name!r} feeds both {seen[name]} and {canonical}")
                seen[name] = canonical
        return self

    def source_names(self) -> set[str]:
        """All vendor counter names the dictionary reads."""
        return {n for s in self.counters.values() for n in s.source_names}


def load_dictionary(vendor_or_path: str | Path) -> CounterDictionary:
    """Load a counter dictionary by vendor name (bundled file) or from a YAML path.

    Raises :class:`DictionaryError` with one sentence per problem, naming file, line and field.
    """
    path = _resolve(vendor_or_path)
    try:
        return load_spec(path, CounterDictionary, "Counter dictionary")
    except SpecError as err:
        raise DictionaryError(err.issues) from None


def apply_dictionary_long(table: pa.Table, dictionary: CounterDictionary) -> pa.Table:
    """Rename, scale and sum vendor counters of a long table (PM_COUNTERS columns) into canonical ones.

    ``sum`` entries add the parts per (object_dn, period_start, granularity_s); a part that is
    missing or null is skipped, the sum is null only when every part is, and suspect if any part is.
    """
    names = table["counter_name"]
    keys = ["object_dn", "managed_element", "cell_id", "period_start", "granularity_s", "vendor"]
    pieces = []
    rename_from, rename_to, scales = [], [], []
    for canonical, source in dictionary.counters.items():
        if source.sum is None:
            rename_from += source.source_names
            rename_to += [canonical] * len(source.source_names)
            scales += [source.scale] * len(source.source_names)
            continue
        parts = table.filter(pc.is_in(names, value_set=pa.array(source.sum, pa.string())))
        if parts.num_rows == 0:
            continue
        summed = parts.group_by(keys, use_threads=False).aggregate([("value", "sum"), ("suspect", "any")])
        columns = {k: summed[k] for k in keys}
        columns["counter_name"] = pa.nulls(summed.num_rows, pa.string()).fill_null(canonical)
        columns["value"] = pc.multiply(summed["value_sum"], source.scale)
        columns["suspect"] = summed["suspect_any"]
        pieces.append(pa.table(columns).select(table.column_names))
    index = pc.index_in(names, value_set=pa.array(rename_from, pa.string()))
    found = pc.is_valid(index)
    mapped, index = table.filter(found), index.filter(found)
    mapped = (mapped.set_column(mapped.column_names.index("counter_name"), "counter_name",
                                pa.array(rename_to, pa.string()).take(index))
              .set_column(mapped.column_names.index("value"), "value",
                          pc.multiply(mapped["value"], pa.array(scales, pa.float64()).take(index))))
    pieces.insert(0, mapped)
    if dictionary.keep_unmapped:
        used = pa.array(sorted(dictionary.source_names()), pa.string())
        pieces.append(table.filter(pc.invert(pc.is_in(names, value_set=used))))
    return pa.concat_tables([p.cast(table.schema) for p in pieces])


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
