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

Per column: exactly one of ``from`` (a source column), ``value`` (a constant), ``option`` (a
value passed at ingest, e.g. ``as_of``) or ``template`` (source columns joined into text).
``from`` takes ``map`` (source text -> canonical value; unlisted values pass through unless
``default`` is given; a ``null`` key maps empty values) or ``scale`` (canonical = source * scale,
for units). Time columns take ``format`` (strptime, e.g. ``"%Y.%m.%d_%H.%M.%S"``, a trailing
``%f`` for fractions, or ``epoch_s`` / ``epoch_ms``) and ``timezone`` (IANA name for times
without an offset; default UTC).

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
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..schema import TABLES

Scalar = bool | int | float | str | None
EPOCH_FORMATS = {"epoch_s": 1000, "epoch_ms": 1}  # -> multiplier to milliseconds


class MappingError(ValueError):
    """A mapping file that cannot be used; ``issues`` holds one sentence per problem."""

    def __init__(self, issues: list[str]):
        self.issues = issues
        super().__init__("\n".join(issues))


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
    # Quoted values may span lines. Off by default: every line is one record, so a stray quote
    # costs one rejected line instead of swallowing the lines after it.
    multiline_values: bool = False


CSV_ONLY = ("delimiter", "quote", "encoding", "header", "columns", "skip_rows", "multiline_values")


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


def load_mapping(path: str | Path) -> Mapping:
    """Load and check a mapping file against the canonical schema.

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
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        issues = [(_loc(e), _message(e)) for e in exc.errors()]
    else:
        issues = check_mapping(mapping)
    if issues:
        found = sorted((line_of(root, loc) or 0, _sentence(path, root, loc, msg)) for loc, msg in issues)
        raise MappingError([sentence for _, sentence in found])
    return mapping


# --- semantic rules: each returns (location, message) issues ------------------------------------

Issue = tuple[list[str], str]


def check_mapping(m: Mapping) -> list[Issue]:
    """Rules that need the canonical schema, all applied, every issue returned."""
    issues = _source_options(m)
    for i, target in enumerate(m.targets):
        at = ["targets", str(i)]
        if target.table not in TABLES or TABLES[target.table].domain == "ops":
            issues.append((at + ["table"], f"unknown table {target.table!r}{_did_you_mean(target.table, _targets())}"))
            continue
        issues += _known_columns(at, target)
        issues += _required_columns(at, target)
        for name, cs in target.columns.items():
            if name in {f.name for f in TABLES[target.table].columns}:
                issues += _fits_column(at + ["columns", name], TABLES[target.table].column(name), cs)
    return issues


def _targets() -> list[str]:
    return [name for name, t in TABLES.items() if t.domain != "ops"]


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _source_options(m: Mapping) -> list[Issue]:
    s, issues = m.source, []
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
    if s.delimiter in "\r\n" or (s.quote is not None and s.quote in "\r\n"):
        issues.append((["source", "delimiter"], "a line break cannot be a delimiter or quote"))
    if not s.header and not s.columns:
        issues.append((["source", "columns"], "name the columns when the file has no header line"))
    return issues


def _known_columns(at: list[str], target: Target) -> list[Issue]:
    names = [f.name for f in TABLES[target.table].columns]
    return [(at + ["columns", c], f"table {target.table} has no column {c!r}{_did_you_mean(c, names)}")
            for c in target.columns if c not in names]


def _required_columns(at: list[str], target: Target) -> list[Issue]:
    return [(at + ["columns"], f"required column {f.name!r} of table {target.table} has no source")
            for f in TABLES[target.table].columns if not f.nullable and f.name not in target.columns]


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
            issues.append((at + ["timezone"], f"unknown time zone {cs.timezone!r} (use an IANA name such as Europe/Paris)"))
    if cs.format is not None and is_time and cs.format not in EPOCH_FORMATS:
        if "%" not in cs.format:
            issues.append((at + ["format"], "a time format needs strptime directives such as %Y, or epoch_s / epoch_ms"))
        elif "%f" in cs.format and not cs.format.endswith("%f"):
            issues.append((at + ["format"], "%f (fractions of a second) is only supported at the end of the format"))
    if cs.template is not None:
        try:
            cs.template_fields()
        except ValueError as exc:
            issues.append((at + ["template"], f"bad template ({exc})"))
        if any(spec or conv for _, _, spec, conv in _safe_parse(cs.template)):
            issues.append((at + ["template"], "template fields take no format spec or conversion"))
    constants = [("value", cs.value)] if cs.kind == "value" else []
    constants += [("map", v) for _, v in (cs.map or {}).items()]
    if "default" in cs.model_fields_set:
        constants.append(("default", cs.default))
    for key, value in constants:
        problem = _convert_problem(value, field, cs)
        if problem:
            issues.append((at + [key], problem))
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
            return f"{text!r} is not a time{' in format ' + repr(cs.format) if cs.format else ' (ISO 8601)'}"
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


def line_of(node: yaml.Node | None, loc: list[str]) -> int | None:
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
