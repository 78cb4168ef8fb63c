"""What rule expressions may name: the cube tables the indicator catalog defines (every
configured cube at every grain, with the columns its compiled plan gives) and the tables
with event times, and the rule files checked against them (layer 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..indicators.catalog import Catalog
from ..indicators.spec import GRAINS
from ..schema import Table
from ..specfile import Issue, SpecError
from .expr import TOPOLOGY, CubeQuery, ExprError, Query, parse_rule_expr
from .spec import KIND, Rule, read_rule_file, rule_field


@dataclass
class RuleContext:
    """Cubes and tables for rule expressions, compiled on first use (a rule file names few)."""

    cat: Catalog
    tables: dict[str, Table]
    _cubes: dict[str, tuple[tuple[str, ...], dict[str, str]]] = field(default_factory=dict)

    def cube_names(self) -> dict[str, tuple]:
        return {c.table(g): (c, g) for c in self.cat.cubes for g in GRAINS}

    def cube(self, table: str) -> tuple[tuple[str, ...], dict[str, str]] | None:
        """(dimensions, {column: DuckDB type}) of a cube table, or None if none is configured."""
        if table not in self._cubes:
            found = self.cube_names().get(table)
            if found is None:
                return None
            self._cubes[table] = cube_columns(self.cat, self.tables, *found)
        return self._cubes[table]

    def event_tables(self) -> dict[str, dict[str, str]]:
        return {name: {f.name: str(f.type) for f in t.schema} for name, t in self.tables.items()
                if t.time_column and not name.startswith("cube_")}

    def better(self, column: str) -> str | None:
        """Which way is good for a cube column: the KPI's ``better``, higher for scores and the CEI."""
        if column in self.cat.kpis:
            return self.cat.kpis[column].better
        if column in self.cat.kqis:
            return self.cat.kqis[column].direction
        if column.endswith(("_score", "_index")) or column == "cei":
            return "higher"
        return None

    def parse(self, rule_expr: str) -> Query:
        cubes = _LazyCubes(self)
        return parse_rule_expr(rule_expr, cubes, self.event_tables())


class _LazyCubes(dict):
    def __init__(self, ctx: RuleContext):
        super().__init__()
        self.ctx = ctx

    def __contains__(self, table: object) -> bool:
        return isinstance(table, str) and self.ctx.cube(table) is not None

    def __getitem__(self, table: str):
        found = self.ctx.cube(table)
        if found is None:
            raise KeyError(table)
        return found

    def __iter__(self):
        return iter(sorted(self.ctx.cube_names()))


def cube_columns(cat: Catalog, tables: dict[str, Table], cube, grain: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The columns a cube's compiled plan gives at ``grain``: its plan run over empty inputs."""
    import duckdb

    from ..indicators.evaluate import _lookups
    from ..indicators.plan import compile_cube
    from ..indicators.render import DuckDBRenderer, grid_table

    plan = compile_cube(cat, tables, cube, grain)
    con = duckdb.connect()
    try:
        for name in {*plan.sources, *_lookups(plan)}:
            con.register(f"_e_{name}", tables[name].schema.empty_table())
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_e_{name}"')
        if any(b.kind == "grid" for s in plan.scans for b in s.dims):
            con.execute(f'CREATE TABLE "{grid_table(plan.grid_resolution)}" (cell_id VARCHAR, grid VARCHAR)')
        described = con.execute(f"DESCRIBE ({DuckDBRenderer().render(plan)})").fetchall()
    finally:
        con.close()
    return tuple(plan.dimensions), {row[0]: row[1] for row in described}


@dataclass(frozen=True)
class CheckedRule:
    rule: Rule
    query: Query


def load_rules(paths: list[Path], ctx: RuleContext) -> tuple[list[CheckedRule], list[Issue]]:
    """Every rule of ``paths`` checked (all three layers); the issues of all files together."""
    out, issues, names = [], [], {}
    for path in paths:
        try:
            rules, found, root = read_rule_file(Path(path))
        except SpecError as err:
            issues += err.issues
            continue
        issues += found
        for rule in rules:
            if rule.name in names and names[rule.name] != rule.file:
                line, fld = rule_field(rule, root, "alert")
                issues.append(Issue(f"alert {rule.name!r} is also defined in {names[rule.name].name}", kind=KIND,
                                    file=rule.file, line=line, field=fld))
            names.setdefault(rule.name, rule.file)
            try:
                query = ctx.parse(rule.expr)
            except ExprError as err:
                line, fld = rule_field(rule, root, "expr")
                issues.append(Issue(str(err).rstrip("."), kind=KIND, file=rule.file, line=line, field=fld))
                continue
            issues += _semantic(rule, query, ctx, root)
            out.append(CheckedRule(rule, query))
    files = {Path(p).resolve(): i for i, p in enumerate(paths)}
    issues.sort(key=lambda i: (files.get(i.file.resolve() if i.file else None, -1), i.line or 0))
    return out, issues


def _semantic(rule: Rule, query: Query, ctx: RuleContext, root) -> list[Issue]:
    """Layer 3: what a well-formed rule can still get wrong."""
    from .templates import template_names

    issues = []

    def issue(name: str, message: str, level: str = "error") -> None:
        line, fld = rule_field(rule, root, name)
        issues.append(Issue(message, level, KIND, rule.file, line, fld))

    if isinstance(query, CubeQuery):
        grain_s = GRAINS[ctx.cube_names()[query.cube][1]]
        for name, seconds in (("for", rule.for_s), ("keep_firing_for", rule.keep_firing_for_s)):
            if seconds % grain_s:
                issue(name, f"{seconds} s is not a whole number of {query.cube}'s {grain_s // 60}-minute windows; "
                      "it is rounded up", "warning")
        for column in query.anomaly_of:
            if ctx.better(column) is None:
                issue("expr", f"{column} says neither higher nor lower is better; anomaly() scores it both ways", "warning")
    elif rule.for_s:
        issue("for", f"a {query.kind} rule fires at the record that completes it; for: is not used", "warning")
    labels = set(query.dimensions if isinstance(query, CubeQuery) else query.by)
    for name in sorted(labels & set(rule.labels)):
        issue(f"labels.{name}", f"label {name!r} is the object each alert is about (the series sets it); "
              "choose another name")
    for name, text in rule.annotations.items():
        try:
            unknown = sorted(set(template_names(text)) - labels - set(rule.labels) - {"alertname", *TOPOLOGY})
        except ValueError as err:
            issue(f"annotations.{name}", str(err).rstrip("."))
            continue
        if unknown:
            issue(f"annotations.{name}", f"names label(s) {', '.join(unknown)} the alert does not have; it has "
                  f"{', '.join(sorted(labels | set(rule.labels) | {'alertname'}))}")
    return issues


def raise_issues(issues: list[Issue]) -> None:
    errors = [i for i in issues if i.level == "error"]
    if errors:
        raise SpecError(errors)
