"""``opencem kpi preview``: one KPI, KQI or the CEI computed on the fly, nothing written."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from ..lake import Lake
from .catalog import Catalog
from .evaluate import run_plan
from .expr import suggest
from .plan import PlanError, compile_cube
from .spec import Cube


def preview(lake: Lake, cat: Catalog, name: str, dims: list[str], grain: str, start: date | None,
            end: date | None, engine: str, worst: bool = False) -> tuple[pa.Table, str]:
    """Rows of ``name`` by ``dims`` per ``grain``, and a note on what was left out."""
    cat.raise_errors()
    unknown = [d for d in dims if d not in cat.dimensions]
    if unknown:
        raise PlanError(f"unknown dimension {unknown[0]}{suggest(unknown[0], cat.dimensions)}; "
                        f"known: {', '.join(cat.dimensions)}")
    if name == "cei":
        kpis, columns = None, ["cei", "poor_experience"]
    elif name in cat.kqis:
        kpis, columns = sorted(cat.kqi_checked[name].columns), [name, f"{name}_score"]
    elif name in cat.kpis:
        kpis, columns = [name], [name]
    else:
        raise PlanError(f"unknown KPI or KQI {name}{suggest(name, [*cat.kpis, *cat.kqis])}; "
                        "see `opencem kpi list`")
    plan = compile_cube(cat, lake.tables, Cube(dimensions=dims), grain, kpis)
    if not plan.scans:
        raise PlanError(f"{name} cannot be split by {', '.join(dims)}: " + "; ".join(plan.omitted))
    table = run_plan(lake, plan, engine, start, end)
    if name == "cei" and "cei" not in table.column_names:
        raise PlanError("no CEI is defined for these dimensions")
    records = [c for c in table.column_names if c.startswith("records_")]
    table = table.select(["period_start", *dims, *records, *columns])
    key = columns[-1] if name in cat.kqis else columns[0]  # a KQI sorts by its score
    order = [(key, "ascending", "at_end")] if worst else \
        [("period_start", "ascending", "at_end"), *[(d, "ascending", "at_end") for d in dims]]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    return _with_units(table, cat), "; ".join(plan.omitted)


def _with_units(table: pa.Table, cat: Catalog) -> pa.Table:
    """KPI and KQI units (and 0-100 for scores and the CEI) as field metadata, as cube tables carry them."""
    units = {k: v.unit for k, v in cat.kpis.items()} | {k: v.unit for k, v in cat.kqis.items()}
    units |= {f"{k}_score": "0-100" for k in cat.kqis} | {"cei": "0-100"}
    fields = [f.with_metadata({"unit": units[f.name]}) if units.get(f.name) else f for f in table.schema]
    return table.cast(pa.schema(fields))
