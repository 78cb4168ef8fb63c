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
    path = origin[0]
    return f"library/{path.name}" if path.parent.name == "library" else str(path)
