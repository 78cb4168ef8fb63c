"""The compiled plan: what one cube table computes, engine-neutral.

A cube (dimension set × time grain) becomes one :class:`CubePlan`: a :class:`Scan` per
source table (dimension bindings, the aggregates its KPIs need as :class:`Measure` s, and
each KPI as an expression over those measures), then KQIs over KPIs, their 0-100 scores,
the index nodes and the CEI. Renderers (:mod:`.render`) turn a plan into SQL per engine;
nothing here knows any SQL dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa
from sqlglot import exp

from ..errors import OpencemError
from ..schema import Table
from ..schema.base import LOCATION_H3
from .catalog import COUNTER_SOURCES, PIVOT_KEYS, Catalog
from .expr import AGG_NODES, MACROS, function_name, reference_name
from .spec import GRAINS, Cube


@dataclass(frozen=True)
class Measure:
    """One aggregate over source rows: ``func(arg)`` over rows where ``filter`` holds."""

    name: str
    func: str  # sum count count_star count_if avg min max percentile count_distinct stddev
    arg: exp.Expression | None
    filter: exp.Expression | None = None
    fraction: float | None = None  # percentile only

    @property
    def key(self) -> tuple:
        return (self.func, self.arg.sql() if self.arg else None,
                self.filter.sql() if self.filter else None, self.fraction)


@dataclass(frozen=True)
class DimBinding:
    """How a dimension is read for one source: ``column`` of the row, of a lookup table
    joined on ``key``, or (grid) the H3 cell of the row's ``cell_id``."""

    name: str
    kind: str  # column | lookup | grid
    column: str
    lookup: str | None = None
    key: str | None = None
    # grid: the row's own position (location_h3) when it has one, before the serving site
    located: bool = False


@dataclass(frozen=True)
class Scan:
    source: str
    time_column: str
    dims: tuple[DimBinding, ...]
    measures: tuple[Measure, ...]
    kpis: tuple[tuple[str, exp.Expression], ...]  # KPI name -> expression over measure names
    counters: tuple[tuple[str, str], ...] = ()  # long format: (counter name, pivot column)
    pivot_columns: tuple[str, ...] = ()
    # Source columns stored as float32: read as DOUBLE so row arithmetic is the same everywhere.
    float_columns: frozenset[str] = frozenset()
    # Integer source columns: read as DOUBLE where arithmetic uses them, as bytes * 8 would
    # overflow BIGINT (an error on both engines) long before a double does.
    int_columns: frozenset[str] = frozenset()
    # Per-row values computed once (QoE models), in layers: a layer uses only earlier ones.
    derived: tuple[tuple[tuple[str, exp.Expression], ...], ...] = ()

    @property
    def records(self) -> str:
        return f"records_{self.source}"

    @property
    def located(self) -> str | None:
        """Column counting the rows a grid cube placed by their own position, if any can be."""
        return f"records_{self.source}_located" if any(b.located for b in self.dims) else None


@dataclass(frozen=True)
class IndexPlan:
    name: str
    weights: tuple[tuple[str, float], ...]  # KQI name -> weight, only KQIs this cube has
    poor_below: float | None


@dataclass(frozen=True)
class CubePlan:
    table: str
    dimensions: tuple[str, ...]
    grain: str
    grid_resolution: int
    scans: tuple[Scan, ...]
    kqis: tuple[tuple[str, exp.Expression], ...]
    scores: tuple[tuple[str, tuple[tuple[float, float], ...]], ...]
    indices: tuple[IndexPlan, ...]
    cei_weights: tuple[tuple[str, float], ...]
    cei_poor_below: float | None
    omitted: tuple[str, ...] = ()  # why some definitions are not in this cube
    min_samples: int = 1
    # KQI name -> records columns that must reach min_samples for the KQI to be scored
    evidence: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The same cube at a coarser grain, whose scores stand in for thin groups (Cube.pool)
    pool: CubePlan | None = None

    @property
    def grain_s(self) -> int:
        return GRAINS[self.grain]

    @property
    def kpi_names(self) -> list[str]:
        return [name for scan in self.scans for name, _ in scan.kpis]

    @property
    def sources(self) -> list[str]:
        return [s.source for s in self.scans]


class PlanError(OpencemError, ValueError):
    """A cube or definition that cannot be planned, in one sentence."""


def bind_dimension(cat: Catalog, dim: str, columns: set[str]) -> DimBinding | None:
    for r in cat.dimensions[dim].resolve:
        if r.grid:
            located = r.located and LOCATION_H3 in columns
            if "cell_id" in columns or located:
                return DimBinding(dim, "grid", "cell_id" if "cell_id" in columns else "", located=located)
        elif r.lookup is None:
            if r.column in columns:
                return DimBinding(dim, "column", r.column)
        elif r.key in columns:
            return DimBinding(dim, "lookup", r.column, r.lookup, r.key)
    return None


def compile_cube(cat: Catalog, tables: dict[str, Table], cube: Cube, grain: str,
                 kpis: list[str] | None = None) -> CubePlan:
    """Plan ``cube`` at ``grain``: every KPI whose source can be split by the cube's
    dimensions (or just ``kpis``), the KQIs, scores and CEI built on them."""
    cat.raise_errors()
    wanted = list(cat.kpis) if kpis is None else kpis
    omitted: list[str] = []
    by_source: dict[str, list[str]] = {}
    bindings: dict[str, tuple[DimBinding, ...] | None] = {}  # None: the source cannot be split
    for name in wanted:
        if name not in cat.kpis:
            raise PlanError(f"unknown KPI {name}")
        source = cat.kpis[name].source
        if source not in bindings:
            columns = set(tables[source].schema.names)
            if source in COUNTER_SOURCES:
                columns = set(PIVOT_KEYS)
            found = [bind_dimension(cat, d, columns) for d in cube.dimensions]
            missing = [d for d, b in zip(cube.dimensions, found) if b is None]
            if missing:
                omitted.append(f"{source} KPIs are left out: {source} cannot be split by {', '.join(missing)}")
                bindings[source] = None
                continue
            bindings[source] = tuple(found)
        if bindings[source] is not None:  # () is a cube without dimensions: one row per period
            by_source.setdefault(source, []).append(name)
    scans = tuple(_scan(cat, tables[s], names, bindings[s]) for s, names in by_source.items())
    have = {k for scan in scans for k, _ in scan.kpis}
    kqis, scores, evidence = [], [], []
    for name, kqi in cat.kqis.items():
        used = cat.kqi_checked[name].columns
        if used <= have:
            tree = cat.kqi_checked[name].tree.copy()
            kqis.append((name, tree))
            scores.append((name, tuple(kqi.score.breakpoints())))
            sources = sorted({cat.kpis[k].source for k in used} - set(COUNTER_SOURCES))
            evidence.append((name, tuple(f"records_{s}" for s in sources)))
    scored = {k for k, _ in kqis}
    indices, cei_weights = [], []
    if cat.cei:
        for node in cat.cei.indices:
            weights = tuple((k, w) for k, w in node.kqis.items() if k in scored)
            if weights:
                indices.append(IndexPlan(node.name, weights, node.poor_below))
                cei_weights.append((node.name, node.weight))
    pool = None
    if cube.pool and GRAINS[cube.pool] > GRAINS[grain] and cube.min_samples > 1 and scans:
        pool = compile_cube(cat, tables, cube.model_copy(update={"pool": None}), cube.pool, kpis)
    return CubePlan(cube.table(grain), tuple(cube.dimensions), grain, cube.grid_resolution, scans,
                    tuple(kqis), tuple(scores), tuple(indices), tuple(cei_weights),
                    cat.cei.poor_below if cat.cei and cei_weights else None, tuple(omitted),
                    cube.min_samples, tuple(evidence), pool)


def _scan(cat: Catalog, table: Table, names: list[str], dims: tuple[DimBinding, ...]) -> Scan:
    long_format = table.name in COUNTER_SOURCES
    counters: dict[str, str] = {}
    measures: dict[tuple, Measure] = {}
    derived: dict[str, tuple[str, exp.Expression]] = {}  # macro call SQL -> (column, formula)

    def column(node: exp.Column) -> exp.Expression:
        name = reference_name(node)
        if long_format and name not in PIVOT_KEYS:
            alias = counters.setdefault(name, f"_c{len(counters)}")
            return exp.column(alias)
        return exp.column(name)

    def row_level(tree: exp.Expression) -> exp.Expression:
        tree = tree.copy()
        if isinstance(tree, exp.Column):
            return column(tree)
        for col in list(tree.find_all(exp.Column)):
            col.replace(column(col))
        return hoist_macros(tree)

    def hoist_macros(tree: exp.Expression) -> exp.Expression:
        """A QoE model call becomes a column computed once per row, however many KPIs use it."""
        calls = [n for n in tree.walk() if isinstance(n, exp.Anonymous) and n.name.lower() in MACROS]
        outermost = [c for c in calls if not any(p in calls for p in _ancestors(c))]
        for call in outermost:
            name, _ = derived.setdefault(call.sql(), (f"_q{len(derived)}", call))
            if call is tree:
                return exp.column(name)
            call.replace(exp.column(name))
        return tree

    def measure(node: exp.Expression, filt: exp.Expression | None) -> exp.Expression:
        func = function_name(node) or "count"
        arg, fraction = None, None
        if isinstance(node, exp.Anonymous):
            arg = node.expressions[0]
            if func == "percentile":
                fraction = float(node.expressions[1].this)
        elif node.this is not None and not isinstance(node.this, exp.Star):
            arg = node.this
        if func == "median":
            func, fraction = "percentile", 0.5
        if isinstance(arg, exp.Distinct):
            func, arg = "count_distinct", arg.expressions[0]
        if func == "count" and arg is None:
            func = "count_star"
        m = Measure("", func, row_level(arg) if arg is not None else None, filt, fraction)
        found = measures.setdefault(m.key, replace(m, name=f"_m{len(measures)}"))
        return exp.column(found.name)

    kpis = []
    for name in names:
        checked = cat.checked[name]
        filt = row_level(cat.filters[name].tree) if name in cat.filters else None
        tree = checked.tree.copy()
        aggregates = [n for n in tree.walk() if isinstance(n, tuple(AGG_NODES)) or
                      (isinstance(n, exp.Anonymous) and n.name.lower() in ("percentile", "count_distinct"))]
        outermost = [a for a in aggregates if not any(p in aggregates for p in _ancestors(a))]
        for node in outermost:
            replacement = measure(node, filt)
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
        kpis.append((name, tree))
    pivot = PIVOT_KEYS if long_format else ()
    floats = frozenset(f.name for f in table.columns if pa.types.is_floating(f.type)
                       and f.type.bit_width < 64)
    ints = frozenset(f.name for f in table.columns if pa.types.is_integer(f.type))
    return Scan(table.name, table.time_column, dims, tuple(measures.values()), tuple(kpis),
                tuple(counters.items()), pivot, floats, ints,
                _derived_layers(tuple((n, text) for text, (n, _) in derived.items()), {n: c for n, c in derived.values()}))


_LAYERS: dict[tuple, tuple] = {}


def _derived_layers(key: tuple[tuple[str, str], ...], calls: dict[str, exp.Expression]) -> tuple:
    """Expanded, shared layers for these macro calls; cached, as every cube repeats them."""
    if key not in _LAYERS:
        _LAYERS[key] = share_subexpressions([(name, _expand_macros(calls[name].copy())) for name, _ in key])
    return _LAYERS[key]


def share_subexpressions(columns: list[tuple[str, exp.Expression]], min_nodes: int = 30):
    """Layers of per-row columns in which every repeated subexpression is computed once.

    The QoE formulas use intermediate values many times (R appears thrice in R -> MOS), and
    an expression tree repeats them in full, so inlined trees grow to tens of kilobytes and
    engines evaluate each copy. Repeated subtrees become columns of an earlier layer instead.
    Hoisting out of a CASE branch is safe: the formulas never raise (divisions are guarded).
    """
    keys: dict[int, tuple] = {}  # id(node) -> structural key (hashable, computed once)
    sizes: dict[tuple, int] = {}

    def key_of(node) -> tuple:
        if not isinstance(node, exp.Expression):
            return (node,)
        k = keys.get(id(node))
        if k is None:
            parts = []
            for name, value in sorted(node.args.items()):
                if isinstance(value, list):
                    parts.append((name, tuple(key_of(v) for v in value)))
                elif value is not None:
                    parts.append((name, key_of(value)))
            k = keys[id(node)] = (type(node).__name__, tuple(parts))
            sizes[k] = 1 + sum(sizes.get(key_of(c), 1) for c in node.iter_expressions())
        return k

    counts: dict[tuple, int] = {}
    for _, tree in columns:
        for node in tree.walk():
            if not isinstance(node, exp.Column | exp.Literal):
                text = key_of(node)
                counts[text] = counts.get(text, 0) + 1
    shared: dict[tuple, tuple[str, int]] = {}  # structural key -> (column, layer)
    layers: dict[int, list[tuple[str, exp.Expression]]] = {}

    def rebuild(node: exp.Expression) -> tuple[exp.Expression, int]:
        if isinstance(node, exp.Column | exp.Literal):
            return node.copy(), 0
        text = key_of(node)
        if text in shared:
            name, layer = shared[text]
            return exp.column(name), layer
        level, args = 0, {}
        for key, value in node.args.items():
            if isinstance(value, exp.Expression):
                value, lv = rebuild(value)
                level = max(level, lv)
            elif isinstance(value, list):
                items = [rebuild(v) if isinstance(v, exp.Expression) else (v, 0) for v in value]
                value = [v for v, _ in items]
                level = max([level, *(lv for _, lv in items)])
            args[key] = value
        new = node.__class__(**args)
        is_value = not isinstance(node, exp.If) or not isinstance(node.parent, exp.Case)  # WHEN..THEN is not
        if is_value and counts.get(text, 0) >= 2 and sizes[text] >= min_nodes:
            name = f"_s{len(shared)}"
            shared[text] = (name, level + 1)
            layers.setdefault(level + 1, []).append((name, new))
            return exp.column(name), level + 1
        return new, level

    for name, tree in columns:
        new, level = rebuild(tree)
        layers.setdefault(level + 1, []).append((name, new))
    return tuple(tuple(layers[k]) for k in sorted(layers))


def _ancestors(node: exp.Expression):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _expand_macros(tree: exp.Expression) -> exp.Expression:
    """Replace QoE model calls (emodel_mos, video_mos, web_mos) by their SQL formulas."""
    calls = [n for n in tree.walk() if isinstance(n, exp.Anonymous) and n.name.lower() in MACROS]
    if not calls:
        return tree
    from .qoe import sql as qoe_sql
    if tree in calls:  # the root itself is a macro call
        return _macro(qoe_sql, tree)
    for node in reversed(calls):  # innermost first
        node.replace(_macro(qoe_sql, node))
    return tree


def _macro(qoe_sql, node: exp.Anonymous) -> exp.Expression:
    name = node.name.lower()
    args = [_expand_macros(a.copy()) for a in node.expressions]
    builder = {"emodel_mos": qoe_sql.emodel_mos_sql, "emodel_r": qoe_sql.emodel_r_sql,
               "web_mos": qoe_sql.web_mos_sql}.get(name)
    if builder is None:
        from .qoe import p1203
        builder = p1203.video_mos_sql
    return exp.Paren(this=builder(*args))
