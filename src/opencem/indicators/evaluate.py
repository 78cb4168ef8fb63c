"""``opencem evaluate``: compute the configured cubes and write them to the lake, incrementally.

Each cube table (dimension set × grain) is computed per UTC day. A day is recomputed only
when its inputs changed: the files of that day's partitions of the cube's sources, the
snapshot tables its dimensions look up, or the compiled plan itself (the definitions). What
each day was computed from is recorded in the manifest together with the result files, in
the same commit.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from ..engines import ENGINES, runner
from ..errors import OpencemError
from ..geo import h3_ints, h3_parent_text
from ..lake import Lake, LakeFile, Manifest
from ..schema import Table
from .catalog import Catalog
from .explain import Yield, no_days, why_empty
from .plan import CubePlan, compile_cube
from .render import RENDERERS, DuckDBRenderer, grid_table
from ..lake.derived import conform, result_table, type_name

__all__ = ["ENGINES", "EvaluateError", "evaluate", "run_plan"]


class EvaluateError(OpencemError, ValueError):
    """An evaluation that cannot go ahead, in one sentence."""


# -- evaluation ----------------------------------------------------------------------------
@dataclass
class CubeResult:
    table: str
    days_computed: list[str] = field(default_factory=list)
    days_unchanged: int = 0
    rows: int = 0
    seconds: float = 0.0
    omitted: tuple[str, ...] = ()  # sources the cube's dimensions cannot split (by design)
    empty: tuple[str, ...] = ()  # why the cube, or KPIs of it, came out empty (worth acting on)


@dataclass
class EvaluateReport:
    engine: str
    cubes: list[CubeResult] = field(default_factory=list)
    notes_: list[str] = field(default_factory=list)  # which cube a --grain override used

    def notes(self, left_out: bool = True) -> list[str]:
        """Which cube a --grain override used, why cubes came out empty, then (with
        ``left_out``) which sources their dimensions cannot split; each sentence once, with the
        cubes it is about."""
        cubes: dict[str, list[str]] = {s: [] for s in self.notes_}
        for c in self.cubes:
            for sentence in (*c.empty, *(c.omitted if left_out else ())):
                cubes.setdefault(sentence, []).append(c.table)
        return [f"{', '.join(tables)}: {sentence}" if tables else sentence for sentence, tables in cubes.items()]


def plans_for(cat: Catalog, tables: dict[str, Table], grains: list[str] | None = None,
              only: list[str] | None = None, notes: list[str] | None = None) -> list[CubePlan]:
    """The configured cubes at their grains (or at ``grains`` instead); ``only`` picks tables.

    With ``grains``, two cubes of one dimension set (cell_id at 15min with min_samples 10 and at
    day with 30) would both write one table: the cube configured at that grain is used, else
    the first, and a sentence saying which is added to ``notes``."""
    chosen: dict[str, tuple[int, str]] = {}  # table -> (cube position, grain)
    for i, cube in enumerate(cat.cubes):
        for grain in grains or cube.grains:
            table = cube.table(grain)
            if table in chosen:
                j, _ = chosen[table]
                use, other = (i, j) if grain in cube.grains and grain not in cat.cubes[j].grains else (j, i)
                chosen[table] = (use, grain)
                if notes is not None:
                    used, skipped = cat.cubes[use], cat.cubes[other]
                    how = f"configured at {grain}" if grain in used.grains else "listed first"
                    notes.append(f"{table}: two configured cubes of {', '.join(used.dimensions) or 'no dimension'} "
                                 f"apply at {grain}; the one {how} is used (min_samples {used.min_samples}; "
                                 f"the other has {skipped.min_samples})")
                continue
            chosen[table] = (i, grain)
    plans = [compile_cube(cat, tables, cat.cubes[i], grain) for table, (i, grain) in chosen.items()
             if not only or table in only]
    if only:
        unknown = sorted(set(only) - set(chosen))
        if unknown:
            raise EvaluateError(f"no configured cube {', '.join(unknown)}; configured: {', '.join(sorted(chosen))}")
    return [p for p in plans if p.scans]


def _in_window(day: str, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start.isoformat()) and (end is None or day <= end.isoformat())


def _lookups(plan: CubePlan) -> set[str]:
    names = {b.lookup for s in plan.scans for b in s.dims if b.kind == "lookup"}
    if any(b.kind == "grid" for s in plan.scans for b in s.dims):
        names.add("cells")
    return names


def evaluate(lake: Lake, cat: Catalog, engine: str = "duckdb", start: date | None = None,
             end: date | None = None, grains: list[str] | None = None, only: list[str] | None = None,
             threads: int | None = None, full: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> EvaluateReport:
    """Compute the cubes for the days in [start, end] (inclusive; default: every day with
    data) and commit them to the lake. Days whose inputs did not change are skipped unless
    ``full``. ``progress(step, done, total)`` is called after each cube-day."""
    tables = lake.tables
    chose: list[str] = []
    plans = plans_for(cat, tables, grains, only, chose)
    manifest = lake.manifest()
    run = runner(engine, threads)
    report = EvaluateReport(engine, notes_=chose)
    work = []
    for plan in plans:
        # The fingerprint is the engine-neutral plan as DuckDB SQL, so switching engines
        # does not recompute; a DuckDB run reuses that rendering.
        neutral = DuckDBRenderer().render(plan)
        fp_plan = hashlib.sha256(neutral.encode()).hexdigest()[:16]
        lookup_fp = {t: sorted(f.path for f in lake.files(t, manifest)) for t in sorted(_lookups(plan))}
        by_day: dict[str, list[LakeFile]] = {}
        for source in plan.sources:
            for f in lake.files(source, manifest):
                by_day.setdefault(f.date, []).append(f)
        days = sorted(d for d in by_day if _in_window(d, start, end))
        previous = manifest.derived.get(plan.table, {}).get("days", {})
        fingerprints = {d: _digest([fp_plan, lookup_fp, sorted(f.path for f in by_day[d])]) for d in days}
        todo = [d for d in days if full or previous.get(d) != fingerprints[d]]
        result = CubeResult(plan.table, days_unchanged=len(days) - len(todo), omitted=plan.omitted)
        if not by_day:
            result.empty += (no_days(plan),)
        report.cubes.append(result)
        work.append((plan, neutral, by_day, todo, fingerprints, result))
    total = sum(len(todo) for _, _, _, todo, _, _ in work)
    done = 0
    grids: dict[int, pa.Table] = {}
    with lake.transaction() as txn:
        for plan, neutral, by_day, todo, fingerprints, result in work:
            if not todo:
                continue
            started = time.perf_counter()
            _register_lookups(run, lake, txn.manifest, plan, grids)
            sql = neutral if run.name == "duckdb" else RENDERERS[run.name]().render(plan)
            spec = None
            got = Yield()
            for day in todo:
                for source in plan.sources:
                    paths = lake.paths([f for f in by_day.get(day, []) if f.path.startswith(source + "/")])
                    run.register_files(source, paths, tables[source].schema)
                out = run.run(sql)
                spec = spec or cube_spec(plan, out, cat)
                out = conform(out, spec)
                _unique_keys(plan, out, day)
                got.add(plan, out)
                txn.replace_days(plan.table, [day])
                txn.append(spec, out)
                result.days_computed.append(day)
                result.rows += out.num_rows
                done += 1
                if progress:
                    progress(f"{plan.table} {day}", done, total)
            entry = txn.manifest.derived.setdefault(plan.table, {})
            entry.update(columns=[_column(f) for f in spec.columns], keys=list(spec.keys),
                         description=spec.description, engine=run.name)
            entry.setdefault("days", {}).update({d: fingerprints[d] for d in todo})
            txn.derived_changed = True
            used = {s: [f for d in todo for f in by_day.get(d, []) if f.path.startswith(s + "/")] for s in plan.sources}
            result.empty += tuple(why_empty(lake, txn.manifest, plan, used, got))
            result.seconds = time.perf_counter() - started
    return report


def run_plan(lake: Lake, plan: CubePlan, engine: str = "duckdb", start: date | None = None,
             end: date | None = None, threads: int | None = None) -> pa.Table:
    """Compute a plan over the days in [start, end] without writing anything."""
    run = runner(engine, threads)
    manifest = lake.manifest()
    _register_lookups(run, lake, manifest, plan, {})
    for source in plan.sources:
        files = [f for f in lake.files(source, manifest) if _in_window(f.date, start, end)]
        run.register_files(source, lake.paths(files), lake.tables[source].schema)
    return run.run(RENDERERS[run.name]().render(plan))


def _unique_keys(plan: CubePlan, out: pa.Table, day: str) -> None:
    """A cube row per key, or nothing is committed: a second row for a key would make every
    reader's answer depend on which it meets first."""
    keys = ["period_start", *plan.dimensions]
    distinct = out.group_by(keys, use_threads=False).aggregate([]).num_rows
    if distinct != out.num_rows:
        raise EvaluateError(f"{plan.table} for {day} has {out.num_rows - distinct:,} rows more than keys "
                            f"({', '.join(keys)}); nothing was written. This is a bug in opencem: please report it")


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _register_lookups(run, lake: Lake, manifest: Manifest, plan: CubePlan, grids: dict[int, pa.Table]) -> None:
    """Views of the snapshot tables the plan looks up, and its cell -> H3 table (``grids``
    keeps those per resolution for the run)."""
    for name in sorted(_lookups(plan)):
        spec = lake.tables[name]
        run.register_files(name, lake.paths(lake.files(name, manifest)), spec.schema)
    if any(b.kind == "grid" for s in plan.scans for b in s.dims):
        res = plan.grid_resolution
        if res not in grids:
            grids[res] = cell_grid(lake, manifest, res)
        run.register_arrow(grid_table(res), grids[res])


def cell_grid(lake: Lake, manifest: Manifest, resolution: int) -> pa.Table:
    """cell_id -> H3 cell of its site at ``resolution`` (the raster a grid cube uses for rows
    without a position of their own)."""
    import pyarrow.parquet as pq

    files = lake.files("cells", manifest)
    if not files:
        return pa.table({"cell_id": pa.array([], pa.string()), "grid": pa.array([], pa.string())})
    return grid_of_cells(pa.concat_tables(pq.read_table(p, columns=["cell_id", "lat", "lon"]) for p in lake.paths(files)),
                         resolution)


def grid_of_cells(cells: pa.Table, resolution: int) -> pa.Table:
    """cell_id -> H3 cell at ``resolution`` of the sites in ``cells`` (cell_id, lat, lon)."""
    lat = cells.column("lat").to_numpy(zero_copy_only=False).astype(float)
    lon = cells.column("lon").to_numpy(zero_copy_only=False).astype(float)
    # The ancestor of the site's finest cell, as for a located row (h3's own latlng_to_cell at
    # a coarse resolution differs near hexagon edges, H3 not being strictly nested).
    return pa.table({"cell_id": cells.column("cell_id"), "grid": h3_parent_text(h3_ints(lat, lon), resolution)})


def cube_spec(plan: CubePlan, out: pa.Table, cat: Catalog) -> Table:
    """The lake table spec of a plan's result (columns with units and descriptions, keys)."""
    units = {k: v.unit for k, v in cat.kpis.items()} | {k: v.unit for k, v in cat.kqis.items()}
    descriptions = {k: v.description for k, v in cat.kpis.items()} | {k: v.description for k, v in cat.kqis.items()}
    columns = []
    for f in out.schema:
        name = f.name
        columns.append({"name": name, "type": "timestamp" if name == "period_start" else type_name(f.type),
                        "unit": units.get(name, "0-100" if name.endswith(("_score", "_index")) or name == "cei" else ""),
                        "description": descriptions.get(name, _describe(name))})
    keys = ["period_start", *plan.dimensions]
    return result_table(plan.table, columns, keys,
                        f"{', '.join(plan.dimensions)} per {plan.grain}: KPIs, KQIs, scores and CEI")


def _describe(name: str) -> str:
    if name == "period_start":
        return "Start of the time bucket (UTC)"
    if name.startswith("records_"):
        return f"Rows of {name.removeprefix('records_')} in the group"
    if name.endswith("_score"):
        return f"Score 0-100 of KQI {name.removesuffix('_score')}"
    if name.endswith("_index"):
        return f"Experience index 0-100 of {name.removesuffix('_index')}"
    if name.endswith("_poor"):
        return f"{name.removesuffix('_poor')} index below its poor-experience threshold"
    if name == "cei":
        return "Customer Experience Index 0-100"
    if name == "poor_experience":
        return "CEI below the poor-experience threshold"
    if name == "evidence_pooled":
        return "A KQI score here is the pool grain's: this group had records, but fewer than min_samples"
    return "Dimension"


def _column(f: pa.Field) -> dict:
    meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
    return {"name": f.name, "type": type_name(f.type) if f.name != "period_start" else "timestamp",
            "unit": meta.get("unit", ""), "description": meta.get("description", "")}
