"""Parse and check user expressions with SQLGlot against a whitelist.

A KPI expression is SQL-like (``100 * count_if(dropped) / count(*)``) but only a small,
closed set of nodes is accepted: column references of the KPI's source, literals,
arithmetic, comparisons, CASE, a few scalar functions, the aggregates below and the QoE
models. No subqueries, table references, casts or statements, so a user definition can
never run arbitrary SQL. Each problem is one sentence, with a suggestion for a likely typo.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from ..errors import suggest

# Aggregates users may write; median(x) is percentile(x, 0.5).
AGGREGATES = {"sum", "count", "count_if", "avg", "min", "max", "median", "percentile",
              "count_distinct", "stddev"}
AGG_NODES = {exp.Sum: "sum", exp.Count: "count", exp.CountIf: "count_if", exp.Avg: "avg",
             exp.Min: "min", exp.Max: "max", exp.Median: "median", exp.Stddev: "stddev"}
# Row-level functions, by the name users write them.
SCALAR_NODES = {exp.Coalesce: "coalesce", exp.Least: "least", exp.Greatest: "greatest",
                exp.Abs: "abs", exp.Ln: "ln", exp.Exp: "exp", exp.Pow: "power", exp.Sqrt: "sqrt",
                exp.Round: "round", exp.Nullif: "nullif", exp.Floor: "floor", exp.Ceil: "ceil",
                exp.If: "if"}
# QoE models expanded into SQL by the compiler: name -> (min args, max args).
MACROS = {"emodel_mos": (3, 4), "emodel_r": (3, 4), "video_mos": (7, 8), "web_mos": (1, 1)}
OPERATORS = (exp.Paren, exp.Neg, exp.Not, exp.And, exp.Or, exp.Add, exp.Sub, exp.Mul, exp.Div,
             exp.Mod, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In,
             exp.Between, exp.Case, exp.Literal, exp.Boolean, exp.Null)
# Functions each engine renders its own way (timestamps): name -> number of arguments.
ENGINE_FUNCTIONS = {"hours_between": 2}
FUNCTION_NAMES = sorted(AGGREGATES | set(SCALAR_NODES.values()) | set(MACROS) | set(ENGINE_FUNCTIONS))


@dataclass
class Checked:
    """An expression after checking: its tree (None if it did not parse) and what it uses."""

    text: str
    tree: exp.Expression | None = None
    issues: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)  # source columns (or KPI names, for KQIs)
    counters: set[str] = field(default_factory=set)  # PM counter names (long-format sources)
    aggregates: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues


def reference_name(col: exp.Column) -> str:
    """A column reference as written: RRC.ConnEstabSucc parses as table RRC, column
    ConnEstabSucc, which is how 3GPP counter names read."""
    return ".".join(p.name for p in reversed([col.this, *(col.args.get(k) for k in ("table", "db", "catalog"))]) if p)


def parse(text: str) -> tuple[exp.Expression | None, str | None]:
    try:
        trees = sqlglot.parse(text, read="duckdb")
    except sqlglot.errors.SqlglotError as err:
        first = str(err).splitlines()[0]
        return None, f"cannot be parsed ({first.split('. Line')[0]})"
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return None, "must be a single expression, not several statements"
    return trees[0], None


def function_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    for cls, name in {**AGG_NODES, **SCALAR_NODES}.items():
        if type(node) is cls:
            return name
    return None


class _Checker:
    def __init__(self, what: str, columns: Collection[str], counters: bool, aggregates: bool,
                 kpi_names: Collection[str] = ()):
        self.what = what  # "KPI expression", "filter", "KQI expression"
        self.columns = columns
        self.counters = counters
        self.allow_aggregates = aggregates
        self.kpi_names = kpi_names
        self.out: Checked | None = None

    def run(self, text: str) -> Checked:
        out = self.out = Checked(text)
        tree, problem = parse(text)
        if problem:
            out.issues.append(f"{self.what} {text!r} {problem}")
            return out
        out.tree = tree
        self.visit(tree, in_aggregate=False)
        return out

    def problem(self, sentence: str) -> None:
        if sentence not in self.out.issues:
            self.out.issues.append(sentence)

    def visit(self, node: exp.Expression, in_aggregate: bool) -> None:
        if isinstance(node, exp.Column):
            self.reference(node, in_aggregate)
            return
        name = function_name(node)
        if name in AGGREGATES or isinstance(node, exp.Count):
            self.aggregate(node, name, in_aggregate)
            return
        if name in MACROS:
            lo, hi = MACROS[name]
            if not lo <= len(node.expressions) <= hi:
                self.problem(f"{name} takes {lo if lo == hi else f'{lo} to {hi}'} arguments, "
                             f"not {len(node.expressions)}")
        elif name in ENGINE_FUNCTIONS:
            if len(node.expressions) != ENGINE_FUNCTIONS[name]:
                self.problem(f"{name} takes {ENGINE_FUNCTIONS[name]} arguments, not {len(node.expressions)}")
        elif isinstance(node, exp.Anonymous):
            self.problem(f"function {node.name} is not allowed in a {self.what}{suggest(node.name.lower(), FUNCTION_NAMES)}; "
                         f"allowed: {', '.join(FUNCTION_NAMES)}")
            return
        elif name is None and not isinstance(node, OPERATORS):
            self.problem(self.refusal(node))
            return
        if isinstance(node, exp.In) and node.args.get("query"):
            self.problem(f"subqueries are not allowed in a {self.what}")
            return
        for child in node.iter_expressions():
            self.visit(child, in_aggregate)

    def refusal(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Select | exp.Subquery | exp.Query):
            return f"subqueries are not allowed in a {self.what}"
        if isinstance(node, exp.Table):
            return f"table references are not allowed in a {self.what}"
        if isinstance(node, exp.Star):
            return f"* is only allowed as count(*) in a {self.what}"
        if isinstance(node, exp.Cast):
            return f"casts are not allowed in a {self.what}; values are converted as needed"
        if isinstance(node, exp.Func):
            return f"function {node.sql_name().lower()} is not allowed in a {self.what}; allowed: {', '.join(FUNCTION_NAMES)}"
        return f"{node.key.upper()} ({node.sql()}) is not allowed in a {self.what}"

    def aggregate(self, node: exp.Expression, name: str | None, in_aggregate: bool) -> None:
        name = name or "count"
        if not self.allow_aggregates:
            self.problem(f"aggregate {name}() is not allowed in a {self.what}"
                         + ("; refer to KPIs by name" if self.kpi_names else "; it applies to each row"))
            return
        if in_aggregate:
            self.problem(f"aggregates cannot be nested ({node.sql()}) in a {self.what}")
            return
        self.out.aggregates += 1
        args = list(node.expressions) if isinstance(node, exp.Anonymous) else [node.this] if node.this else []
        if name == "percentile":
            if len(args) != 2:
                self.problem(f"percentile takes two arguments, percentile(column, p) with p in (0, 1); got {node.sql()}")
                return
            p = args[1]
            if not (isinstance(p, exp.Literal) and not p.is_string and 0 < float(p.this) < 1):
                self.problem(f"percentile's second argument must be a number between 0 and 1 "
                             f"(e.g. 0.95), not {p.sql()}")
            args = args[:1]
        elif isinstance(node, exp.Anonymous) and len(args) != 1:
            self.problem(f"{name} takes one argument, not {len(args)}")
            return
        for arg in args:
            if isinstance(arg, exp.Star):
                if name != "count":
                    self.problem(f"* is only allowed as count(*) in a {self.what}")
                continue
            if isinstance(arg, exp.Distinct):
                if name != "count" or len(arg.expressions) != 1:
                    self.problem(f"DISTINCT is only allowed as count(DISTINCT column) in a {self.what}")
                    continue
                arg = arg.expressions[0]
            self.visit(arg, in_aggregate=True)

    def reference(self, col: exp.Column, in_aggregate: bool) -> None:
        name = reference_name(col)
        if self.kpi_names:
            if name in self.kpi_names:
                self.out.columns.add(name)
            else:
                self.problem(f"unknown KPI {name}{suggest(name, self.kpi_names)}")
            return
        if name in self.columns:
            self.out.columns.add(name)
        elif self.counters and (col.args.get("table") or col.this.quoted or "." in name):
            self.out.counters.add(name)
        else:
            self.problem(f"unknown column {name}{suggest(name, self.columns)}")
            return
        if self.allow_aggregates and not in_aggregate:
            self.problem(f"{name} must be inside an aggregate such as sum({name}) or avg({name}); "
                         "a KPI is one number per group")


def check_kpi(text: str, columns: Collection[str], counters: bool = False) -> Checked:
    """Check a KPI expression over a source with ``columns``; ``counters`` lets dotted names
    (RRC.ConnEstabSucc) stand for PM counters of a long-format counter table."""
    out = _Checker("KPI expression", columns, counters, aggregates=True).run(text)
    if out.tree is not None and not out.issues and out.aggregates == 0:
        out.issues.append(f"KPI expression {text!r} has no aggregate; wrap columns in sum(), avg(), count_if() or similar")
    return out


def check_filter(text: str, columns: Collection[str], counters: bool = False) -> Checked:
    """Check a row filter (a predicate on each source row)."""
    return _Checker("filter", columns, counters, aggregates=False).run(text)


def check_kqi(text: str, kpi_names: Collection[str]) -> Checked:
    """Check a KQI expression: arithmetic over KPI names, no aggregates."""
    return _Checker("KQI expression", (), False, aggregates=False, kpi_names=kpi_names or {"\0"}).run(text)
