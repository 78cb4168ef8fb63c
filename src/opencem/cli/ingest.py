"""``opencem ingest``: load files into the lake, check them (``--dry-run``), watch a landing
folder, and show the ingest log (``--report``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .options import completes, parse_date, vendors
from .output import Format, FormatOpt, OutputOpt

app = typer.Typer()
APPS = [(app, None)]

MAX_NOTES = 10  # per-file remarks shown in table format
REPORT_ROWS = 20  # rows per table shown in table format (--report sections, a dry run's quarantine reasons)
FIRST_BAD_ROWS = 10  # a dry run's first bad rows, in every format
DRY_RUN_SECTIONS = ("files", "would_quarantine", "first_bad_rows")
EXIT_OF = {"ok": output.EXIT_OK, "partial": output.EXIT_PARTIAL, "nothing": output.EXIT_NOTHING_LOADED}


def _sections() -> list[str]:
    from ..ingest.report import SECTIONS

    return [*SECTIONS, *DRY_RUN_SECTIONS]


@app.command("ingest", rich_help_panel="Data")
def ingest_cmd(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(metavar="PATH", help="Files or folders to load.")] = None,
    as_of: Annotated[str | None, typer.Option(metavar="DATE", help=(
        "Snapshot date for cells/subscribers, and the date mapping files can use (YYYY-MM-DD). A new "
        "date on a file loaded before loads it again, replacing its earlier rows."))] = None,
    mapping: Annotated[Path | None, typer.Option(metavar="FILE", help=(
        "Column mapping file for sources whose columns differ from the canonical ones. A corrected "
        "mapping loads the files again, replacing their earlier rows."))] = None,
    vendor: Annotated[str | None, typer.Option(metavar="NAME", autocompletion=completes(vendors), help=(
        "Read every PM file with this vendor's counter dictionary (default: detected from the file "
        "or its pm/VENDOR/ folder)."))] = None,
    reload: Annotated[bool, typer.Option("--reload", help=(
        "Load the files again even if they were loaded before; the rows their earlier load "
        "committed are replaced in the same commit."))] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Read and check everything, show what would load and why rows would be quarantined, "
        "and commit nothing."))] = False,
    watch: Annotated[Path | None, typer.Option(metavar="DIR", help=(
        "Watch this landing folder and load files as they arrive (Ctrl-C to stop)."))] = None,
    interval: Annotated[float, typer.Option(min=0.1, metavar="SECONDS", help="Seconds between scans with --watch.")] = 5.0,
    report: Annotated[bool, typer.Option("--report", help="Show the ingest log instead of loading.")] = False,
    section: Annotated[str | None, typer.Option(metavar="NAME", autocompletion=completes(_sections), help=(
        "Only this part: with --report summary, quarantine or rejected; with --dry-run files, "
        "would_quarantine or first_bad_rows. csv and parquet need one."))] = None,
    limit: Annotated[int | None, typer.Option(min=0, metavar="N", help=(
        f"Rows per table of --report or of a dry run's quarantine, 0 for all (default: {REPORT_ROWS} "
        f"in a table on stdout without --section, else all; a dry run's first bad rows: {FIRST_BAD_ROWS})."
        ))] = None,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Load source files into the workspace lake: validated, atomic, nothing loaded twice.

    Exit code 0 when everything loaded (or already was), 3 when some files were rejected or
    rows quarantined (the rest is committed), 4 when nothing could be loaded, 2 on bad input."""
    ws = workspace(ctx)
    if section is not None and not (report or dry_run):
        output.fail("--section picks a part of --report or of --dry-run; give one of them")
    if report:
        _show_log(ws, section, fmt, out, limit)
        return
    if watch is not None:
        _watch(ws, watch, interval, Path(mapping) if mapping else None, vendor)
        return
    if not paths:
        output.fail("give at least one file or folder to ingest, or --watch DIR, or --report")
    if section is not None and section not in DRY_RUN_SECTIONS:
        output.fail(f"--section {section!r} is not one of {', '.join(DRY_RUN_SECTIONS)} (the parts of --dry-run)")
    from ..ingest.load import ingest

    started = time.perf_counter()
    with output.progress("checking" if dry_run else "ingesting") as update:
        result = ingest(ws.lake, paths, as_of=parse_date(as_of, "--as-of"), mapping=mapping,
                        rejected_dir=ws.rejected_dir, dictionaries=ws.dictionaries_dir, reload=reload,
                        dry_run=dry_run, vendor=vendor,
                        progress=lambda name, rows, total: update(advance=1, total=total,
                                                                  description=Path(name).name))
    _print_result(ws, result, time.perf_counter() - started, fmt, out, section, limit)
    raise typer.Exit(EXIT_OF[result.outcome])


def _print_result(ws, result, elapsed: float, fmt: Format, out: Path | None,
                  section: str | None = None, limit: int | None = None) -> None:
    rows = result.rows()
    bad = _quarantine_sections(result.quarantine, limit, result.files) if result.dry_run else {}
    if fmt is Format.table:
        title = "Would load (dry run: nothing committed)" if result.dry_run else f"Ingested into {ws.lake.root}"
        output.emit(output.arrow([{"table": t, "rows": n} for t, n in sorted(rows.items())],
                                 columns=["table", "rows"]), title=title, output=out)
    elif result.dry_run:  # what a CI job reads: the files, why rows would be quarantined, the first of them
        sections = {"files": _files_table(result), **bad}
        output.emit({section: sections[section]} if section else sections, fmt, out)
    else:
        output.emit(_files_table(result), fmt, out)
    verb = "would load" if result.dry_run else "loaded"
    summary = (f"{output.count(result.count('loaded'), 'file')} {verb}, {result.count('replaced')} replaced earlier "
               f"content, {result.count('duplicate')} already loaded, {result.count('rejected')} rejected; "
               f"{output.count(sum(rows.values()), 'row')} in {elapsed:.1f} s; "
               f"{output.count(result.quarantined, 'row')} quarantined")
    output.say(summary, stderr=True)
    dictionaries: dict[str, tuple[set, set]] = {}  # label -> (files, counters no entry maps)
    notes = []
    for f in result.files:
        name = f.source.path.name
        if f.status == "rejected":
            kept = "" if result.dry_run else f" (copy kept in {ws.rejected_dir})"
            output.say(f"[yellow]rejected:[/yellow] {output.escape(f.message)}{kept}", stderr=True)
            continue
        if f.dictionary and f.status != "duplicate":
            files, unmapped = dictionaries.setdefault(f.dictionary, (set(), set()))
            files.add(f.source.path)
            unmapped.update(f.unmapped)
        # What replaced what is counted in the summary line; other remarks are listed.
        remark = "; ".join(p for p in (f.message or "").split("; ") if not p.startswith(("replaces", "reloaded")))
        if remark and f.status != "duplicate":
            notes.append(f"{name}: {remark}")
    for label, (files, unmapped) in dictionaries.items():
        names = sorted(unmapped)
        output.note(f"{output.count(len(files), 'PM file')} read with dictionary {label}"
                    + (f"; {len(names)} counters no entry maps are kept under the vendor's names "
                       f"(e.g. {', '.join(names[:3])})" if names else ""))
    for text in notes[:MAX_NOTES]:
        output.note(text)
    if len(notes) > MAX_NOTES:
        output.note(f"... and {len(notes) - MAX_NOTES} more files with notes (all of them: --format json)")
    if fmt is Format.table and bad and bad["would_quarantine"].num_rows:
        _show_quarantine(bad, REPORT_ROWS if limit is None else limit or None)


def _files_table(result):
    """One row per file and table: what a script checks after a load."""
    return output.arrow([{
        "source_path": str(f.source.path), "table": f.table, "status": f.status, "rows_read": f.rows_read,
        "rows_accepted": f.rows_accepted, "rows_quarantined": f.rows_quarantined, "dictionary": f.dictionary,
        "unmapped_counters": len(f.unmapped), "message": f.message or None, "dry_run": result.dry_run,
    } for f in result.files], columns=["source_path", "table", "status", "rows_read", "rows_accepted",
                                       "rows_quarantined", "dictionary", "unmapped_counters", "message", "dry_run"])


def _quarantine_sections(quarantine, limit: int | None, files=()) -> dict:
    """A dry run's quarantine as two tables: rows per (table, field, reason), most first, and
    the first bad rows by file and row; ``limit`` rows of each (0 all; default: every reason and
    FIRST_BAD_ROWS bad rows). A bad row's file is spelled as in ``files`` (as given), so the
    two sections join on it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    reason_columns = ["table", "field", "reason", "rows"]
    row_columns = ["file", "row", "field", "value", "reason"]
    if quarantine is None or not quarantine.num_rows:
        return {"would_quarantine": output.arrow([], columns=reason_columns),
                "first_bad_rows": output.arrow([], columns=row_columns)}
    reasons = quarantine.group_by(["table_name", "field", "reason"]).aggregate([("row_number", "count")])
    reasons = reasons.sort_by([("row_number_count", "descending"), ("table_name", "ascending")])
    reasons = pa.table([reasons["table_name"], reasons["field"], reasons["reason"], reasons["row_number_count"]],
                       names=reason_columns).slice(0, limit or None)
    first = quarantine.take(pc.sort_indices(quarantine, [("source_path", "ascending"), ("row_number", "ascending")]))
    shown = FIRST_BAD_ROWS if limit is None else limit or first.num_rows
    first = first.slice(0, shown)
    given = {}
    for f in files:
        path = Path(f.source.path)
        given.update({str(path.resolve()): str(path), str(path.absolute()): str(path)})
    where = pc.index_in(first["source_path"], value_set=pa.array(list(given), pa.string()))
    spelled = pc.coalesce(pa.array(list(given.values()), pa.string()).take(where), first["source_path"])
    first = pa.table([spelled, first["row_number"], first["field"], pc.cast(first["value"], pa.string()),
                      first["reason"]], names=row_columns)
    return {"would_quarantine": reasons, "first_bad_rows": first}


def _show_quarantine(bad: dict, limit: int | None) -> None:
    """Why rows would be quarantined (the first ``limit`` reasons), and the first of them, on stderr."""
    err = output.console(stderr=True)
    from rich.table import Table as RichTable

    table = RichTable("table", "field", "reason", title="Would be quarantined")
    table.add_column("rows", justify="right")
    reasons = bad["would_quarantine"]
    for r in reasons.slice(0, limit).to_pylist():
        table.add_row(r["table"], r["field"] or "", output.escape(r["reason"]), f"{r['rows']:,}")
    err.print(table)
    if limit is not None and reasons.num_rows > limit:
        output.note(f"(first {limit:,} of {reasons.num_rows:,} reasons; --limit 0 shows all)")
    table = RichTable("file", title="First bad rows")
    table.add_column("row", justify="right")
    for name in ("field", "value", "reason"):
        table.add_column(name)
    for r in bad["first_bad_rows"].to_pylist():
        table.add_row(Path(r["file"]).name, str(r["row"]), r["field"] or "",
                      output.escape(r["value"] or ""), output.escape(r["reason"]))
    err.print(table)


def _watch(ws, folder: Path, interval: float, mapping: Path | None, vendor: str | None) -> None:
    from ..ingest.watch import watch

    if not folder.is_dir():
        output.fail(f"{folder}: not a folder to watch")
    output.say(f"watching {folder} every {interval:g} s (Ctrl-C to stop); loaded files move to "
               f"{folder / '.done'}, unreadable ones to {folder / '.rejected'}")

    def on_file(path: Path, rep) -> None:
        f = rep.files[0]
        rows = sum(rep.rows().values())
        output.say(f"{time.strftime('%H:%M:%S')} {path.name}: {f.status}, {rows:,} rows, "
                   f"{rep.quarantined:,} quarantined" + (f" ({output.escape(f.message)})" if f.message else ""))

    stats = watch(ws.lake, folder, interval, mapping, on_file=on_file, dictionaries=ws.dictionaries_dir,
                  vendor=vendor)
    output.say(f"{stats.loaded} files loaded, {stats.duplicates} duplicates, {stats.rejected} rejected")


def _show_log(ws, section: str | None, fmt: Format, out: Path | None, limit: int | None = None) -> None:
    from ..ingest.report import SECTIONS, TITLES, ingest_log_report

    if section is not None and section not in SECTIONS:
        output.fail(f"--section {section!r} is not one of {', '.join(SECTIONS)} (the parts of --report)")
    ws.require()
    found = ingest_log_report(ws.lake, [section] if section else None)
    sections = {TITLES[n] if fmt is Format.table else n: t for n, t in found.items()}
    # A person reading every section on a terminal sees the first rows of each; a file gets them all.
    if limit is None:
        limit = REPORT_ROWS if fmt is Format.table and section is None and out is None else 0
    if limit and fmt is not Format.table:  # a table says what it left out; machine formats are cut here
        sections = {n: t.slice(0, limit) for n, t in sections.items()}
    output.emit(sections, fmt, out, limit=limit or None)
