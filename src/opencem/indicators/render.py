"""Render a :class:`~.plan.CubePlan` to SQL: one renderer, small overrides per engine.

The plan becomes SQLGlot expression trees here; a subclass overrides only what an engine
does differently: time buckets, division (DuckDB gives inf for x/0, Spark's ANSI mode
raises; both must give NULL) and exact percentiles. Everything else is rendered by the same
code, so DuckDB and Spark compute the same numbers from the same plan.

Query shape, one CTE per step::

    a_i    per source: bucket, dimensions, aggregates (PM counters pivoted per object first)
    k_i    per source: KPIs over those aggregates
    keys   union of the (bucket, dimensions) keys of all sources (only if several)
    kpi    keys left-joined to each k_i (null-safe on dimensions)
    kqi    KQIs over KPIs;  scored: KQI scores 0-100;  final: indices, CEI, poor flags
"""

from __future__ import annotations

from sqlglot import exp

from ..geo import parent_masks
from ..schema import TABLES
from ..schema.base import LOCATION_H3
from .catalog import COUNTER_SOURCES
from .plan import CubePlan, DimBinding, Measure, Scan

DOUBLE = exp.DataType.build("double")
ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Pow)
TIME = "period_start"


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=False)


def lit(value) -> exp.Expression:
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    return exp.Literal.number(repr(float(value)) if isinstance(value, float) else value)


def case_when(cond: exp.Expression, then: exp.Expression, default: exp.Expression | None = None) -> exp.Case:
    case = exp.Case(ifs=[exp.If(this=cond, true=then)])
    return case.else_(default) if default is not None else case


class Renderer:
    """Shared rendering; engine subclasses override the three methods at the top."""

    dialect = "duckdb"
    name = "duckdb"

    def time_bucket(self, ts: exp.Expression, seconds: int) -> exp.Expression:
        raise NotImplementedError

    def safe_div(self, numerator: exp.Expression, denominator: exp.Expression) -> exp.Expression:
        raise NotImplementedError

    def percentile(self, value: exp.Expression, fraction: float) -> exp.Expression:
        raise NotImplementedError

    def epoch_ms(self, ts: exp.Expression) -> exp.Expression:
        raise NotImplementedError

    def floor(self, x: exp.Expression) -> exp.Expression:
        """FLOOR of a DOUBLE, as a DOUBLE however large it is."""
        return exp.Floor(this=x)

    # -- shared --------------------------------------------------------------------------
    def double(self, e: exp.Expression) -> exp.Expression:
        return exp.Cast(this=e, to=DOUBLE.copy())

    def safe(self, tree: exp.Expression, table: str | None = None,
             floats: frozenset[str] = frozenset(), ints: frozenset[str] = frozenset()) -> exp.Expression:
        """A copy of ``tree`` with every division made safe, columns qualified by ``table``,
        float32 columns (``floats``) read as DOUBLE (DuckDB computes float32 arithmetic in
        float32 and Spark partly in double, so results would differ in the 8th digit) and
        integer columns (``ints``, or every column when ``table`` is None: measures) read as
        DOUBLE where arithmetic uses them, so no product overflows BIGINT."""
        tree = tree.copy()
        for c in list(tree.find_all(exp.Column)):
            if table:
                c.set("table", exp.to_identifier(table))
            parent = c.parent
            while isinstance(parent, exp.Paren):
                parent = parent.parent
            if c.name in floats or ((table is None or c.name in ints) and isinstance(parent, ARITHMETIC)):
                cast = self.double(c.copy())
                if c is tree:
                    tree = cast
                else:
                    c.replace(cast)
        # Numbers as DOUBLE: 0.1 is DECIMAL on both engines, and DECIMAL products overflow
        # their scale (DuckDB) or precision where doubles do not; integers would overflow BIGINT.
        for node in list(tree.find_all(exp.Literal)):
            if not node.is_string and not any(c in node.this.lower() for c in "e"):
                new = exp.Literal(this=f"{node.this}e0", is_string=False)
                if node is tree:
                    tree = new
                else:
                    node.replace(new)
        # Innermost first, so a guard's copy of its argument is already guarded.
        for node in reversed(list(tree.find_all(exp.Div, exp.Mod, exp.Ln, exp.Sqrt, exp.Anonymous,
                                                 exp.Floor, exp.Ceil, exp.Round))):
            new = self.guarded(node)
            if node is tree:
                tree = new
            else:
                node.replace(new)
        return tree

    def guarded(self, node: exp.Expression) -> exp.Expression:
        """NULL outside a function's domain, identically on every engine (DuckDB gives
        inf/NaN where Spark gives NULL or raises)."""
        if isinstance(node, exp.Anonymous):
            if node.name.lower() != "hours_between":
                return node
            start, end = node.expressions
            span = exp.Sub(this=self.epoch_ms(end), expression=self.epoch_ms(start))
            return exp.Paren(this=exp.Div(this=exp.Paren(this=span), expression=lit(3_600_000.0)))
        if isinstance(node, exp.Div):
            return self.safe_div(node.this, node.expression)
        if isinstance(node, exp.Mod):
            return exp.Mod(this=node.this, expression=exp.Nullif(this=node.expression, expression=lit(0)))
        x = node.this
        if isinstance(node, exp.Floor):
            return self.floor(self.double(x))
        if isinstance(node, exp.Ceil):
            return exp.Neg(this=exp.Paren(this=self.floor(exp.Neg(this=exp.Paren(this=self.double(x))))))
        if isinstance(node, exp.Round):
            # Half up, in binary arithmetic, on every engine: Spark's ROUND rounds the decimal
            # text of a double (1.005 -> 1.01) where DuckDB rounds its binary value (-> 1.0).
            digits = node.args.get("decimals")
            scale = lit(10.0 ** int(float(digits.this))) if digits is not None else lit(1.0)
            up = exp.Add(this=exp.Mul(this=exp.Paren(this=self.double(x)), expression=scale), expression=lit(0.5))
            return exp.Paren(this=exp.Div(this=self.floor(up), expression=scale.copy()))
        if isinstance(node, exp.Ln):
            # NULL at or below 0 without repeating the argument (a nested guard would double
            # the SQL per level): LN(NULLIF(GREATEST(x, 0), 0)).
            return exp.Ln(this=exp.Nullif(this=exp.Greatest(this=x, expressions=[lit(0.0)], ignore_nulls=True),
                                         expression=lit(0.0)))
        # SQRT of a negative is NaN on both engines, and NaN equals NaN in both.
        return exp.Nullif(this=exp.Sqrt(this=x), expression=exp.Cast(this=lit("NaN"), to=DOUBLE.copy()))

    def aggregate(self, m: Measure, floats: frozenset[str] = frozenset(),
                  grouped: frozenset[str] = frozenset(), ints: frozenset[str] = frozenset()) -> exp.Expression:
        arg = self.safe(m.arg, "src", floats, ints) if m.arg is not None else None
        filt = self.safe(m.filter, "src", floats, ints) if m.filter is not None else None

        def only(e: exp.Expression) -> exp.Expression:  # value where the KPI's filter holds
            return case_when(filt, e) if filt is not None else e

        if m.func == "count_star":
            return exp.Count(this=only(lit(1)) if filt is not None else exp.Star())
        if m.func == "count_if":
            cond = exp.And(this=exp.Paren(this=arg), expression=exp.Paren(this=filt)) if filt is not None else arg
            return exp.Count(this=case_when(cond, lit(1)))
        if m.func == "count":
            return exp.Count(this=only(arg))
        if m.func == "count_distinct":
            if isinstance(m.arg, exp.Column) and m.arg.name in grouped:
                # Distinct values of a column the cube groups by: 1 where present. DuckDB would
                # otherwise build a (group, value) hash table as big as the input.
                return exp.Max(this=case_when(exp.Not(this=exp.Is(this=only(arg), expression=exp.Null())),
                                              lit(1), lit(0)))
            return exp.Count(this=exp.Distinct(expressions=[only(arg)]))
        value = self.double(only(arg))
        if m.func == "percentile":
            return self.percentile(value, m.fraction)
        node = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max,
                "stddev": exp.StddevSamp}[m.func]
        return node(this=value)

    def dimension(self, b: DimBinding, grid_resolution: int) -> exp.Expression:
        if b.kind == "column":
            return col(b.column, "src")
        if b.kind == "lookup":
            return col(f"{b.column}", f"l_{b.lookup}")
        site = col("grid", "g") if b.column else exp.Null()
        if not b.located:
            return site
        return exp.Coalesce(this=self.h3_parent(col(LOCATION_H3, "src"), grid_resolution), expressions=[site])

    def h3_parent(self, cell: exp.Expression, resolution: int) -> exp.Expression:
        """H3 string of the ancestor at ``resolution`` of a 64-bit resolution-15 cell, by the
        index's bit layout (opencem.geo.parent_masks): two bit operations and hex, which
        both engines have, where neither has H3."""
        keep, put = parent_masks(resolution)
        bits = exp.BitwiseOr(this=exp.Paren(this=exp.BitwiseAnd(this=cell, expression=exp.Literal.number(keep))),
                             expression=exp.Literal.number(put))
        return exp.Lower(this=exp.Hex(this=exp.Paren(this=bits)))

    def source(self, scan: Scan) -> exp.Expression:
        rows = self.rows(scan)
        # Per-row model values (E-model, P.1203) computed once, then aggregated by many KPIs.
        for layer in scan.derived:
            extra = [self.safe(e, "src", scan.float_columns, scan.int_columns).as_(name) for name, e in layer]
            rows = exp.select(exp.Star(), *extra, copy=False).from_(rows, copy=False).subquery("src", copy=False)
        return rows

    def rows(self, scan: Scan) -> exp.Expression:
        if scan.source not in COUNTER_SOURCES:
            return exp.to_table(scan.source).as_("src")
        # Long-format counters: one row per object and period, one column per counter used.
        keys = [col(k) for k in scan.pivot_columns]
        pivots = [exp.Sum(this=case_when(exp.EQ(this=col("counter_name"), expression=lit(name)), col("value")))
                  .as_(alias) for name, alias in scan.counters]
        not_suspect = exp.Not(this=exp.Coalesce(this=col("suspect"), expressions=[lit(False)]))
        where = exp.And(this=exp.In(this=col("counter_name"), expressions=[lit(n) for n, _ in scan.counters]),
                        expression=not_suspect) if scan.counters else not_suspect
        inner = exp.select(*keys, *pivots, copy=False).from_(scan.source, copy=False).where(where, copy=False).group_by(*keys, copy=False)
        return inner.subquery("src", copy=False)

    def scan_select(self, plan: CubePlan, scan: Scan) -> exp.Select:
        bucket = self.time_bucket(col(scan.time_column, "src"), plan.grain_s)
        grouped = frozenset(b.column for b in scan.dims if b.kind == "column")
        dims = [self.dimension(b, plan.grid_resolution) for b in scan.dims]
        located = [exp.Count(this=col(LOCATION_H3, "src")).as_(scan.located)] if scan.located else []
        select = exp.select(bucket.as_(TIME), *[d.as_(b.name) for d, b in zip(dims, scan.dims)],
                            exp.Count(this=exp.Star()).as_(scan.records), *located,
                            *[self.aggregate(m, scan.float_columns, grouped, scan.int_columns).as_(m.name) for m in scan.measures])
        select = select.from_(self.source(scan), copy=False)
        for lookup in sorted({b.lookup for b in scan.dims if b.kind == "lookup"}):
            bs = [b for b in scan.dims if b.lookup == lookup]
            key = TABLES[lookup].keys[0]
            # One row per key (aliases start with _, which no definition name can): a snapshot
            # that lists a key twice would otherwise count its rows twice; min() picks the
            # same value on every engine.
            sub = exp.select(col(key).as_("_k"), *[exp.Min(this=col(c)).as_(c) for c in sorted({b.column for b in bs})],
                             copy=False).from_(lookup, copy=False).group_by(col(key), copy=False)
            on = exp.EQ(this=col(bs[0].key, "src"), expression=col("_k", f"l_{lookup}"))
            select = select.join(sub.subquery(f"l_{lookup}", copy=False), on=on, join_type="left", copy=False)
        if any(b.kind == "grid" and b.column for b in scan.dims):
            on = exp.EQ(this=col("cell_id", "src"), expression=col("cell_id", "g"))
            select = select.join(exp.to_table(grid_table(plan.grid_resolution)).as_("g"), on=on, join_type="left", copy=False)
        return select.group_by(bucket.copy(), *[d.copy() for d in dims], copy=False)

    def kpi_select(self, plan: CubePlan, scan: Scan, frm: str) -> exp.Select:
        keys = [col(TIME), *[col(d) for d in plan.dimensions]]
        kpis = [self.double(self.safe(tree)).as_(name) for name, tree in scan.kpis]
        located = [col(scan.located)] if scan.located else []
        return exp.select(*keys, col(scan.records), *located, *kpis, copy=False).from_(frm, copy=False)

    def score(self, value: exp.Expression, points: tuple[tuple[float, float], ...]) -> exp.Expression:
        """Piecewise-linear, clamped: slopes are computed here, so no division reaches SQL."""
        (x0, s0), (_, sn) = points[0], points[-1]
        case = exp.Case(ifs=[exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null()),
                             exp.If(this=exp.LTE(this=value.copy(), expression=lit(x0)), true=lit(s0))])
        for (xa, sa), (xb, sb) in zip(points, points[1:]):
            slope = (sb - sa) / (xb - xa)
            line = exp.Add(this=lit(sa), expression=exp.Mul(
                this=exp.Paren(this=exp.Sub(this=value.copy(), expression=lit(xa))), expression=lit(slope)))
            case.append("ifs", exp.If(this=exp.LTE(this=value.copy(), expression=lit(xb)), true=line))
        return case.else_(lit(sn))

    def scored(self, value: exp.Expression, points, records: tuple[str, ...], min_samples: int) -> exp.Expression:
        score = self.score(value, points)
        if min_samples <= 1 or not records:
            return score
        thin = exp.or_(*[exp.LT(this=exp.Coalesce(this=col(r), expressions=[lit(0)]), expression=lit(min_samples))
                         for r in records])
        return case_when(thin, exp.Null(), score)

    def weighted_mean(self, parts: list[tuple[exp.Expression, float]]) -> exp.Expression:
        """Mean of the non-null parts, weights renormalised over them; null if all are null."""
        num = den = None
        for value, w in parts:
            n = exp.Coalesce(this=exp.Mul(this=value.copy(), expression=lit(w)), expressions=[lit(0.0)])
            d = case_when(exp.Is(this=value.copy(), expression=exp.Null()), lit(0.0), lit(w))
            num = n if num is None else exp.Add(this=num, expression=n)
            den = d if den is None else exp.Add(this=den, expression=d)
        return self.safe_div(exp.Paren(this=num), exp.Paren(this=den))

    def scored_ctes(self, plan: CubePlan, prefix: str = "") -> list[tuple[str, exp.Select]]:
        """The CTEs from the source scans to the KQI scores, named with ``prefix`` (a pooled
        plan's are p_...); the last one is ``<prefix>scored``."""
        if not plan.scans:
            raise ValueError(f"{plan.table} has no KPI that can be split by {', '.join(plan.dimensions)}")
        keys = [TIME, *plan.dimensions]
        ctes: list[tuple[str, exp.Select]] = []
        for i, scan in enumerate(plan.scans):
            ctes.append((f"{prefix}a_{i}", self.scan_select(plan, scan)))
            ctes.append((f"{prefix}k_{i}", self.kpi_select(plan, scan, f"{prefix}a_{i}")))
        if len(plan.scans) == 1:
            joined = f"{prefix}k_0"
        else:
            union = exp.select(*map(col, keys), copy=False).from_(f"{prefix}k_0", copy=False)
            for i in range(1, len(plan.scans)):
                union = exp.union(union, exp.select(*map(col, keys), copy=False).from_(f"{prefix}k_{i}", copy=False),
                                  distinct=True)
            ctes.append((f"{prefix}keys", union))
            values = []
            for i, scan in enumerate(plan.scans):
                values += [exp.Coalesce(this=col(c, f"{prefix}k_{i}"), expressions=[lit(0)]).as_(c)
                           for c in (scan.records, scan.located) if c]
                values += [col(name, f"{prefix}k_{i}") for name, _ in scan.kpis]
            sel = exp.select(*[col(k, f"{prefix}keys") for k in keys], *values, copy=False).from_(f"{prefix}keys", copy=False)
            for i in range(len(plan.scans)):
                conds = [exp.EQ(this=col(TIME, f"{prefix}keys"), expression=col(TIME, f"{prefix}k_{i}"))]
                conds += [exp.NullSafeEQ(this=col(d, f"{prefix}keys"), expression=col(d, f"{prefix}k_{i}"))
                          for d in plan.dimensions]
                sel = sel.join(f"{prefix}k_{i}", on=exp.and_(*conds), join_type="left", copy=False)
            ctes.append((f"{prefix}kpi", sel))
            joined = f"{prefix}kpi"
        kqis = [self.double(self.safe(tree)).as_(name) for name, tree in plan.kqis]
        ctes.append((f"{prefix}kqi", exp.select(exp.Star(), *kqis, copy=False).from_(joined, copy=False)))
        evidence = dict(plan.evidence)
        scores = [self.scored(col(name), pts, evidence.get(name, ()), plan.min_samples).as_(f"{name}_score")
                  for name, pts in plan.scores]
        ctes.append((f"{prefix}scored", exp.select(exp.Star(), *scores, copy=False).from_(f"{prefix}kqi", copy=False)))
        return ctes

    def pooled_select(self, plan: CubePlan) -> exp.Select:
        """Scores of thin groups from the pool grain: where a KQI's records are under
        min_samples but not zero, its score is the one of the coarser period holding it (the
        hour of a quarter-hour), if that has the evidence. A group without any record (a cell
        that is down) stays unscored. ``evidence_pooled`` says where a score was taken."""
        pool = plan.pool
        evidence = dict(plan.evidence)
        pooled = {name for name, _ in pool.scores}
        on = [exp.EQ(this=self.time_bucket(col(TIME, "s"), pool.grain_s), expression=col(TIME, "p"))]
        on += [exp.NullSafeEQ(this=col(d, "s"), expression=col(d, "p")) for d in plan.dimensions]
        columns = [col(c, "s") for c in [TIME, *plan.dimensions]]
        for scan in plan.scans:
            columns += [col(c, "s") for c in (scan.records, scan.located) if c]
            columns += [col(name, "s") for name, _ in scan.kpis]
        columns += [col(name, "s") for name, _ in plan.kqis]
        taken = []
        for name, _ in plan.scores:
            records = evidence.get(name, ())
            if name not in pooled or not records:
                columns.append(col(f"{name}_score", "s"))
                continue
            counts = [exp.Coalesce(this=col(r, "s"), expressions=[lit(0)]) for r in records]
            take = exp.and_(exp.or_(*[exp.LT(this=c.copy(), expression=lit(plan.min_samples)) for c in counts]),
                            *[exp.GT(this=c.copy(), expression=lit(0)) for c in counts])
            columns.append(case_when(take, col(f"{name}_score", "p"), col(f"{name}_score", "s")).as_(f"{name}_score"))
            taken.append(exp.and_(take.copy(), exp.Not(this=exp.Is(this=col(f"{name}_score", "p"), expression=exp.Null()))))
        flag = exp.Coalesce(this=exp.Paren(this=exp.or_(*taken)), expressions=[lit(False)]) if taken else lit(False)
        columns.append(flag.as_("evidence_pooled"))
        return exp.select(*columns, copy=False).from_(exp.to_table("scored").as_("s"), copy=False).join(
            exp.to_table("p_scored").as_("p"), on=exp.and_(*on), join_type="left", copy=False)

    def render_tree(self, plan: CubePlan) -> exp.Select:
        ctes = self.scored_ctes(plan)
        scored = "scored"
        if plan.pool is not None:
            ctes += self.scored_ctes(plan.pool, prefix="p_")
            ctes.append(("pooled", self.pooled_select(plan)))
            scored = "pooled"
        final = [self.double(self.weighted_mean([(col(f"{k}_score"), w) for k, w in ix.weights])).as_(f"{ix.name}_index")
                 for ix in plan.indices]
        ctes.append(("indexed", exp.select(exp.Star(), *final, copy=False).from_(scored, copy=False)))
        flags: list[exp.Expression] = []
        if plan.cei_weights:
            flags.append(self.double(self.weighted_mean([(col(f"{n}_index"), w) for n, w in plan.cei_weights])).as_("cei"))
            for ix in plan.indices:
                limit = ix.poor_below if ix.poor_below is not None else plan.cei_poor_below
                flags.append(exp.LT(this=col(f"{ix.name}_index"), expression=lit(float(limit))).as_(f"{ix.name}_poor"))
        query = exp.select(exp.Star(), *flags, copy=False).from_("indexed", copy=False)
        if plan.cei_weights:
            query = exp.select(exp.Star(), exp.LT(this=col("cei"), expression=lit(float(plan.cei_poor_below)))
                               .as_("poor_experience")).from_(query.subquery("f", copy=False), copy=False)
        for name, cte in ctes:
            query = query.with_(name, as_=cte, copy=False)
        return query

    def render(self, plan: CubePlan, pretty: bool = False) -> str:
        # Every identifier quoted: a KPI may be named like a word one engine reserves (order, end).
        return self.render_tree(plan).sql(dialect=self.dialect, identify=True, pretty=pretty)


def grid_table(resolution: int) -> str:
    """Name of the cell -> H3 lookup the engine registers for a grid resolution."""
    return f"_grid_r{resolution}"


class DuckDBRenderer(Renderer):
    dialect = name = "duckdb"

    def time_bucket(self, ts, seconds):
        # Whole buckets since the Unix epoch, in UTC whatever the session time zone.
        epoch = exp.Anonymous(this="epoch", expressions=[ts])
        n = exp.Floor(this=exp.Div(this=epoch, expression=lit(seconds)))
        return exp.Anonymous(this="to_timestamp", expressions=[exp.Mul(this=n, expression=lit(seconds))])

    def safe_div(self, numerator, denominator):
        return exp.Div(this=numerator, expression=exp.Nullif(this=denominator, expression=lit(0)))

    def percentile(self, value, fraction):
        return exp.Anonymous(this="quantile_cont", expressions=[value, lit(fraction)])

    def epoch_ms(self, ts):
        return exp.Anonymous(this="epoch_ms", expressions=[ts])


class SparkRenderer(Renderer):
    dialect = "spark"
    name = "spark"

    def time_bucket(self, ts, seconds):
        secs = exp.Anonymous(this="unix_seconds", expressions=[ts])
        n = exp.Floor(this=exp.Div(this=secs, expression=lit(seconds)))
        return exp.Anonymous(this="timestamp_seconds", expressions=[exp.Mul(this=n, expression=lit(seconds))])

    def safe_div(self, numerator, denominator):
        return exp.Anonymous(this="try_divide", expressions=[self.double(numerator), denominator])

    def percentile(self, value, fraction):
        # Spark's percentile() is exact with linear interpolation, as DuckDB's quantile_cont.
        return exp.Anonymous(this="percentile", expressions=[value, lit(fraction)])

    def epoch_ms(self, ts):
        return exp.Anonymous(this="unix_millis", expressions=[ts])

    def floor(self, x):
        # Spark's FLOOR returns BIGINT and overflows past 9.2e18. A double of magnitude 2^52
        # or more is already whole, and inf and NaN pass through as on DuckDB.
        small = exp.LT(this=exp.Abs(this=x.copy()), expression=lit(4.5e15))
        return case_when(small, exp.Cast(this=exp.Floor(this=x.copy()), to=DOUBLE.copy()), x)


RENDERERS = {"duckdb": DuckDBRenderer, "spark": SparkRenderer}
