"""Cube result tables as lake tables: their schema is kept in the manifest (``derived``)
because it follows the definitions, not code."""

from __future__ import annotations

import pyarrow as pa

from ..schema.base import TIMESTAMP, Table, col

TYPES = {"timestamp": TIMESTAMP, "string": pa.string(), "double": pa.float64(), "int64": pa.int64(),
         "bool": pa.bool_()}


def type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "double"
    return "string"


def result_table(name: str, columns: list[dict], keys: list[str], description: str) -> Table:
    fields = tuple(col(c["name"], TYPES[c["type"]], c.get("description", ""), c.get("unit") or None)
                   for c in columns)
    return Table(name, "indicators", description, fields, tuple(keys), time_column="period_start")


def derived_tables(derived: dict[str, dict]) -> dict[str, Table]:
    """Table specs of the cube tables a lake's manifest records."""
    return {name: result_table(name, d["columns"], d["keys"], d.get("description", ""))
            for name, d in derived.items()}


def conform(table: pa.Table, spec: Table) -> pa.Table:
    """Cast an engine's result to the recorded column types (ms UTC timestamps, int64, double)."""
    return pa.table([table.column(f.name).cast(f.type) for f in spec.columns], schema=spec.schema)
