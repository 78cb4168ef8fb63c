"""Column mapping files: user-written YAML saying how a source file's columns become canonical tables.

A mapping names the source format and its options, then one or more targets. Each target is a
canonical table, an optional row filter, and a source per canonical column::

    source: {format: csv, delimiter: ";", null_values: ["", "NULL"]}
    targets:
      - table: churn_events
        where: {column: Churn, equals: "Yes"}      # one file can feed several tables
        columns:
          subscriber_id: customerID                 # shorthand for {from: customerID}
          churned_at: {option: as_of}               # a value given at ingest time
          churn_type: {value: voluntary}            # a constant
          stated_reason: {from: Reason, map: {Price: price, Network: network_quality}}
          ported_to: {template: "{Operator}-{Country}"}

``source``: ``format`` is csv, jsonl or parquet. CSV options: ``delimiter`` (default ``,``),
``quote`` (``"``; null for none), ``encoding`` (utf-8; any Python codec name), ``null_values``
(texts that mean no value; default ``[""]``), ``header`` (true), ``columns`` (names for a file
without a header line, or to rename every column), ``skip_rows`` (lines before the header),
``decimal`` (``.`` or ``,``) and ``multiline_values`` (false: every line is one record).

``where``: one test or a list (all must hold) of ``{column, equals | not_equals | in |
not_in}``, comparing the source text. Per column: exactly one of ``from`` (a source column),
``value`` (a constant), ``option`` (a value passed at ingest: ``{option: as_of}`` takes the
``--as-of`` date) or ``template`` (source columns joined into text, ``"{a}-{b}"``).
``from`` takes ``map`` (source text -> canonical value; unlisted values pass through unless
``default`` is given; a ``null`` key maps empty values) or ``scale`` (canonical = source * scale,
for units). Time columns take ``format`` (strptime, e.g. ``"%Y.%m.%d_%H.%M.%S"``, a trailing
``%f`` for fractions, or ``epoch_s`` / ``epoch_ms``; default ISO 8601) and ``timezone`` (IANA
name for times without an offset; default UTC). Other values are cast by validation.

Validated in layers like the counter dictionaries: YAML syntax, the typed model (unknown keys
are errors), then rules that need the canonical schema. Every problem is reported at once,
one sentence each with file, line and field. YAML 1.2 booleans: only ``true``/``false`` are
booleans, so ``Yes``/``No``/``on`` stay text as they are in most source files.

Applying a mapping to source columns (filters, value maps, scales, times) is
:mod:`opencem.ingest.mapping_apply`, kept apart so this module is the file format and its checks
(mapping_apply imports this module, never the other way round).
"""

from __future__ import annotations

import codecs
import re
import string
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import suggest
from ..schema import TABLES, Table
from ..specfile import Issue, SpecError, line_of, read_yaml

Scalar = bool | int | float | str | None
EPOCH_FORMATS = {"epoch_s": 1000, "epoch_ms": 1}  # -> multiplier to milliseconds


def text_of(value: Scalar) -> str | None:
    """The canonical text of a YAML scalar, as ingest casts it (``true``, ``12``, ``0.5``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class MappingError(SpecError):
    """A mapping file that cannot be used; ``issues`` holds one sentence per problem."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, so source values such as ``Yes`` and ``No`` stay text."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class Condition(BaseModel):
    """One test on a source column; a row is kept when every test of ``where`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    column: str
    equals: Scalar = None
    not_equals: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [k for k in ("equals", "not_equals", "in_", "not_in") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of 'equals', 'not_equals', 'in' or 'not_in'")
        return self

    def values_text(self) -> tuple[list[str | None], bool]:
        """(source texts compared against, whether a match keeps the row)."""
        if "equals" in self.model_fields_set:
            return [text_of(self.equals)], True
        if "not_equals" in self.model_fields_set:
            return [text_of(self.not_equals)], False
        if self.in_ is not None:
            return [text_of(v) for v in self.in_], True
        return [text_of(v) for v in self.not_in or []], False


class ColumnSource(BaseModel):
    """Where one canonical column's values come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    value: Scalar = None
    option: str | None = None
    template: str | None = None
    map: dict[Any, Scalar] | None = None
    default: Scalar = None
    scale: float | None = None
    format: str | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSource:
        kinds = [k for k in ("from_", "value", "option", "template") if k in self.model_fields_set]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'from', 'value', 'option' or 'template'")
        if (self.map is not None or self.scale is not None) and self.from_ is None:
            raise ValueError("'map' and 'scale' only go with 'from'")
        if self.map is not None and self.scale is not None:
            raise ValueError("give 'map' or 'scale', not both")
        if "default" in self.model_fields_set and self.map is None:
            raise ValueError("'default' only goes with 'map'")
        if any(isinstance(k, list | dict) for k in self.map or {}):
            raise ValueError("'map' keys must be single source values")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("from", "value", "option", "template")
                    if (k + "_" if k == "from" else k) in self.model_fields_set)

    def map_text(self) -> tuple[list[str | None], list[str | None]]:
        """The value map as (source texts, canonical texts)."""
        pairs = list((self.map or {}).items())
        return [text_of(k) for k, _ in pairs], [text_of(v) for _, v in pairs]

    def template_fields(self) -> list[str]:
        """Source columns named in ``template`` (raises ValueError on bad syntax)."""
        return [name for _, name, _, _ in string.Formatter().parse(self.template or "")
                if name is not None]

    def source_columns(self) -> list[str]:
        if self.from_ is not None:
            return [self.from_]
        return self.template_fields() if self.template is not None else []


def _shorthand(value: Any) -> Any:
    """``subscriber_id: customerID`` means ``subscriber_id: {from: customerID}``."""
    return {"from": value} if isinstance(value, str) else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class Target(BaseModel):
    """Rows for one canonical table: an optional row filter and a source per column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    where: Annotated[list[Condition], BeforeValidator(_one_or_many)] = []
    columns: dict[str, Annotated[ColumnSource, BeforeValidator(_shorthand)]] = Field(min_length=1)


class Source(BaseModel):
    """The source file's format; the CSV options only apply to ``format: csv``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["csv", "jsonl", "parquet"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str | None = Field(default='"', min_length=1, max_length=1)  # null: no quoting
    encoding: str = "utf-8"
    null_values: list[str] = [""]
    header: bool = True
    columns: list[str] | None = None  # column names when the file has no header line
    skip_rows: int = Field(default=0, ge=0)  # lines before the header (titles, export banners)
    decimal: Literal[".", ","] = "."  # decimal separator of numbers
    # Quoted values may span lines. Off by default: every line is one record, so a stray quote
    # costs one rejected line instead of swallowing the lines after it.
    multiline_values: bool = False


CSV_ONLY = ("delimiter", "quote", "encoding", "header", "columns", "skip_rows", "decimal",
            "multiline_values")


class Mapping(BaseModel):
    """How one kind of source file maps onto canonical tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    source: Source
    targets: list[Target] = Field(min_length=1)

    def source_columns(self) -> list[str]:
        """Every source column the mapping reads, in first-use order."""
        names: dict[str, None] = {}
        for t in self.targets:
            for c in t.where:
                names[c.column] = None
            for cs in t.columns.values():
                for name in cs.source_columns():
                    names[name] = None
        return list(names)


def load_mapping(path: str | Path, tables: dict[str, Table] | None = None) -> Mapping:
    """Load and check a mapping file against the canonical tables (or ``tables``, e.g. a
    workspace's, which may add its own).

    Raises :class:`MappingError` with one sentence per problem, naming file, line and field.
    """
    path = Path(path)
    try:
        root, data = read_yaml(path, "Mapping", _Loader, expects="with source and targets")
    except SpecError as err:
        raise MappingError(err.issues) from None
    issues = semantic_issues(data, tables)
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        issues += [(_loc(e), _message(e)) for e in exc.errors()]
    if issues:
        found = {_issue(path, root, loc, msg) for loc, msg in issues}
        raise MappingError(sorted(found, key=lambda i: (i.line or 0, str(i))))
    return mapping


# --- semantic rules: each returns (location, message) issues ------------------------------------

Problem = tuple[list[str], str]  # (location in the file, message)


def check_mapping(m: Mapping, tables: dict[str, Table] | None = None) -> None:
    """The schema rules for a mapping built in code; raises :class:`MappingError`."""
    issues = semantic_issues(m.model_dump(by_alias=True, exclude_unset=True), tables)
    if issues:
        raise MappingError([Issue(msg, kind="Mapping", field=".".join(loc)) for loc, msg in issues])


def semantic_issues(data: dict, tables: dict[str, Table] | None = None) -> list[Problem]:
    """Apply every rule to each part of ``data`` that is well-formed on its own, so one run
    reports schema problems alongside the shape problems pydantic finds elsewhere."""
    tables = TABLES if tables is None else tables
    issues: list[Problem] = []
    try:
        issues += _source_options(Source.model_validate(data.get("source")))
    except ValidationError:
        pass
    targets = data.get("targets")
    for i, target in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(target, dict) or not isinstance(target.get("table"), str):
            continue
        columns = target.get("columns") if isinstance(target.get("columns"), dict) else {}
        issues += _target_issues(["targets", str(i)], target["table"], tables,
                                 {str(name): _column_or_none(v) for name, v in columns.items()})
    return issues


def _column_or_none(value: Any) -> ColumnSource | None:
    try:
        return ColumnSource.model_validate(_shorthand(value))
    except ValidationError:
        return None


def _target_issues(at: list[str], table: str, tables: dict[str, Table],
                   columns: dict[str, ColumnSource | None]) -> list[Problem]:
    targets = [name for name, t in tables.items() if t.domain != "ops"]  # opencem writes ops tables
    if table not in targets:
        return [(at + ["table"], f"unknown table {table!r}{_did_you_mean(table, targets)}")]
    spec = tables[table]
    names = [f.name for f in spec.columns]
    issues = [(at + ["columns", c], f"table {table} has no column {c!r}{_did_you_mean(c, names)}")
              for c in columns if c not in names]
    if columns:
        issues += [(at + ["columns"], f"required column {f.name!r} of table {table} has no source")
                   for f in spec.columns if not f.nullable and f.name not in columns]
    for name, cs in columns.items():
        if cs is not None and name in names:
            issues += _fits_column(at + ["columns", name], spec.column(name), cs)
    return issues


def _did_you_mean(word: str, choices: list[str]) -> str:
    return suggest(word, choices, quote=True)


def _source_options(s: Source) -> list[Problem]:
    issues: list[Problem] = []
    if s.format != "csv":
        issues += [(["source", k], f"only applies to format csv, not {s.format}")
                   for k in CSV_ONLY if k in s.model_fields_set]
        return issues
    try:
        codecs.lookup(s.encoding)
    except LookupError:
        issues.append((["source", "encoding"], f"unknown encoding {s.encoding!r}"))
    if s.quote is not None and s.quote == s.delimiter:
        issues.append((["source", "quote"], "the quote character must differ from the delimiter"))
    if s.decimal == s.delimiter:
        issues.append((["source", "decimal"], "the decimal separator must differ from the delimiter"))
    if s.delimiter in "\r\n" or (s.quote is not None and s.quote in "\r\n"):
        issues.append((["source", "delimiter"], "a line break cannot be a delimiter or quote"))
    if not s.header and not s.columns:
        issues.append((["source", "columns"], "name the columns when the file has no header line"))
    return issues


def _fits_column(at: list[str], field: pa.Field, cs: ColumnSource) -> list[Problem]:
    """Options suit the column's type and constants convert to it."""
    issues: list[Problem] = []
    kind = field.type
    is_time = pa.types.is_timestamp(kind)
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if cs.scale is not None and not numeric:
        issues.append((at + ["scale"], f"{field.name} is {kind}, not a number"))
    for key in ("format", "timezone"):
        if getattr(cs, key) is not None and not is_time:
            issues.append((at + [key], f"{field.name} is {kind}, not a time"))
    if cs.timezone is not None and is_time:
        try:
            ZoneInfo(cs.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            issues.append((at + ["timezone"], f"unknown time zone {cs.timezone!r} "
                                              "(use an IANA name such as Europe/Paris)"))
    if cs.format is not None and is_time and cs.format not in EPOCH_FORMATS:
        if "%" not in cs.format:
            issues.append((at + ["format"], "a time format needs strptime directives such as %Y, "
                                            "or epoch_s / epoch_ms"))
        elif "%f" in cs.format and not cs.format.endswith("%f"):
            issues.append((at + ["format"], "%f (fractions of a second) is only supported at the end "
                                            "of the format"))
    if cs.template is not None:
        try:
            cs.template_fields()
        except ValueError as exc:
            issues.append((at + ["template"], f"bad template ({exc})"))
        if any(spec or conv for _, _, spec, conv in _safe_parse(cs.template)):
            issues.append((at + ["template"], "template fields take no format spec or conversion"))
    constants = [(["value"], cs.value)] if cs.kind == "value" else []
    constants += [(["map", str(k)], v) for k, v in (cs.map or {}).items()]
    if "default" in cs.model_fields_set:
        constants.append((["default"], cs.default))
    for where, value in constants:
        problem = _convert_problem(value, field, cs)
        if problem:
            issues.append((at + where, problem))
    return issues


def _safe_parse(template: str) -> list[tuple]:
    try:
        return list(string.Formatter().parse(template))
    except ValueError:
        return []


def _convert_problem(value: Scalar, field: pa.Field, cs: ColumnSource) -> str | None:
    """Why a constant cannot become a value of ``field``, or None."""
    text = text_of(value)
    if text is None or pa.types.is_string(field.type):
        return None
    if pa.types.is_timestamp(field.type):
        try:
            if cs.format and cs.format not in EPOCH_FORMATS:
                datetime.strptime(text, cs.format)
            elif cs.format:
                float(text)
            else:
                datetime.fromisoformat(text)
            return None
        except ValueError:
            return f"{text!r} is not a time " + (f"in format {cs.format!r}" if cs.format else "(ISO 8601)")
    try:
        pc.cast(pa.array([text]), field.type)
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return f"{text!r} is not a valid {field.type} for {field.name}"


# --- messages ---------------------------------------------------------------------------------

def _loc(error: dict) -> list[str]:
    # Drop pydantic's internal steps (validator names, union members) from the location.
    return [str(p) for p in error["loc"] if not str(p).startswith("function-")]


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check the spelling)"
    return error["msg"].removeprefix("Value error, ")


def _issue(path: Path, root: yaml.Node | None, loc: list[str], msg: str) -> Issue:
    field = ".".join(p.replace("from_", "from").replace("in_", "in") if p in ("from_", "in_") else p
                     for p in loc) or "(top level)"
    return Issue(msg.rstrip("."), kind="Mapping", file=path, line=line_of(root, loc), field=field)
