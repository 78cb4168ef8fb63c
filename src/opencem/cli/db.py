"""``opencem db``: the operational store's database and its schema revisions."""

from __future__ import annotations

import typer

from . import output
from .context import workspace

app = typer.Typer(no_args_is_help=True, help=(
    "The operational store (alerts, rule state, silences, notifications, actions): the workspace's "
    "store.sqlite, or the database $OPENCEM_DATABASE_URL names."))
APPS = [(app, "db", "Operate")]


@app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the store's migrations up to this opencem's revision; a no-op when it is there.
    Run it after installing a newer opencem (back the database up first)."""
    from ..store import upgrade

    database = workspace(ctx).database()
    before, after = upgrade(database)
    if before == after:
        output.say(f"the store {output.escape(database.shown)} is at revision {after}, this opencem's; nothing to do")
    else:
        output.say(f"upgraded the store {output.escape(database.shown)} from "
                   f"{'nothing' if before is None else 'revision ' + before} to revision {after}")


@app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the revision the store's database is at and this opencem's. Exits 1 when the
    database is behind (run `opencem db upgrade`)."""
    from ..store import current_revision, head_revision, revisions

    database = workspace(ctx).database()
    current, head = current_revision(database), head_revision()
    where = output.escape(database.shown)
    if current is None:
        output.say(f"{where}: no store yet (revision {head} is created on first use, or by `opencem db upgrade`)")
    elif current not in revisions():
        output.say(f"{where}: revision {current}, which this opencem (head {head}) does not know: a newer "
                   "opencem upgraded it")
        raise typer.Exit(output.EXIT_PROBLEMS)
    elif current == head:
        output.say(f"{where}: revision {current} (head)")
    else:
        output.say(f"{where}: revision {current}, behind this opencem's {head}; run `opencem db upgrade`")
        raise typer.Exit(output.EXIT_PROBLEMS)
