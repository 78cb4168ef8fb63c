"""Parse and check user expressions with SQLGlot against a whitelist, with types and units.

A KPI expression is SQL-like (``100 * count_if(dropped) / count(*)``) but only a small,
closed set of nodes is accepted: column references of the KPI's source, literals,
arithmetic, comparisons, CASE, a few scalar functions, the aggregates below and the QoE
models. No subqueries, table references, casts or statements, so a user definition can
never run arbitrary SQL. Every argument of every call is checked, and so is its type
(a number, true/false, text or a timestamp): what passes here runs, and gives the same
answer, on every engine (DuckDB would sum booleans where Spark refuses). Each problem is
one sentence, with a suggestion for a likely typo.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

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
# Arguments each function takes: (fewest, most; None for any number).
ARITY = {"sum": (1, 1), "count": (1, 1), "count_if": (1, 1), "avg": (1, 1), "min": (1, 1),
         "max": (1, 1), "median": (1, 1), "percentile": (2, 2), "count_distinct": (1, 1),
         "stddev": (1, 1), "coalesce": (1, None), "least": (1, None), "greatest": (1, None),
         "abs": (1, 1), "ln": (1, 1), "exp": (1, 1), "power": (2, 2), "sqrt": (1, 1),
         "round": (1, 2), "nullif": (2, 2), "floor": (1, 1), "ceil": (1, 1), "if": (3, 3),
         **MACROS, **{k: (n, n) for k, n in ENGINE_FUNCTIONS.items()}}

# Bounds that keep checking, planning and both engines within their recursion limits.
MAX_LENGTH = 20_000  # characters
MAX_DEPTH = 64  # nested operators and calls
# Nodes of the SQL an expression becomes: Spark's FLOOR (and so CEIL and ROUND) repeats its
# argument three times, so nesting them triples the SQL per level.
MAX_RENDERED_NODES = 20_000
REPEATED_BY_RENDERING = (exp.Floor, exp.Ceil, exp.Round)
# Numbers every engine reads alike: DuckDB makes 1e999 inf where Spark refuses it, and Spark
# makes a long literal a DECIMAL that overflows where DuckDB widens it.
MAX_DIGITS, MAX_MAGNITUDE = 15, 1e15

# Types of values, as a user reads them.
NUM, BOOL, TEXT, TIME, NULL, ANY = "number", "bool", "text", "timestamp", "null", "any"
WORDS = {NUM: "a number", BOOL: "true/false", TEXT: "text", TIME: "a timestamp"}
# Units of the canonical schema, by what they measure.
UNIT_FAMILY = {"ms": "time", "s": "time", "h": "time", "months": "time", "kbps": "rate",
               "bytes": "volume", "GB": "volume", "%": "percentage", "dBm": "power", "dB": "ratio",
               "EUR": "money", "deg": "angle", "MHz": "frequency", "fps": "frame rate",
               "km/h": "speed", "inch": "length"}


def type_family(t) -> str:
    """The checker's type of an Arrow type (``ANY`` for what it does not know)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return BOOL
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return NUM
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return TEXT
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return TIME
    return ANY


@dataclass
class Checked:
    """An expression after checking: its tree (None if it did not parse) and what it uses."""

    text: str
    tree: exp.Expression | None = None
    issues: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)  # source columns (or KPI names, for KQIs)
    counters: set[str] = field(default_factory=set)  # PM counter names (long-format sources)
    aggregates: int = 0
    type: str = ANY

    @property
    def ok(self) -> bool:
        return not self.issues


def reference_name(col: exp.Column) -> str:
    """A column reference as written: RRC.ConnEstabSucc parses as table RRC, column
    ConnEstabSucc, which is how 3GPP counter names read."""
    return ".".join(p.name for p in reversed([col.this, *(col.args.get(k) for k in ("table", "db", "catalog"))]) if p)


def _nesting(text: str) -> int:
    """Deepest parenthesis nesting of ``text`` outside quotes (before parsing, which recurses)."""
    depth = deepest = 0
    quote = None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def tree_depth(tree: exp.Expression) -> int:
    """Depth of ``tree``, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in node.iter_expressions())
    return deepest


def rendered_nodes(tree: exp.Expression) -> int:
    """About how many nodes the SQL of ``tree`` has, counted without recursion."""
    total, stack = 0, [(tree, 1)]
    while stack:
        node, weight = stack.pop()
        total += weight
        inner = weight * (3 if isinstance(node, REPEATED_BY_RENDERING) else 1)
        stack.extend((c, inner) for c in node.iter_expressions())
    return total


def shown(text: str, limit: int = 60) -> str:
    """``text`` as a message quotes it: repr, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def parse(text: str) -> tuple[exp.Expression | None, str | None]:
    if len(text) > MAX_LENGTH:
        return None, f"is {len(text):,} characters long; at most {MAX_LENGTH:,}"
    if _nesting(text) > MAX_DEPTH:
        return None, f"nests parentheses {_nesting(text)} deep; at most {MAX_DEPTH}"
    # SQLGlot's parser recurses about 20 frames per parenthesis: Python's default limit of 1000
    # would stop it near 45 levels, below MAX_DEPTH. Python 3.11 frames live on the heap.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20 * MAX_DEPTH + 2000))
    try:
        trees = sqlglot.parse(text, read="duckdb")
    except sqlglot.errors.SqlglotError as err:
        first = str(err).splitlines()[0]
        return None, f"cannot be parsed ({first.split('. Line')[0]})"
    except RecursionError:
        return None, f"is nested too deeply to read; at most {MAX_DEPTH} levels"
    finally:
        sys.setrecursionlimit(limit)
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return None, "must be a single expression, not several statements"
    depth = tree_depth(trees[0])
    if depth > MAX_DEPTH:
        return None, (f"is {depth} operators deep (a long chain of + or nested calls); at most {MAX_DEPTH}: "
                      "split it into several KPIs or KQIs")
    size = rendered_nodes(trees[0])
    if size > MAX_RENDERED_NODES:
        return None, (f"would become {size:,} SQL nodes (floor, ceil and round repeat their argument on Spark, "
                      f"so nesting them triples it); at most {MAX_RENDERED_NODES:,}")
    return trees[0], None


def function_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    for cls, name in {**AGG_NODES, **SCALAR_NODES}.items():
        if type(node) is cls:
            return name
    return None


def call_args(node: exp.Expression) -> list[exp.Expression]:
    """Every argument of a call, in order, whatever SQLGlot named it (max(x, y) keeps y as
    ``count``, count(x, y) as ``expressions``): none may go unchecked."""
    out = []
    for value in node.args.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, exp.Expression):
                out.append(v)
    return out


def written_functions(text: str) -> list[str]:
    """Function names as the user wrote them (SQLGlot reads len() as LENGTH)."""
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return []
    return [a.text for a, b in zip(tokens, tokens[1:]) if b.token_type == sqlglot.tokens.TokenType.L_PAREN]


class _Checker:
    def __init__(self, what: str, columns: Collection[str] | Mapping, counters: bool, aggregates: bool,
                 kpi_names: Collection[str] = (), kqi_names: Collection[str] = (),
                 units: Mapping[str, str] | None = None):
        self.what = what  # "KPI expression", "filter", "KQI expression"
        self.types = {k: type_family(v) for k, v in columns.items()} if isinstance(columns, Mapping) else {}
        self.columns = list(columns)
        self.counters = counters
        self.allow_aggregates = aggregates
        self.kpi_names = kpi_names
        self.kqi_names = kqi_names
        self.units = units or {}
        self.out: Checked | None = None

    def run(self, text: str) -> Checked:
        out = self.out = Checked(text)
        tree, problem = parse(text)
        if problem:
            out.issues.append(f"{self.what} {shown(text)} {problem}")
            return out
        out.tree = tree
        self.written = written_functions(text)
        out.type = self.visit(tree, in_aggregate=False)
        return out

    def problem(self, sentence: str) -> None:
        if sentence not in self.out.issues:
            self.out.issues.append(sentence)

    def warn(self, sentence: str) -> None:
        if sentence not in self.out.warnings:
            self.out.warnings.append(sentence)

    # -- types -----------------------------------------------------------------------------
    def need(self, got: str, want: str, node: exp.Expression, role: str) -> None:
        if got == NULL and want == BOOL and isinstance(node, exp.Null):
            # CASE WHEN NULL is a type error on Spark and never true on DuckDB.
            self.problem(f"{role} needs true/false, not NULL (it would never hold)")
            return
        if got in (want, ANY, NULL):
            return
        hint = ""
        if want == NUM and got == BOOL:
            hint = f"; count_if({node.sql()}) counts the rows where it holds"
        elif want == BOOL and got in (NUM, TEXT):
            hint = f"; compare it with a value, e.g. {node.sql()} {'> 0' if got == NUM else '= ...'}"
        self.problem(f"{role} needs {WORDS[want]}, but {node.sql()} is {WORDS[got]}{hint}")

    def unify(self, parts: list[tuple[exp.Expression, str]], role: str) -> str:
        known = [(n, t) for n, t in parts if t not in (ANY, NULL)]
        kinds = list(dict.fromkeys(t for _, t in known))
        if len(kinds) > 1:
            (a, ta), (b, tb) = known[0], next((n, t) for n, t in known if t != known[0][1])
            self.problem(f"{role} mixes {WORDS[ta]} ({a.sql()}) with {WORDS[tb]} ({b.sql()}) in a {self.what}")
            return ANY
        if kinds:
            return kinds[0]
        return NULL if parts and all(t == NULL for _, t in parts) else ANY

    def compare(self, node: exp.Expression, a: exp.Expression, ta: str, b: exp.Expression, tb: str) -> None:
        if ta in (ANY, NULL) or tb in (ANY, NULL) or ta == tb:
            self.units_of(node, a, b)
            return
        hint = ""
        if BOOL in (ta, tb) and TEXT in (ta, tb):
            col = a if ta == BOOL else b
            hint = f"; write {col.sql()} or NOT {col.sql()}"
        self.problem(f"{node.sql()} compares {WORDS[ta]} ({a.sql()}) with {WORDS[tb]} ({b.sql()}){hint}")

    # -- units -----------------------------------------------------------------------------
    def unit(self, node: exp.Expression) -> str | None:
        node = _column_of(node)
        return self.units.get(reference_name(node)) if isinstance(node, exp.Column) else None

    def units_of(self, node: exp.Expression, a: exp.Expression, b: exp.Expression) -> None:
        """Warnings for a comparison or sum whose sides are in different units, or a threshold
        that reads like another unit than its column's (3 against milliseconds)."""
        ua, ub = self.unit(a), self.unit(b)
        if ua and ub and ua != ub:
            fa, fb = UNIT_FAMILY.get(ua), UNIT_FAMILY.get(ub)
            kind = f"both {fa}s in different units" if fa and fa == fb else "different units"
            self.warn(f"{node.sql()} puts {a.sql()} ({ua}) beside {b.sql()} ({ub}): {kind}; convert one first")
            return
        for col, other in ((a, b), (b, a)):
            unit = self.unit(col)
            number = _number(other)
            if unit is None or number is None or number == 0:
                continue
            col = _column_of(col)
            v = abs(number)
            # Durations a user could mean in seconds (setup, page load, buffering), not the
            # delays, jitter and round trips that are rightly a few ms.
            seconds_scale = any(w in col.name for w in ("time", "duration", "buffering"))
            share = any(w in col.name for w in ("load", "util", "success", "availability", "share"))
            if unit == "ms" and v < 10 and seconds_scale:
                self.warn(f"{node.sql()}: {col.sql()} is in ms, so {other.sql()} means {other.sql()} ms; "
                          f"{other.sql()} s would be {number * 1000:g}")
            elif unit == "s" and v >= 1000:
                self.warn(f"{node.sql()}: {col.sql()} is in s, so {other.sql()} means {v / 60:.0f} minutes; "
                          f"{other.sql()} ms would be {number / 1000:g}")
            elif unit == "%" and v < 1 and share:  # a loss of 0.5 % is plausible, a load of 0.8 % is not
                self.warn(f"{node.sql()}: {col.sql()} is in %, so {other.sql()} means {other.sql()} %; "
                          f"a fraction {other.sql()} would be {number * 100:g}")

    # -- nodes -----------------------------------------------------------------------------
    def visit(self, node: exp.Expression, in_aggregate: bool) -> str:
        if isinstance(node, exp.Column):
            return self.reference(node, in_aggregate)
        if isinstance(node, exp.Literal):
            return self.literal(node)
        if isinstance(node, exp.Boolean):
            return BOOL
        if isinstance(node, exp.Null):
            return NULL
        name = function_name(node)
        if name in AGGREGATES or isinstance(node, exp.Count):
            return self.aggregate(node, name, in_aggregate)
        if isinstance(node, exp.Anonymous) and name not in MACROS and name not in ENGINE_FUNCTIONS:
            self.problem(f"function {node.name} is not allowed in a {self.what}{suggest(node.name.lower(), FUNCTION_NAMES)}; "
                         f"allowed: {', '.join(FUNCTION_NAMES)}")
            return ANY
        if name is None and not isinstance(node, OPERATORS):
            self.problem(self.refusal(node))
            return ANY
        if isinstance(node, exp.In) and any(node.args.get(k) for k in ("query", "unnest", "field")):
            self.problem(f"subqueries are not allowed in a {self.what}")
            return ANY
        if name is not None:
            return self.call(node, name, in_aggregate)
        return self.operator(node, in_aggregate)

    def literal(self, node: exp.Literal) -> str:
        if node.is_string:
            if "${" in node.this:
                self.problem(f"text {node.sql()} holds ${{, which Spark would read as a variable; "
                             "it is not allowed in a definition")
            return TEXT
        try:
            value = Decimal(node.this)
        except InvalidOperation:
            self.problem(f"{node.this} is not a number")
            return NUM
        if not math.isfinite(float(value)):
            self.problem(f"number {node.this} is out of range (it would be infinite)")
        elif abs(value) > MAX_MAGNITUDE or len(value.normalize().as_tuple().digits) > MAX_DIGITS:
            self.problem(f"number {node.this} has more digits than every engine computes alike "
                         f"(at most {MAX_DIGITS} significant digits and {MAX_MAGNITUDE:g})")
        return NUM

    def operator(self, node: exp.Expression, in_aggregate: bool) -> str:
        if isinstance(node, exp.Case):
            return self.case(node, in_aggregate)
        kids = list(node.iter_expressions())
        types = [self.visit(k, in_aggregate) for k in kids]
        if isinstance(node, exp.Paren):
            return types[0]
        if isinstance(node, exp.Neg):
            self.need(types[0], NUM, kids[0], "-")
            return NUM
        if isinstance(node, exp.Not):
            self.need(types[0], BOOL, kids[0], "NOT")
            return BOOL
        if isinstance(node, exp.And | exp.Or):
            for k, t in zip(kids, types):
                self.need(t, BOOL, k, node.key.upper())
            return BOOL
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod):
            for k, t in zip(kids, types):
                self.need(t, NUM, k, {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}[node.key])
            if isinstance(node, exp.Add | exp.Sub):
                self.units_of(node, node.this, node.expression)
            return NUM
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            self.compare(node, node.this, types[0], node.expression, types[1])
            return BOOL
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null | exp.Boolean):
                self.problem(f"IS takes NULL, TRUE or FALSE, not {node.expression.sql()}")
            return BOOL
        if isinstance(node, exp.In | exp.Between):
            self.unify(list(zip(kids, types)), "IN" if isinstance(node, exp.In) else "BETWEEN")
            for other in kids[1:]:
                self.units_of(node, kids[0], other)
            return BOOL
        return ANY

    def case(self, node: exp.Case, in_aggregate: bool) -> str:
        subject = node.args.get("this")
        st = self.visit(subject, in_aggregate) if subject is not None else None
        results = []
        for branch in node.args.get("ifs") or []:
            cond = branch.this
            ct = self.visit(cond, in_aggregate)
            if subject is not None:
                self.compare(branch, subject, st, cond, ct)
            else:
                self.need(ct, BOOL, cond, "CASE WHEN")
            results.append((branch.args["true"], self.visit(branch.args["true"], in_aggregate)))
        default = node.args.get("default")
        if default is not None:
            results.append((default, self.visit(default, in_aggregate)))
        return self.unify(results, "CASE")

    def arity(self, node: exp.Expression, name: str, args: list) -> bool:
        lo, hi = ARITY[name]
        if len(args) >= lo and (hi is None or len(args) <= hi):
            return True
        if name == "percentile":
            self.problem("percentile takes two arguments, percentile(column, p) with p in (0, 1); got "
                         f"{node.sql(unsupported_level=sqlglot.ErrorLevel.IGNORE)}")
            return False
        many = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        call = node.sql(unsupported_level=sqlglot.ErrorLevel.IGNORE)  # max(x, y) has no SQL of its own
        self.problem(f"{name} takes {many} argument{'s' if many != '1' else ''}, not {len(args)} ({call})")
        return False

    def call(self, node: exp.Expression, name: str, in_aggregate: bool) -> str:
        args = call_args(node)
        if not self.arity(node, name, args):
            return ANY
        if name in MACROS:
            return self.macro(node, name, args, in_aggregate)
        types = [self.visit(a, in_aggregate) for a in args]
        if name in ENGINE_FUNCTIONS:
            for a, t in zip(args, types):
                self.need(t, TIME, a, name)
            return NUM
        if name in ("coalesce", "least", "greatest", "nullif"):
            return self.unify(list(zip(args, types)), name)
        if name == "if":
            self.need(types[0], BOOL, args[0], "if")
            return self.unify(list(zip(args[1:], types[1:])), "if")
        for a, t in zip(args, types):
            self.need(t, NUM, a, name)
        if name == "round" and len(args) == 2 and not (
                isinstance(args[1], exp.Literal) and not args[1].is_string and args[1].this.isdigit()
                and int(args[1].this) <= 10):
            self.problem(f"round's second argument is the number of decimals, 0 to 10, not {args[1].sql()}")
        return NUM

    def macro(self, node: exp.Expression, name: str, args: list, in_aggregate: bool) -> str:
        if self.kpi_names:
            self.problem(f"{name}() is computed per record, so it belongs in a KPI (e.g. avg({node.sql()})), "
                         "not in a KQI expression")
            return NUM
        types = [self.visit(a, in_aggregate) for a in args]
        text_at = {"emodel_mos": 0, "emodel_r": 0, "video_mos": 7}.get(name)
        for i, (a, t) in enumerate(zip(args, types)):
            self.need(t, TEXT if i == text_at else NUM, a, f"{name}'s argument {i + 1}")
        return NUM

    def refusal(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Select | exp.Subquery | exp.Query):
            return f"subqueries are not allowed in a {self.what}"
        if isinstance(node, exp.Table):
            return f"table references are not allowed in a {self.what}"
        if isinstance(node, exp.Star):
            return f"* is only allowed as count(*) in a {self.what}"
        if isinstance(node, exp.Cast):
            return f"casts are not allowed in a {self.what}; values are converted as needed"
        if isinstance(node, exp.ByteString | exp.HexString | exp.BitString | exp.National):
            return f"{node.key} literals are not allowed in a {self.what}; write text as 'text'"
        if isinstance(node, exp.Func):
            names = {n.upper() for n in type(node).sql_names()}
            written = next((w for w in self.written if w.upper() in names), node.sql_name().lower())
            return (f"function {written} is not allowed in a {self.what}{suggest(written.lower(), FUNCTION_NAMES)}; "
                    f"allowed: {', '.join(FUNCTION_NAMES)}")
        return f"{node.key.upper()} ({node.sql(unsupported_level=sqlglot.ErrorLevel.IGNORE)}) is not allowed in a {self.what}"

    def aggregate(self, node: exp.Expression, name: str | None, in_aggregate: bool) -> str:
        name = name or "count"
        if not self.allow_aggregates:
            self.problem(f"aggregate {name}() is not allowed in a {self.what}"
                         + ("; refer to KPIs by name" if self.kpi_names else "; it applies to each row"))
            return NUM
        if in_aggregate:
            self.problem(f"aggregates cannot be nested ({node.sql()}) in a {self.what}")
            return NUM
        self.out.aggregates += 1
        args = call_args(node)
        if not self.arity(node, name, args):
            return NUM
        if name == "percentile":
            p = args[1]
            if not (isinstance(p, exp.Literal) and not p.is_string and 0 < float(p.this) < 1):
                self.problem(f"percentile's second argument must be a number between 0 and 1 "
                             f"(e.g. 0.95), not {p.sql()}")
            args = args[:1]
        arg = args[0]
        if isinstance(arg, exp.Star):
            if name != "count":
                self.problem(f"* is only allowed as count(*) in a {self.what}")
            return NUM
        if isinstance(arg, exp.Distinct):
            if name != "count" or len(arg.expressions) != 1:
                self.problem(f"DISTINCT is only allowed as count(DISTINCT column) in a {self.what}")
                return NUM
            arg = arg.expressions[0]
        t = self.visit(arg, in_aggregate=True)
        if name == "count_if":
            self.need(t, BOOL, arg, "count_if")
        elif name not in ("count", "count_distinct"):
            self.need(t, NUM, arg, name)
        return NUM

    def reference(self, col: exp.Column, in_aggregate: bool) -> str:
        name = reference_name(col)
        if "${" in name:
            self.problem(f"name {name!r} holds ${{, which Spark would read as a variable; it is not allowed")
            return ANY
        if self.kpi_names:
            if name in self.kpi_names:
                self.out.columns.add(name)
            elif name in self.kqi_names:
                self.problem(f"{name} is a KQI; a KQI is computed from KPIs, so use the KPIs of {name} here")
            else:
                self.problem(f"unknown KPI {name}{suggest(name, self.kpi_names)}")
            return NUM
        if name in self.columns:
            self.out.columns.add(name)
            kind = self.types.get(name, ANY)
        elif self.counters:
            # Any other name in a counter table is a counter: RRC.ConnEstabSucc, "pmX-y" or pmRrcConnEstabSucc.
            self.out.counters.add(name)
            kind = NUM
        else:
            self.problem(f"unknown column {name}{suggest(name, self.columns)}")
            return ANY
        if self.allow_aggregates and not in_aggregate:
            self.problem(f"{name} must be inside an aggregate such as sum({name}) or avg({name}); "
                         "a KPI is one number per group")
        return kind


def _column_of(node: exp.Expression) -> exp.Expression:
    """The column a value is read from, through parentheses and coalesce(column, default)."""
    while isinstance(node, exp.Paren | exp.Coalesce):
        node = node.this
    return node


def _number(node: exp.Expression) -> float | None:
    if isinstance(node, exp.Neg):
        inner = _number(node.this)
        return -inner if inner is not None else None
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def check_kpi(text: str, columns: Collection[str] | Mapping, counters: bool = False,
              units: Mapping[str, str] | None = None) -> Checked:
    """Check a KPI expression over a source with ``columns`` (names, or names to Arrow types so
    types are checked); ``counters`` lets other names (RRC.ConnEstabSucc) stand for PM
    counters of a long-format counter table."""
    out = _Checker("KPI expression", columns, counters, aggregates=True, units=units).run(text)
    if out.tree is not None and not out.issues:
        if out.aggregates == 0:
            out.issues.append(f"KPI expression {shown(text)} has no aggregate; wrap columns in sum(), avg(), count_if() or similar")
        elif out.type in (BOOL, TEXT, TIME):
            out.issues.append(f"KPI expression {shown(text)} is {WORDS[out.type]}; a KPI is a number")
    return out


def check_filter(text: str, columns: Collection[str] | Mapping, counters: bool = False,
                 units: Mapping[str, str] | None = None) -> Checked:
    """Check a row filter (a predicate on each source row)."""
    out = _Checker("filter", columns, counters, aggregates=False, units=units).run(text)
    if out.tree is not None and not out.issues and out.type == NULL:
        out.issues.append(f"filter {shown(text)} is NULL, so no row would pass")
    elif out.tree is not None and not out.issues and out.type in (NUM, TEXT, TIME):
        hint = f"; compare it with a value, e.g. {text} = ..." if out.type != NUM else f"; e.g. {text} > 0"
        out.issues.append(f"filter {shown(text)} is {WORDS[out.type]}, not true/false for each row{hint}")
    return out


def check_kqi(text: str, kpi_names: Collection[str], kqi_names: Collection[str] = ()) -> Checked:
    """Check a KQI expression: arithmetic over KPI names, no aggregates."""
    out = _Checker("KQI expression", (), False, aggregates=False, kpi_names=kpi_names or {"\0"},
                   kqi_names=kqi_names).run(text)
    if out.tree is not None and not out.issues and out.type in (BOOL, TEXT, TIME):
        out.issues.append(f"KQI expression {shown(text)} is {WORDS[out.type]}; a KQI is a number")
    return out
