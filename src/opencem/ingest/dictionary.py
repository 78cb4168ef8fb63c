"""Vendor counter dictionaries: user-editable YAML files that map vendor counters to canonical ones.

One file per vendor (``dictionaries/<vendor>.yaml``). Each canonical counter names its source:
``{from: NAME, scale: F}`` (rename, value * F) or ``{sum: [A, B, ...], scale: F}`` (sum of several
vendor counters, then * F). ``scale`` converts the vendor unit into the canonical unit of
:data:`opencem.ingest.counters.CANONICAL_COUNTERS`. Unknown keys are errors, reported all at once
with file, line and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DICTIONARY_DIR = Path(__file__).parent / "dictionaries"


class DictionaryError(ValueError):
    """A counter dictionary file that cannot be used; ``issues`` holds one sentence per problem."""

    def __init__(self, issues: list[str]):
        self.issues = issues
        super().__init__("\n".join(issues))


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


class CounterDictionary(BaseModel):
    """How one vendor's PM data maps onto canonical counters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str
    format: Literal["xml_32435", "csv"]
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
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        issue = f"Counter dictionary {path.name}{where} is not valid YAML: {reason}."
        raise DictionaryError([issue]) from None
    if not isinstance(data, dict):
        raise DictionaryError([f"Counter dictionary {path.name} must be a mapping with vendor, format "
                               "and counters."])
    try:
        return CounterDictionary.model_validate(data)
    except ValidationError as exc:
        issues = sorted((_line_of(root, _loc(e)) or 0, _sentence(path, root, e)) for e in exc.errors())
        raise DictionaryError([sentence for _, sentence in issues]) from None


def apply_dictionary_long(table: pa.Table, dictionary: CounterDictionary) -> pa.Table:
    """Rename, scale and sum vendor counters of a long table (PM_COUNTERS columns) into canonical ones.

    ``sum`` entries add the parts per (object_dn, period_start, granularity_s); a part that is
    missing or null is skipped, the sum is null only when every part is, and suspect if any part is.
    """
    names = table["counter_name"]
    keys = ["object_dn", "cell_id", "period_start", "granularity_s", "vendor"]
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


def _loc(error: dict) -> list[str]:
    return [str(p) for p in error["loc"] if not str(p).startswith("function-after")]


def _sentence(path: Path, root: yaml.Node | None, error: dict) -> str:
    loc = _loc(error)
    field = ".".join(f"[{p}]" if "." in p else p for p in loc).replace(".[", "[") or "(top level)"
    line = _line_of(root, loc)
    where = f" line {line}," if line else ""
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    return f"Counter dictionary {path.name},{where} field {field}: {msg}."


def _line_of(node: yaml.Node | None, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (pydantic aliases match YAML keys)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) in (part, part.rstrip("_"))), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
