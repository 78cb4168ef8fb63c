"""``opencem sources``: the workspace's own tables (new feeds defined by a schema file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

app = typer.Typer(help="The workspace's own tables: new feeds defined by a schema file.", no_args_is_help=True)
APPS = [(app, "sources", "Data")]


@app.command("add")
def sources_add(ctx: typer.Context,
                schema: Annotated[Path, typer.Argument(metavar="FILE", help="A NAME.schema.yaml file.")]) -> None:
    """Check a table schema file and add it to the workspace (replacing one of the same name)."""
    from ..schema.user import add_table_spec

    table = add_table_spec(schema, workspace(ctx).sources_dir)
    output.say(f"table [bold]{table.name}[/bold] ({len(table.columns)} columns) added; load it with "
               f"opencem ingest FILE --mapping MAPPING.yaml, or name files {table.name}.csv")


@app.command("list")
def sources_list(ctx: typer.Context, fmt: FormatOpt = Format.table, out: OutputOpt = None) -> None:
    """List the workspace's own tables and their columns."""
    from ..schema import TABLES
    from ..schema.docs import columns_table

    ws = workspace(ctx)
    extra = {n: t for n, t in ws.tables().items() if n not in TABLES and t.domain != "indicators"}
    if not extra:
        output.note(f"no tables of its own in {ws.sources_dir} yet (add one with opencem sources add)")
    output.emit(columns_table(extra), fmt, out, title="The workspace's own tables")
