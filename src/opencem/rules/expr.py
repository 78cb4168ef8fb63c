"""Rule expressions (layer 3 of a rule file): parsed, checked against the cubes and tables
the catalog defines, and turned into a :class:`Query` the evaluator renders as DuckDB SQL.

Four kinds, told apart by their form:

- threshold: a condition over one cube's columns, each written ``<cube table>.<column>``:
  ``cube_cell_15min.stall_ratio_pct > 3 and cube_cell_15min.records_xdr_video >= 20``;
- anomaly: ``anomaly(<cube>.<column>)`` is the robust score of the column against the object's
  own baseline at that hour of the week, positive when worse (by the indicator's ``better``):
  ``anomaly(cube_cell_15min.stall_ratio_pct) > 4 and cube_cell_15min.records_xdr_video >= 20``;
- per-key count in a sliding window, PromQL-shaped:
  ``count_over_time(xdr_voice[60m] where dropped) by (subscriber_id) >= 3``;
- burst: ``burst(complaints[1h]) by (city) > 4``, the robust score of an area's count over
  the last hour against its counts over the last seven days.

The first comparison's left side is the rule's value (``$value``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from .spec import parse_duration

COMPARISONS = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)
ALLOWED = (exp.And, exp.Or, exp.Not, exp.Paren, exp.Column, exp.Identifier, exp.Literal, exp.Boolean,
           exp.Null, exp.Like, exp.ILike, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Is, exp.In, exp.Tuple, *COMPARISONS)
COUNT_RE = re.compile(
    r"^\s*(?P<fn>count_over_time|burst)\s*\(\s*(?P<table>[a-z_][a-z0-9_]*)\s*\[\s*(?P<range>[0-9dhms]+)\s*\]"
    r"(?:\s+where\s+(?P<filter>.+?))?\s*\)\s*(?:by\s*\(\s*(?P<by>[a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*)\s*\))?"
    r"\s*(?P<op>>=|>)\s*(?P<threshold>[0-9]+(?:\.[0-9]+)?)\s*$", re.IGNORECASE | re.DOTALL)
TOPOLOGY = ("site_id", "city", "province")  # reached from a cell_id through the cells inventory
BURST_MIN_EVENTS = 3  # fewer events than this in the range is no burst, however quiet the area is


class ExprError(ValueError):
    """An expression that cannot be used, in one sentence (the caller adds file and line)."""


@dataclass(frozen=True)
class CubeQuery:
    """A threshold or anomaly rule over one cube."""

    kind: str                    # threshold | anomaly
    cube: str                    # cube table, e.g. cube_cell_15min
    condition: exp.Expression    # columns unqualified, anomaly(x) as a column named _anomaly_<x>
    value: exp.Expression        # the rule's value, same form
    dimensions: tuple[str, ...]  # the cube's object columns
    anomaly_of: tuple[str, ...] = ()  # columns whose anomaly score the condition reads
    columns: tuple[str, ...] = ()     # cube columns the expression reads


@dataclass(frozen=True)
class CountQuery:
    """A per-key count in a sliding event-time window, or an area's burst of records."""

    kind: str                      # count | burst
    table: str
    range_s: int
    filter: exp.Expression | None
    by: tuple[str, ...]
    inclusive: bool                # >= (True) or >
    threshold: float
    columns: tuple[str, ...] = field(default=())

    @property
    def min_count(self) -> int:
        """A count rule fires at this many records (``> 2`` is ``>= 3``)."""
        import math

        return int(math.floor(self.threshold) + 1) if not self.inclusive else int(math.ceil(self.threshold))


Query = CubeQuery | CountQuery


def parse_rule_expr(text: str, cubes: dict[str, tuple[tuple[str, ...], dict[str, str]]],
                    tables: dict[str, dict[str, str]]) -> Query:
    """The query of ``text``. ``cubes`` maps each cube table to (its dimensions, its columns
    with types); ``tables`` maps each record table to its columns with types."""
    m = COUNT_RE.match(text)
    if m:
        return _count_query(m, tables)
    if re.match(r"^\s*(count_over_time|burst)\s*\(", text, re.IGNORECASE):
        raise ExprError(f"{text!r} is not of the form count_over_time(TABLE[RANGE] where FILTER) by (COLUMN) >= N "
                        "(or burst(TABLE[RANGE]) by (AREA) > SCORE)")
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as err:
        raise ExprError(f"cannot be parsed: {str(err).splitlines()[0]}") from None
    return _cube_query(tree, cubes)


def _cube_query(tree: exp.Expression, cubes: dict) -> CubeQuery:
    named = set()
    anomaly_of = []
    for node in tree.walk():
        if isinstance(node, exp.Anonymous) and node.name.lower() == "anomaly":
            args = node.expressions
            if len(args) != 1 or not isinstance(args[0], exp.Column):
                raise ExprError("anomaly() takes one column, e.g. anomaly(cube_cell_15min.stall_ratio_pct)")
            continue
        if isinstance(node, (exp.Anonymous, exp.Func)) and not isinstance(node, ALLOWED):
            raise ExprError(f"{node.sql()!r} is not allowed here: a rule compares cube columns with and, or, not, "
                            "arithmetic and anomaly()")
        if not isinstance(node, ALLOWED) and not isinstance(node, exp.Anonymous):
            raise ExprError(f"{node.sql()!r} is not allowed in a rule expression")
        if isinstance(node, exp.Column):
            if not node.table:
                raise ExprError(f"column {node.name!r} needs its cube, e.g. cube_cell_15min.{node.name}")
            named.add(node.table)
    if not named:
        raise ExprError("names no cube column (write <cube table>.<column>, e.g. cube_cell_15min.stall_ratio_pct)")
    if len(named) > 1:
        raise ExprError(f"reads several cubes ({', '.join(sorted(named))}); a rule reads one")
    cube = named.pop()
    if cube not in cubes:
        grain = cube.rsplit("_", 1)[-1]
        same = sorted(c for c in cubes if c.endswith("_" + grain)) or sorted(cubes)
        raise ExprError(f"{cube!r} is no configured cube table; configured at that grain: {', '.join(same[:12])}"
                        + (", ..." if len(same) > 12 else ""))
    dims, columns = cubes[cube]
    used = []
    for col in tree.find_all(exp.Column):
        if col.name not in columns:
            near = sorted(c for c in columns if col.name.split("_")[0] in c)[:6]
            raise ExprError(f"{cube} has no column {col.name!r}" + (f" (similar: {', '.join(near)})" if near else ""))
        used.append(col.name)
    cond = tree.copy()
    for node in list(cond.find_all(exp.Anonymous)):
        column = node.expressions[0].name
        anomaly_of.append(column)
        node.replace(exp.column(f"_anomaly_{column}"))
    for col in cond.find_all(exp.Column):
        col.set("table", None)
    first = next((n for n in cond.walk() if isinstance(n, COMPARISONS)), None)
    if first is None:
        raise ExprError("has no comparison (e.g. > 3): a rule is a condition")
    return CubeQuery("anomaly" if anomaly_of else "threshold", cube, cond, first.this.copy(), tuple(dims),
                     tuple(dict.fromkeys(anomaly_of)), tuple(dict.fromkeys(used)))


def _count_query(m: re.Match, tables: dict[str, dict[str, str]]) -> CountQuery:
    table = m["table"].lower()
    if table not in tables:
        raise ExprError(f"{table!r} is no table with event times; known: {', '.join(sorted(tables))}")
    columns = tables[table]
    try:
        range_s = parse_duration(m["range"])
    except ValueError as err:
        raise ExprError(str(err)) from None
    if range_s <= 0:
        raise ExprError(f"the range [{m['range']}] must be longer than 0")
    flt = None
    used = []
    if m["filter"]:
        try:
            flt = sqlglot.parse_one(m["filter"], read="duckdb")
        except sqlglot.errors.ParseError as err:
            raise ExprError(f"the filter {m['filter']!r} cannot be parsed: {str(err).splitlines()[0]}") from None
        for node in flt.walk():
            if not isinstance(node, ALLOWED):
                raise ExprError(f"{node.sql()!r} is not allowed in a filter: compare {table}'s columns")
            if isinstance(node, exp.Column):
                if node.table or node.name not in columns:
                    raise ExprError(f"{table} has no column {node.sql()!r}")
                used.append(node.name)
    fn = m["fn"].lower()
    by = tuple(b.strip().lower() for b in (m["by"] or "").split(",") if b.strip())
    if not by:
        if fn == "burst" or "subscriber_id" not in columns:
            raise ExprError(f"say which key to count by, e.g. by ({'city' if fn == 'burst' else 'subscriber_id'})")
        by = ("subscriber_id",)
    for b in by:
        reachable = b in columns or (b in TOPOLOGY and "cell_id" in columns)
        if not reachable:
            raise ExprError(f"{table} has no column {b!r} to count by" + (
                " (site_id, city and province are reached through cell_id)" if b in TOPOLOGY else ""))
    q = CountQuery("count" if fn == "count_over_time" else "burst", table, range_s, flt, by,
                   m["op"] == ">=", float(m["threshold"]), tuple(dict.fromkeys(used + [b for b in by if b in columns])))
    if q.kind == "count" and q.min_count < 1:
        raise ExprError("a count of at least 0 is always true; give a threshold of 1 or more")
    return q
