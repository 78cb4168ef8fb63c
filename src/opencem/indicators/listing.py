"""The definitions in force as one table (``opencem kpi list``)."""

from __future__ import annotations

import pyarrow as pa

from .catalog import Catalog


def indicator_table(cat: Catalog, source: str | None = None) -> pa.Table:
    """One row per KPI (of ``source`` only, if given) and, without ``source``, per KQI: kind,
    name, what it is computed from, unit, the values its score maps to 0 and 100, where it is
    defined, and its description."""
    rows = []
    for name, k in sorted(cat.kpis.items()):
        if source is None or k.source == source:
            rows.append({"kind": "kpi", "name": name, "source": k.source, "unit": k.unit or None,
                         "score_0": None, "score_100": None, "defined_in": _where(cat, "kpis", name),
                         "description": k.description})
    if source is None:
        for name, q in sorted(cat.kqis.items()):
            pts = q.score.breakpoints()
            rising = pts[0][1] < pts[-1][1]
            low, high = (pts[0][0], pts[-1][0]) if rising else (pts[-1][0], pts[0][0])
            rows.append({"kind": "kqi", "name": name, "source": "=".join(q.attached_to), "unit": q.unit or None,
                         "score_0": low, "score_100": high, "defined_in": _where(cat, "kqis", name),
                         "description": q.description})
    schema = pa.schema([("kind", pa.string()), ("name", pa.string()), ("source", pa.string()),
                        ("unit", pa.string()), ("score_0", pa.float64()), ("score_100", pa.float64()),
                        ("defined_in", pa.string()), ("description", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def _where(cat: Catalog, kind: str, name: str) -> str | None:
    origin = cat.origin.get((kind, name))
    if origin is None:
        return None
    from ..specfile import line_of

    path, root, loc = origin
    line = line_of(root, loc)
    where = f"library/{path.name}" if path.parent.name == "library" else str(path)
    return f"{where}:{line}" if line else where


def cei_table(cat: Catalog) -> pa.Table:
    """The CEI tree in force, one row per (index, KQI), with where each part is defined."""
    rows = []
    if cat.cei is not None:
        for node in cat.cei.indices:
            limit = node.poor_below if node.poor_below is not None else cat.cei.poor_below
            for kqi, weight in node.kqis.items():
                rows.append({"index": node.name, "index_weight": node.weight, "poor_below": limit,
                             "kqi": kqi, "kqi_weight": weight, "index_from": _where(cat, "cei_index", node.name),
                             "kqi_from": _where(cat, "cei_kqi", f"{node.name}.{kqi}")})
    schema = pa.schema([("index", pa.string()), ("index_weight", pa.float64()), ("poor_below", pa.float64()),
                        ("kqi", pa.string()), ("kqi_weight", pa.float64()), ("index_from", pa.string()),
                        ("kqi_from", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def cubes_table(cat: Catalog) -> pa.Table:
    """The cubes in force, one row per table, with where each is defined."""
    rows = []
    for i, cube in enumerate(cat.cubes):
        for grain in cube.grains:
            rows.append({"cube_table": cube.table(grain), "dimensions": ", ".join(cube.dimensions) or None,
                         "grain": grain, "min_samples": cube.min_samples,
                         "grid_resolution": cube.grid_resolution if "grid" in cube.dimensions else None,
                         "defined_in": _where(cat, "cubes", str(i)), "description": cube.description})
    schema = pa.schema([("cube_table", pa.string()), ("dimensions", pa.string()), ("grain", pa.string()),
                        ("min_samples", pa.int64()), ("grid_resolution", pa.int64()), ("defined_in", pa.string()),
                        ("description", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def definition_table(cat: Catalog, name: str) -> pa.Table:
    """One KPI or KQI as field/value rows, with where it is defined."""
    from ..errors import suggest
    from .plan import PlanError

    item = cat.kpis.get(name) or cat.kqis.get(name)
    if item is None:
        raise PlanError(f"unknown KPI or KQI {name}{suggest(name, [*cat.kpis, *cat.kqis])}; "
                        "show takes cei, cubes or a name from `opencem kpi list`")
    kind = "kpis" if name in cat.kpis else "kqis"
    fields = item.model_dump(exclude_none=True, by_alias=True)
    if kind == "kqis":
        fields["better"] = item.direction
    fields["defined_in"] = _where(cat, kind, name)
    return pa.table({"field": list(fields), "value": [str(v) for v in fields.values()]})
