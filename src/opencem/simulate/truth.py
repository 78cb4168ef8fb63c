"""The truth area: the simulator's labels, kept apart from the observable lake.

``opencem simulate --out DIR`` writes them under ``DIR/truth/`` (with a :data:`MARKER` file, so
ingest recognises and refuses the folder); ``opencem truth load DIR/truth`` copies them into
``WORKSPACE/truth/``. Only the demo and the scoring benchmarks read that area, through
:func:`connect_with_truth`; the lake's own connections (``opencem sql``, the indicator engine)
never register it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from ..errors import OpencemError
from ..schema.truth import TRUTH_MARKER as MARKER
from ..schema.truth import TRUTH_TABLES

SCHEMA = "truth"  # the DuckDB schema truth tables appear under: truth.faults, truth.cases


class TruthError(OpencemError):
    """A truth folder that cannot be loaded."""


def write_marker(folder: Path, generator: str, config: dict, complete: bool) -> None:
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"generator": generator, "config": config, "complete": complete}, indent=2))
    os.replace(tmp, folder / MARKER)


def read_marker(folder: Path) -> dict:
    try:
        raw = json.loads((Path(folder) / MARKER).read_text())
        return raw if isinstance(raw, dict) else {}
    except (OSError, UnicodeDecodeError, ValueError):
        return {}


def files_of(folder: Path, name: str) -> list[Path]:
    """The Parquet files of one truth table: ``name.parquet`` or ``name/*.parquet``."""
    single = folder / f"{name}.parquet"
    return [single] if single.is_file() else sorted((folder / name).glob("*.parquet"))


def load_truth(source: Path, area: Path) -> dict[str, int]:
    """Check the truth folder ``source`` and copy it into ``area`` (replacing the truth of an
    earlier load as one step). Returns rows per table."""
    source = Path(source)
    if not source.is_dir():
        raise TruthError(f"{source}: no such folder")
    if not (source / MARKER).is_file():
        raise TruthError(f"{source} is not a simulator truth folder (no {MARKER} file); "
                         "`opencem simulate --out DIR` writes one at DIR/truth")
    if read_marker(source).get("complete") is not True:
        raise TruthError(f"{source} is the truth of a simulation that did not finish; run `opencem simulate` again")
    rows = {}
    for name, spec in TRUTH_TABLES.items():
        files = files_of(source, name)
        if not files:
            raise TruthError(f"{source}: no {name}.parquet or {name}/*.parquet")
        rows[name] = 0
        for path in files:
            try:
                schema = pq.read_schema(path)
                rows[name] += pq.ParquetFile(path).metadata.num_rows
            except Exception as err:  # a damaged or foreign file, named in one sentence
                raise TruthError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
            missing = [f.name for f in spec.schema if f.name not in schema.names]
            if missing:
                raise TruthError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                 f"of truth table {name}")
            for want in spec.schema:
                got = schema.field(want.name).type
                if got != want.type:
                    raise TruthError(f"{path}: column {want.name} is {got}, truth table {name} has it as {want.type}")
            meta = pq.ParquetFile(path).metadata
            for i, want in enumerate(spec.schema):
                if want.nullable:
                    continue
                column = schema.get_field_index(want.name)
                nulls = sum((meta.row_group(g).column(column).statistics.null_count or 0)
                            if meta.row_group(g).column(column).statistics is not None else 0
                            for g in range(meta.num_row_groups))
                if nulls:
                    raise TruthError(f"{path}: column {want.name} has {nulls:,} empty values; truth table {name} "
                                     "allows none")
    area = Path(area)
    staging = area.with_name(area.name + ".loading")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    old = area.with_name(area.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if area.exists():
        os.replace(area, old)
    os.replace(staging, area)
    shutil.rmtree(old, ignore_errors=True)
    return rows


def register_truth(con, area: Path) -> None:
    """Views ``truth.<table>`` over the truth area on a DuckDB connection."""
    area = Path(area)
    if not (area / MARKER).is_file():
        raise TruthError(f"no simulator truth in {area}; load it with `opencem truth load DIR/truth`")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name in TRUTH_TABLES:
        files = [str(p) for p in files_of(area, name)]
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f"CREATE OR REPLACE VIEW {SCHEMA}.{name} AS SELECT * FROM read_parquet([{listed}])")


def connect_with_truth(lake, area: Path):
    """A DuckDB connection on the lake with the truth area as ``truth.*`` views beside it: for
    showing and scoring only."""
    from ..engines.duckdb import connect

    con = connect(lake)
    register_truth(con, area)
    return con


def query_truth(lake, area: Path, sql: str):
    """One query over the lake and the truth area, as Arrow."""
    con = connect_with_truth(lake, area)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def summary(lake, area: Path):
    """Faults per type and cases per service and domain, as Arrow tables (``lake`` may be None:
    a truth area loaded where nothing was ingested yet)."""
    if lake is None:
        import duckdb

        con = duckdb.connect()
        register_truth(con, area)
    else:
        con = connect_with_truth(lake, area)
    try:
        faults = con.sql("""SELECT fault_type, domain, count(*) AS faults, min(precedence) AS precedence,
                   round(sum(epoch(end_time) - epoch(start_time)) / 3600, 1) AS fault_hours
            FROM truth.faults GROUP BY ALL ORDER BY precedence, fault_type""").to_arrow_table()
        cases = con.sql("""SELECT service, domain, count(*) AS cases, sum(poor_sessions) AS poor_sessions,
                   round(100 * count(*) / sum(count(*)) OVER (PARTITION BY service), 1) AS share_pct
            FROM truth.cases GROUP BY service, domain ORDER BY service, cases DESC""").to_arrow_table()
        return faults, cases
    finally:
        con.close()
