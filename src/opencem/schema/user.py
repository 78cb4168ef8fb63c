"""Tables users add without code: a schema file per new feed (say, a new service's probe
records), so an operator can sample a feed and query it before the service launches.

A schema file (``<name>.schema.yaml`` in the workspace's ``sources/`` folder)::

    table: xdr_vowifi
    domain: sessions
    description: VoWiFi calls from the ePDG probe
    time_column: start_time          # omit for a snapshot table
    keys: [call_id]
    columns:
      - {name: call_id, type: string, nullable: false, description: Call identifier}
      - {name: start_time, type: timestamp, nullable: false, description: Call start (UTC)}
      - {name: mos, type: float32, unit: MOS, range: [1, 5], description: Speech quality}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..specfile import Issue, SpecError, load_spec
from .base import TIMESTAMP, Table, col
from .truth import TRUTH_TABLES

TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(),
    "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(),
    "timestamp": TIMESTAMP, "date": pa.date32(),
}
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA_SUFFIX = ".schema.yaml"


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME.pattern)
    type: Literal[tuple(TYPES)]  # type: ignore[valid-type]
    description: str = Field(min_length=1)
    unit: str | None = None
    nullable: bool = True
    range: tuple[float, float] | None = None


class TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(pattern=NAME.pattern)
    domain: Literal["network", "sessions", "customers"]
    description: str = Field(min_length=1)
    time_column: str | None = None
    keys: list[str] = Field(min_length=1)
    columns: list[ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TableSpec:
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"column {duplicated[0]!r} is declared twice")
        for k in self.keys:
            if k not in names:
                raise ValueError(f"key {k!r} is not one of the columns")
        by_name = {c.name: c for c in self.columns}
        if self.time_column is not None:
            if self.time_column not in by_name:
                raise ValueError(f"time_column {self.time_column!r} is not one of the columns")
            if by_name[self.time_column].type != "timestamp":
                raise ValueError(f"time_column {self.time_column!r} must have type timestamp")
        for c in self.columns:
            if c.range and c.range[0] > c.range[1]:
                raise ValueError(f"column {c.name!r} has range {list(c.range)} with min above max")
        return self

    def to_table(self) -> Table:
        keys = set(self.keys) | ({self.time_column} if self.time_column else set())
        columns = tuple(col(c.name, TYPES[c.type], c.description, c.unit,
                            nullable=c.nullable and c.name not in keys) for c in self.columns)
        return Table(name=self.table, domain=self.domain, description=self.description,
                     columns=columns, keys=tuple(self.keys), time_column=self.time_column,
                     ranges={c.name: c.range for c in self.columns if c.range})


def load_table_spec(path: Path, builtin: dict[str, Table]) -> Table:
    """Read one schema file; a name clashing with a built-in table is an error."""
    spec = load_spec(path, TableSpec, "Table schema")
    if spec.table in builtin:
        raise SpecError([Issue(f"{spec.table!r} is a built-in table; choose another name",
                               kind="Table schema", file=Path(path), field="table")])
    if spec.table in TRUTH_TABLES or spec.table == "ground_truth":
        raise SpecError([Issue(f"{spec.table!r} is the name of a simulator truth table, which never goes into "
                               "the lake; choose another name", kind="Table schema", file=Path(path), field="table")])
    return spec.to_table()


def load_user_tables(folder: Path, builtin: dict[str, Table]) -> dict[str, Table]:
    """Every ``*.schema.yaml`` under ``folder`` (all problems of all files reported at once)."""
    tables, issues = {}, []
    for path in sorted(Path(folder).glob(f"*{SCHEMA_SUFFIX}")) if Path(folder).is_dir() else []:
        try:
            table = load_table_spec(path, builtin)
        except SpecError as err:
            issues += err.issues
            continue
        if table.name in tables:
            issues.append(Issue(f"{table.name!r} is already defined by another schema file",
                                kind="Table schema", file=path, field="table"))
        tables[table.name] = table
    if issues:
        raise SpecError(issues)
    return tables


def add_table_spec(path: Path, folder: Path) -> Table:
    """Check schema file ``path`` and copy it into the workspace's ``folder`` as
    ``<table>.schema.yaml`` (replacing one of the same name)."""
    import shutil

    from . import TABLES

    path = Path(path)
    if not path.is_file():
        raise SpecError([Issue("does not exist", kind="Table schema", file=path)])
    table = load_table_spec(path, TABLES)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / f"{table.name}{SCHEMA_SUFFIX}")
    return table
