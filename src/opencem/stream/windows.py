"""Windowed evaluation: a streamed cube's compiled plan (the very plan ``opencem evaluate``
runs, rendered by the same renderer) evaluated over the records of the windows that changed.

A window is one period of the cube at the stream's window length (its grain). A cube that
pools thin quarter-hours into the hour needs the whole hour to score any of them, so its unit
of re-evaluation, its *span*, is the pool period; otherwise the span is the window. Whenever
records arrive, every span they fall in is evaluated again from all its records and its rows
replace the earlier ones: results are those of a batch run over the same records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa

from ..indicators.catalog import Catalog
from ..indicators.evaluate import cube_spec
from ..indicators.plan import CubePlan, compile_cube
from ..indicators.render import DuckDBRenderer
from ..indicators.spec import GRAINS
from ..schema import Table
from .sources import StreamError

DEFINITION_VERSION = "definition_version"


@dataclass
class StreamCube:
    plan: CubePlan
    sql: str
    version: str  # the plan's fingerprint: rows are keyed on (object, window, version)
    spec: Table | None = field(default=None, repr=False)

    @property
    def table(self) -> str:
        return self.plan.table

    @property
    def window_s(self) -> int:
        return self.plan.grain_s

    @property
    def span_s(self) -> int:
        return self.plan.pool.grain_s if self.plan.pool is not None else self.plan.grain_s

    @property
    def keys(self) -> list[str]:
        return ["period_start", *self.plan.dimensions]

    def conform(self, out: pa.Table, cat: Catalog) -> pa.Table:
        """The engine's result with the recorded column types, and the definition version."""
        from ..lake.derived import conform

        self.spec = self.spec or cube_spec(self.plan, out, cat)
        out = conform(out, self.spec)
        return out.append_column(DEFINITION_VERSION, pa.array([self.version] * out.num_rows, pa.string()))


def stream_cubes(cat: Catalog, tables: dict[str, Table], window: str = "15min",
                 only: list[str] | None = None, kpis: list[str] | None = None) -> list[StreamCube]:
    """The cubes marked ``stream: true`` (or the configured cubes whose tables ``only`` names,
    at their windowed name) compiled at ``window``; ``kpis`` limits them to those KPIs."""
    if window not in GRAINS:
        raise StreamError(f"--window {window!r} is not one of {', '.join(GRAINS)}")
    # Cubes of the same dimensions at other grains name the same table at this window (the
    # city/day cube is cube_city_15min at 15min too): the one configured at this grain wins,
    # then one marked for streaming, then the first, so --cube names the cube it says.
    picked = {}
    for cube in sorted(cat.cubes, key=lambda c: (window not in c.grains, not c.stream)):
        table = cube.table(window)
        if table not in picked and ((only and table in only) or (not only and cube.stream)):
            picked[table] = cube
    seen, ids = set(picked), {id(c) for c in picked.values()}
    chosen = [c for c in cat.cubes if id(c) in ids]  # in catalog order
    if only:
        unknown = sorted(set(only) - seen)
        if unknown:
            known = sorted({c.table(window) for c in cat.cubes})
            raise StreamError(f"no configured cube {', '.join(unknown)} at window {window}; configured: {', '.join(known)}")
    out = []
    for cube in chosen:
        plan = compile_cube(cat, tables, cube, window, kpis)
        if not plan.scans:
            continue
        sql = DuckDBRenderer().render(plan)
        out.append(StreamCube(plan, sql, hashlib.sha256(sql.encode()).hexdigest()[:16]))
    return out
