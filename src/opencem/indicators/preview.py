"""``opencem kpi preview`` and ``kpi sql``: one KPI, KQI or the CEI computed on the fly (or its
SQL shown), nothing written."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from ..lake import Lake
from ..schema import Table
from .catalog import Catalog
from .evaluate import run_plan
from .expr import suggest
from .plan import CubePlan, PlanError, compile_cube
from .spec import Cube


@dataclass
class Preview:
    plan: CubePlan
    columns: list[str]  # what the preview shows beside the keys and records
    key: str  # the column --worst ranks by
    better: str | None  # higher or lower: which way ``key`` is good
    min_samples: int


def configured_min_samples(cat: Catalog, dims: list[str], grain: str) -> int:
    """The evidence rule of the configured cube of these dimensions (at this grain if there is
    one), so a preview scores what ``evaluate`` would; 1 when no cube has these dimensions."""
    same = [c for c in cat.cubes if list(c.dimensions) == dims]
    at_grain = [c for c in same if grain in c.grains]
    chosen = (at_grain or same)
    return chosen[0].min_samples if chosen else 1


def preview_plan(cat: Catalog, tables: dict[str, Table], name: str, dims: list[str], grain: str,
                 min_samples: int | None = None) -> Preview:
    """The plan computing ``name`` by ``dims`` per ``grain``, and how to rank its rows."""
    cat.raise_errors()
    unknown = [d for d in dims if d not in cat.dimensions]
    if unknown:
        raise PlanError(f"unknown dimension {unknown[0]}{suggest(unknown[0], cat.dimensions)}; "
                        f"known: {', '.join(cat.dimensions)}")
    if name == "cei":
        kpis, columns, key, better = None, ["cei", "poor_experience"], "cei", "higher"
    elif name in cat.kqis:
        kpis, columns = sorted(cat.kqi_checked[name].columns), [name, f"{name}_score"]
        key, better = f"{name}_score", "higher"  # a KQI ranks by its score
    elif name in cat.kpis:
        kpis, columns, key, better = [name], [name], name, cat.kpis[name].better
    else:
        raise PlanError(f"unknown KPI or KQI {name}{suggest(name, [*cat.kpis, *cat.kqis])}; "
                        "see `opencem kpi list`")
    samples = configured_min_samples(cat, dims, grain) if min_samples is None else min_samples
    plan = compile_cube(cat, tables, Cube(dimensions=dims, min_samples=samples), grain, kpis)
    if not plan.scans:
        raise PlanError(f"{name} cannot be split by {', '.join(dims)}: " + "; ".join(plan.omitted))
    return Preview(plan, columns, key, better, samples)


def preview(lake: Lake, cat: Catalog, name: str, dims: list[str], grain: str, start: date | None,
            end: date | None, engine: str, worst: bool = False,
            min_samples: int | None = None) -> tuple[pa.Table, str]:
    """Rows of ``name`` by ``dims`` per ``grain``, and a note on what was left out.

    Groups with fewer than ``min_samples`` records (default: the configured cube's rule) are
    left out, as one call dropped of one is not a 100 % drop rate. ``worst`` ranks by the
    definition's direction, ties broken by value and then by more records first."""
    p = preview_plan(cat, lake.tables, name, dims, grain, min_samples)
    if worst and p.better not in ("higher", "lower"):
        raise PlanError(f"{name} declares no direction (better: {p.better or 'not given'}), so it has no worst "
                        "rows; give it better: higher or better: lower, or sort without --worst")
    table = run_plan(lake, p.plan, engine, start, end)
    if name == "cei" and "cei" not in table.column_names:
        raise PlanError("no CEI is defined for these dimensions")
    records = [c for c in table.column_names if c.startswith("records_")]
    table = table.select(["period_start", *dims, *records, *p.columns])
    notes = list(p.plan.omitted)
    if p.min_samples > 1 and name != "cei" and records:
        evidence = [c for c in records if c != "records_pm_counters"]  # PM counters are exempt, as in cubes
        if evidence:
            enough = functools.reduce(pc.and_kleene, [pc.greater_equal(pc.fill_null(table[c], 0), p.min_samples)
                                                      for c in evidence])
            thin = table.num_rows - pc.sum(enough.cast(pa.int64())).as_py() if table.num_rows else 0
            table = table.filter(enough)
            if thin:
                notes.append(f"{thin:,} rows with fewer than {p.min_samples} records are left out "
                             "(--min-samples 1 shows them)")
    if worst:
        bad_first = "ascending" if p.better == "higher" else "descending"
        order = [(p.key, bad_first, "at_end")]
        if p.key != p.columns[0] and name != "cei":  # a KQI: ties of its score broken by its value
            value_better = cat.kqis[name].direction or "higher"
            order.append((p.columns[0], "ascending" if value_better == "higher" else "descending", "at_end"))
        order += [(r, "descending", "at_end") for r in records]
        order += [("period_start", "ascending", "at_end"), *[(d, "ascending", "at_end") for d in dims]]
    else:
        order = [("period_start", "ascending", "at_end"), *[(d, "ascending", "at_end") for d in dims]]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    return _with_units(table, cat), "; ".join(notes)


def preview_sql(cat: Catalog, tables: dict[str, Table], name: str, dims: list[str], grain: str,
                engine: str, min_samples: int | None = None) -> str:
    """The SQL ``engine`` runs for a preview of ``name`` (what ``evaluate`` runs for a cube of
    these dimensions, limited to the KPIs ``name`` needs)."""
    from .render import RENDERERS

    return RENDERERS[engine]().render(preview_plan(cat, tables, name, dims, grain, min_samples).plan, pretty=True)


def _with_units(table: pa.Table, cat: Catalog) -> pa.Table:
    """KPI and KQI units (and 0-100 for scores and the CEI) as field metadata, as cube tables carry them."""
    units = {k: v.unit for k, v in cat.kpis.items()} | {k: v.unit for k, v in cat.kqis.items()}
    units |= {f"{k}_score": "0-100" for k in cat.kqis} | {"cei": "0-100"}
    fields = [f.with_metadata({"unit": units[f.name]}) if units.get(f.name) else f for f in table.schema]
    return table.cast(pa.schema(fields))
