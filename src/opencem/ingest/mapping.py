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
"""

from __future__ import annotations

import codecs
import difflib
import re
import string
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..schema import TABLES, TIMESTAMP, Table
from ..specfile import SpecError, line_of
from .validate import IngestError

Scalar = bool | int | float | str | None
EPOCH_FORMATS = {"epoch_s": 1000, "epoch_ms": 1}  # -> multiplier to milliseconds


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


def text_of(value: Scalar) -> str | None:
    """The canonical text of a YAML scalar, as ingest casts it (``true``, ``12``, ``0.5``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError([f"Mapping {path} cannot be read ({exc})."]) from None
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise MappingError([f"Mapping {path.name}{where} is not valid YAML: {reason}."]) from None
    if not isinstance(data, dict):
        raise MappingError([f"Mapping {path.name} must be a YAML mapping with source and targets."])
    issues = semantic_issues(data, tables)
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        issues += [(_loc(e), _message(e)) for e in exc.errors()]
    if issues:
        found = sorted({(line_of(root, loc) or 0, _sentence(path, root, loc, msg)) for loc, msg in issues})
        raise MappingError([sentence for _, sentence in found])
    return mapping


# --- semantic rules: each returns (location, message) issues ------------------------------------

Issue = tuple[list[str], str]


def check_mapping(m: Mapping, tables: dict[str, Table] | None = None) -> None:
    """The schema rules for a mapping built in code; raises :class:`MappingError`."""
    issues = semantic_issues(m.model_dump(by_alias=True, exclude_unset=True), tables)
    if issues:
        raise MappingError([f"Mapping, field {'.'.join(loc)}: {msg}." for loc, msg in issues])


def semantic_issues(data: dict, tables: dict[str, Table] | None = None) -> list[Issue]:
    """Apply every rule to each part of ``data`` that is well-formed on its own, so one run
    reports schema problems alongside the shape problems pydantic finds elsewhere."""
    tables = TABLES if tables is None else tables
    issues: list[Issue] = []
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
                   columns: dict[str, ColumnSource | None]) -> list[Issue]:
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
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _source_options(s: Source) -> list[Issue]:
    issues: list[Issue] = []
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


def _fits_column(at: list[str], field: pa.Field, cs: ColumnSource) -> list[Issue]:
    """Options suit the column's type and constants convert to it."""
    issues: list[Issue] = []
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


def _sentence(path: Path, root: yaml.Node | None, loc: list[str], msg: str) -> str:
    field = ".".join(p.replace("from_", "from").replace("in_", "in") if p in ("from_", "in_") else p
                     for p in loc) or "(top level)"
    line = line_of(root, loc)
    where = f" line {line}," if line else ""
    return f"Mapping {path.name},{where} field {field}: {msg.rstrip('.')}."


# --- applying a target to source columns --------------------------------------------------------

_ISO = (r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
        r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)?$")
_ZONED = r"[T ]\d{2}:\d{2}.*(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_NUMBER = r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)$"


@dataclass
class BadValues:
    """Values of one canonical column that do not convert, at ``rows`` of the selected rows."""

    column: str
    rows: np.ndarray
    values: list[str | None]
    reasons: list[str]


@dataclass
class Applied:
    keep: np.ndarray | None  # source rows the target's ``where`` selects (None: all)
    data: pa.Table  # the target's columns for the selected rows, named as the table's
    bad: list[BadValues]  # the first bad value of each failing row
    failed: np.ndarray  # per selected row: has a bad value


def apply_target(target: Target, spec: Table, table: pa.Table, options: dict, source: str,
                 decimal: str = ".") -> Applied:
    """Select the rows ``target.where`` keeps and build the columns of ``spec`` (the target's
    table) from ``table`` (source columns by source name). Times are converted to UTC here; other columns are left
    for validation to cast. Raises :class:`IngestError` naming ``source`` when an option is
    missing or no value of a column converts (the mapping, not the records, is wrong)."""
    keep = _where(target, table)
    if keep is not None:
        table = table.filter(pa.array(keep))
    columns, bad, failed = {}, [], np.zeros(table.num_rows, bool)
    for name, cs in target.columns.items():
        values, wrong, reason, shown = _column_values(source, target, name, cs, spec.column(name),
                                                      table, options, decimal)
        columns[name] = values
        if wrong is not None and (wrong & ~failed).any():
            rows = np.flatnonzero(wrong & ~failed)
            texts = pc.cast(shown.take(pa.array(rows)), pa.string()).to_pylist()
            bad.append(BadValues(name, rows, texts, [reason.format(value=v) for v in texts]))
            failed |= wrong
    data = pa.table({f.name: columns[f.name] for f in spec.columns if f.name in columns})
    return Applied(keep, data, bad, failed)


def _where(target: Target, table: pa.Table) -> np.ndarray | None:
    keep = None
    for cond in target.where:
        text = _as_text(table[cond.column])
        values, keep_on_match = cond.values_text()
        match = pc.is_in(text, value_set=pa.array([v for v in values if v is not None], pa.string()))
        if None in values:
            match = pc.or_(match, pc.is_null(text))
        match = match.fill_null(False).to_numpy(zero_copy_only=False)
        test = match if keep_on_match else ~match
        keep = test if keep is None else keep & test
    return keep


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _column_values(source: str, target: Target, name: str, cs: ColumnSource, field: pa.Field,
                   table: pa.Table, options: dict, decimal: str):
    """(values, rows with bad values or None, reason with {value}, values to show for them)."""
    n = table.num_rows
    is_time = pa.types.is_timestamp(field.type)
    if cs.kind in ("value", "option"):
        value = cs.value if cs.kind == "value" else _option(source, target, name, cs, options)
        if value is None:
            return pa.nulls(n, field.type), None, "", None
        if not is_time:
            text = value if isinstance(value, str) else text_of(value) \
                if isinstance(value, bool | int | float) else str(value)
            return pa.repeat(pa.scalar(text, pa.string()), n), None, "", None
        stamp = times(pa.array([value if isinstance(value, datetime | date) else str(value)]),
                      cs.format, cs.timezone)[0][0]
        if not stamp.is_valid:
            raise IngestError(f"{source}: {target.table}.{name} gets {value!r}, which is not a time")
        return pa.repeat(stamp, n), None, "", None
    if cs.kind == "template":
        parts: list = []
        for literal, fname, _, _ in string.Formatter().parse(cs.template or ""):
            if literal:
                parts.append(literal)
            if fname is not None:
                parts.append(_as_text(table[fname]))
        values = (pc.binary_join_element_wise(*parts, "") if any(not isinstance(p, str) for p in parts)
                  else pa.repeat(pa.scalar("".join(parts)), n))
    else:
        values = table[cs.from_]
    numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
    if decimal != "." and (numeric or cs.scale is not None) and pa.types.is_string(values.type):
        values = pc.replace_substring(values, decimal, ".")
    if cs.map is not None:
        return _map(values, cs), None, "", None
    if cs.scale is not None:
        numbers, wrong = _numbers(values)
        scaled = pc.multiply(numbers, cs.scale)
        _all_bad(source, cs, wrong, values, "a number")
        return (pc.round(scaled) if pa.types.is_integer(field.type) else scaled), wrong, \
            "{value!r} is not a number", values
    if is_time:
        stamps, wrong = times(values, cs.format, cs.timezone)
        expected = f"a time in format {cs.format!r}" if cs.format else "an ISO 8601 time"
        _all_bad(source, cs, wrong, values, expected)
        return stamps, wrong, "{value!r} is not " + expected, values
    return values, None, "", None


def _option(source: str, target: Target, name: str, cs: ColumnSource, options: dict):
    if options.get(cs.option) is None:
        raise IngestError(f"{source}: the mapping fills {target.table}.{name} from option "
                          f"{cs.option!r}, which was not given")
    return options[cs.option]


def _all_bad(source: str, cs: ColumnSource, wrong: np.ndarray, values, expected: str) -> None:
    """No value of a column converting means the mapping is wrong, not the records."""
    if not wrong.any():
        return
    text = _as_text(values)
    filled = pc.and_(pc.is_valid(text), pc.not_equal(text, "")).fill_null(False)
    if int(wrong.sum()) == int(pc.sum(filled).as_py() or 0):
        first = text.filter(pa.array(wrong))[0].as_py()
        what = f"column {cs.from_!r}" if cs.from_ else f"template {cs.template!r}"
        raise IngestError(f"{source}: no value of {what} is {expected} (first: {first!r})")


def _map(values, cs: ColumnSource) -> pa.Array:
    """Source text -> canonical text; unlisted values pass through (validation judges them)
    unless a ``default`` is given."""
    text = _as_text(values)
    keys, mapped = cs.map_text()
    pairs = [(k, v) for k, v in zip(keys, mapped) if k is not None]
    index = pc.index_in(text, value_set=pa.array([k for k, _ in pairs], pa.string()))
    found = pa.array([v for _, v in pairs], pa.string()).take(index)
    other = pa.scalar(text_of(cs.default), pa.string()) if "default" in cs.model_fields_set else text
    out = pc.if_else(pc.is_valid(index), found, other)
    if None in keys:
        out = pc.if_else(pc.is_null(text), pa.scalar(mapped[keys.index(None)], pa.string()), out)
    return out


def _numeric(*types: pa.DataType) -> bool:
    return all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)


def _numbers(values) -> tuple[pa.Array, np.ndarray]:
    """Values as float64, and which non-empty values are not numbers."""
    if _numeric(values.type) or pa.types.is_boolean(values.type):
        return pc.cast(values, pa.float64()), np.zeros(len(values), bool)
    text = pc.utf8_trim_whitespace(_as_text(values))
    ok = pc.match_substring_regex(text, _NUMBER).fill_null(False)
    wrong = pc.and_(pc.invert(ok), pc.not_equal(text, "")).fill_null(False).to_numpy(zero_copy_only=False)
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64()), wrong


def times(values, fmt: str | None = None, tz: str | None = None) -> tuple[pa.Array, np.ndarray]:
    """Values as UTC times (timestamp ms), and which non-empty values are not times.

    Text is ISO 8601 unless ``fmt`` (strptime, trailing ``%f`` allowed, or ``epoch_s`` /
    ``epoch_ms``) says otherwise; times without an offset are in ``tz`` (UTC when None).
    """
    zone = tz or "UTC"
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kind, n = values.type, len(values)
    if pa.types.is_timestamp(kind):
        return _localise(values, zone).cast(TIMESTAMP, safe=False), np.zeros(n, bool)
    if pa.types.is_date(kind):
        return _localise(values.cast(pa.timestamp("ms")), zone).cast(TIMESTAMP), np.zeros(n, bool)
    if fmt is None and _numeric(kind):  # a number with no format says nothing about its unit
        return pa.nulls(n, TIMESTAMP), pc.is_valid(values).to_numpy(zero_copy_only=False)
    if fmt in EPOCH_FORMATS:
        numbers, wrong = _numbers(values)
        ms = pc.round(pc.multiply(numbers, float(EPOCH_FORMATS[fmt])))
        fits = pc.less(pc.abs(ms), 1e16).fill_null(False)  # finite and within Arrow's range
        wrong |= pc.and_(pc.invert(fits), pc.is_valid(ms)).fill_null(False).to_numpy(zero_copy_only=False)
        ms = pc.if_else(fits, ms, pa.scalar(None, pa.float64()))
        return pc.cast(ms, pa.int64()).cast(TIMESTAMP), wrong
    text = pc.utf8_trim_whitespace(_as_text(values))
    empty = pc.or_(pc.is_null(text), pc.equal(text, "")).fill_null(True)
    if fmt:
        stamps = _strptime(text, fmt)
        stamps = _localise(stamps, zone).cast(TIMESTAMP)
    else:
        stamps = _iso_times(text, zone)
    return stamps, pc.and_(pc.is_null(stamps), pc.invert(empty)).to_numpy(zero_copy_only=False)


def _localise(stamps: pa.Array, zone: str) -> pa.Array:
    if stamps.type.tz is not None:
        return stamps
    if zone == "UTC":
        return stamps.cast(pa.timestamp(stamps.type.unit, tz="UTC"))
    # Times in a DST gap move past it; times in the repeated hour take the first one.
    return pc.assume_timezone(stamps, zone, ambiguous="earliest", nonexistent="latest")


def _strptime(text: pa.Array, fmt: str) -> pa.Array:
    """strptime to ms; a trailing ``%f`` takes 1-9 digits and may be left out with its separator."""
    if not fmt.endswith("%f"):
        return pc.strptime(text, format=fmt, unit="ms", error_is_null=True)
    parts = pc.extract_regex(text, r"^(?P<base>.*?)(?P<frac>\d{1,9})$")
    base = pc.strptime(pc.struct_field(parts, [0]), format=fmt[:-2], unit="ms", error_is_null=True)
    ms = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.struct_field(parts, [1]), 3, "0"), 0, 3)
    with_fraction = pc.add(base, pc.cast(pc.cast(ms, pa.int64()), pa.duration("ms")))
    whole = pc.strptime(text, format=fmt[:-2].rstrip(".,"), unit="ms", error_is_null=True)
    return pc.coalesce(with_fraction, whole)


def _iso_times(text: pa.Array, zone: str) -> pa.Array:
    """ISO 8601 text as UTC times; values that do not parse become null."""
    text = pc.replace_substring_regex(text, r"(\.\d{3})\d+", r"\1")  # ms precision
    shaped = pc.match_substring_regex(text, _ISO).fill_null(False)
    zoned = pc.and_(shaped, pc.match_substring_regex(text, _ZONED).fill_null(False))
    null_text = pa.scalar(None, pa.string())
    out = pa.nulls(len(text), TIMESTAMP)
    for mask, kind in ((zoned, TIMESTAMP), (pc.and_(shaped, pc.invert(zoned)), pa.timestamp("ms"))):
        if not pc.any(mask).as_py():
            continue
        subset = pc.if_else(mask, text, null_text)
        wrong = values_failing(subset, lambda a, k=kind: pc.cast(a, k))
        if wrong.any():  # shaped like ISO 8601 but not a date, e.g. month 13
            subset = pc.if_else(pa.array(wrong), null_text, subset)
        out = pc.if_else(mask, _localise(pc.cast(subset, kind), zone).cast(TIMESTAMP), out)
    return out


def values_failing(values: pa.Array, convert) -> np.ndarray:
    """Per value: ``convert`` raises on it. Converts whole slices, halving only those that fail."""
    bad = np.zeros(len(values), bool)
    todo = [(0, len(values))]
    while todo:
        lo, hi = todo.pop()
        if hi <= lo:
            continue
        try:
            convert(values.slice(lo, hi - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                bad[lo] = True
            else:
                mid = (lo + hi) // 2
                todo += [(lo, mid), (mid, hi)]
    return bad
