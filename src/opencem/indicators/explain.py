"""Why a cube came out empty, in one sentence per cause, for ``EvaluateReport.notes()``.

Evaluation notes what its output lacks (:class:`Yield`) and asks here why, looking at the lake,
not at the SQL: a cube with no source rows at all, sources without rows for the days computed,
a counter source whose rows carry none of the counters its KPIs read (the vendor's counters are
not mapped), and a dimension looked up in a table that is empty or does not know the keys.
Sentences name tables and counters, not cubes, so the same cause in several cubes reads once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..lake import Lake, LakeFile, Manifest
from .catalog import COUNTER_SOURCES
from .plan import CubePlan, DimBinding, Scan

MAX_NAMES = 4


@dataclass
class Yield:
    """What the computed days of one cube produced."""

    rows: int = 0
    scans_with_values: set[int] = field(default_factory=set)  # scans with a non-null KPI
    dims_with_values: set[str] = field(default_factory=set)

    def add(self, plan: CubePlan, out: pa.Table) -> None:
        self.rows += out.num_rows
        for i, scan in enumerate(plan.scans):
            if i not in self.scans_with_values and any(out[k].null_count < out.num_rows for k, _ in scan.kpis):
                self.scans_with_values.add(i)
        for d in plan.dimensions:
            if d not in self.dims_with_values and out[d].null_count < out.num_rows:
                self.dims_with_values.add(d)


def no_days(plan: CubePlan) -> str:
    """The sentence for a cube none of whose sources has rows."""
    return f"nothing to evaluate: none of its sources has rows ({_names(sorted(set(plan.sources)))})"


def why_empty(lake: Lake, manifest: Manifest, plan: CubePlan, files: dict[str, list[LakeFile]],
              got: Yield) -> list[str]:
    """Sentences for the scans and dimensions of ``plan`` that yielded nothing; ``files`` are the
    source files of the days computed."""
    notes: list[str] = []
    empty = [s for i, s in enumerate(plan.scans) if i not in got.scans_with_values]
    without_rows = sorted({s.source for s in empty if not files.get(s.source)})
    if without_rows:
        notes.append(f"no rows in {_names(without_rows)} for these days, so their KPIs are empty")
    for scan in empty:
        if scan.source in COUNTER_SOURCES and files.get(scan.source):
            notes.append(_counters_missing(lake, scan, files[scan.source]))
    if got.rows:
        for dim in plan.dimensions:
            if dim in got.dims_with_values:
                continue
            for scan in plan.scans:
                binding = next(b for b in scan.dims if b.name == dim)
                if binding.kind != "column" and files.get(scan.source):
                    notes.append(_unresolved(lake, manifest, binding, scan, files[scan.source]))
    return list(dict.fromkeys(notes))


def _counters_missing(lake: Lake, scan: Scan, files: list[LakeFile]) -> str:
    wanted = sorted(name for name, _ in scan.counters)
    found: set[str] = set()
    for path in lake.paths(files):
        names = pq.read_table(path, columns=["counter_name"],
                              filters=[("counter_name", "in", wanted)])["counter_name"]
        found.update(pc.unique(names).to_pylist())
        if len(found) == len(wanted):
            break
    if not found:
        return (f"{scan.source} has rows but none of the counters its KPIs read ({_names(wanted)}): the files' "
                "counters are not mapped to canonical names; check the vendor dictionary (opencem ingest lists "
                "the counters it did not map)")
    missing = [n for n in wanted if n not in found]
    absent = f"; it lacks {_names(missing)}" if missing else ""
    return (f"{scan.source} KPIs are all empty although it has {_names(sorted(found))}{absent}: their ratios are "
            "0/0 (no traffic) or their counters null")


def _unresolved(lake: Lake, manifest: Manifest, b: DimBinding, scan: Scan, files: list[LakeFile]) -> str:
    table = b.lookup or "cells"
    key = b.key or "cell_id"
    need = f"{b.name} needs {table} with lat/lon" if b.kind == "grid" else f"{b.name} is looked up in {table} by {key}"
    lookup_files = lake.files(table, manifest)
    if not lookup_files:
        return f"{need}: the {table} table is empty (load an inventory, docs/ingest.md)"
    keys = pc.unique(pa.concat_arrays([pq.read_table(p, columns=[key])[key].combine_chunks()
                                       for p in lake.paths(files)])).drop_null()
    keys = keys.take(pc.sort_indices(keys))
    columns = [k for k in (TABLE_KEYS.get(table, key), b.column if b.kind == "lookup" else "lat") if k]
    known = pa.concat_tables(pq.read_table(p, columns=list(dict.fromkeys(columns))) for p in lake.paths(lookup_files))
    matched = pc.is_in(keys, value_set=known[TABLE_KEYS.get(table, key)].combine_chunks())
    if not pc.any(matched).as_py():
        example = keys[0].as_py() if len(keys) else "?"
        return f"{need}: none of the {len(keys)} {key}s of {scan.source} is in {table} (e.g. {example})"
    column = b.column if b.kind == "lookup" else "lat"
    return f"{need}: the {table} rows for the {key}s of {scan.source} have no {column}"


TABLE_KEYS = {"cells": "cell_id", "subscribers": "subscriber_id"}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")
