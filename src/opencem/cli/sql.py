"""``opencem sql``, ``tables`` and ``schema``: look at the lake and its data model."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

app = typer.Typer()
APPS = [(app, None)]


@app.command("sql", rich_help_panel="Look")
def sql_cmd(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="One read-only SQL query (DuckDB dialect) over the lake's tables.")],
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help=(
        "Rows to show (default 50 in table format, all in the others)."))] = None,
) -> None:
    """Run ad-hoc read-only SQL over the lake. DuckDB's error messages come through whole."""
    from ..engines.duckdb import check_read_only, query_lake

    check_read_only(query)
    ws = workspace(ctx).require()
    shown = limit if limit is not None else (50 if fmt is Format.table else None)
    table = query_lake(ws.lake, query, None if shown is None else shown + 1)
    more = shown is not None and table.num_rows > shown
    table = with_units(table.slice(0, shown) if more else table, ws.tables())
    output.emit(table, fmt, out)
    if more:
        output.note(f"(first {shown:,} rows; use --limit N, or --format csv for all)")


def with_units(table, specs) -> object:
    """Units of the result columns whose names are lake columns with one unit everywhere."""
    from ..schema.base import unit_of

    units: dict[str, set[str]] = {}
    for spec in specs.values():
        for f in spec.columns:
            units.setdefault(f.name, set()).add(unit_of(f))
    fields = [f.with_metadata({"unit": next(iter(units[f.name]))})
              if len(units.get(f.name, ())) == 1 and next(iter(units[f.name])) else f for f in table.schema]
    import pyarrow as pa

    return table.cast(pa.schema(fields)) if fields else table


@app.command("tables", rich_help_panel="Look")
def tables_cmd(ctx: typer.Context, fmt: FormatOpt = Format.table, out: OutputOpt = None) -> None:
    """List the lake's tables (canonical, the workspace's own, and the cube tables) with their
    committed row counts."""
    ws = workspace(ctx).require()
    lake = ws.lake
    manifest = lake.manifest()
    rows = [{"table": name, "domain": spec.domain, "rows": lake.rows(name, manifest), "description": spec.description}
            for name, spec in lake.tables.items()]
    output.emit(output.arrow(rows), fmt, out, title=str(lake.root))


@app.command("schema", rich_help_panel="Look")
def schema_cmd(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Argument(metavar="TABLE", help="One table to show (a canonical, workspace or cube table).")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/data-model.md.")] = False,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Show the data model: every column with its type, unit and description. Cube tables
    written by ``opencem evaluate`` are included when the workspace has them."""
    from ..schema import TABLES
    from ..schema.docs import render_markdown

    if markdown:
        print(render_markdown(), end="")
        return
    ws = workspace(ctx)
    specs = ws.tables() if ws.exists or (ws.root / "sources").is_dir() else dict(TABLES)
    if table and table not in specs:
        from ..errors import suggest

        output.fail(f"unknown table {table!r}{suggest(table, specs)}; see `opencem tables` "
                    f"(cube tables appear once `opencem evaluate` wrote them)")
    from ..schema.docs import columns_table

    chosen = {table: specs[table]} if table else specs
    if fmt is Format.table:
        output.emit({f"{name}: {spec.description}": columns_table({name: spec}, with_table=False)
                     for name, spec in chosen.items()}, fmt, out)
    else:
        output.emit(columns_table(chosen), fmt, out)
