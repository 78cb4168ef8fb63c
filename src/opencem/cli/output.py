"""What every command prints: tables for people, CSV/JSON/JSON Lines/Parquet for programs,
one red sentence per error, progress on stderr, and the exit codes scripts test.

Listing commands build Arrow tables (units in field metadata) and call :func:`emit`, which
renders them in the chosen ``--format`` to stdout or ``--output FILE``. In tables numbers are
rounded for reading (float32 noise such as 29.850000381469727 shows as 29.85) and headers carry
units; machine formats keep every value exact and every name plain. Off a terminal nothing is
clipped to 80 columns.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

# Exit codes (documented in docs/operations.md; scripts and schedulers test them).
EXIT_OK = 0
EXIT_PROBLEMS = 1       # a check found problems (kpi check, ingest --dry-run of a bad mapping)
EXIT_ERROR = 2          # the command could not run: bad option, unreadable definition, ...
EXIT_PARTIAL = 3        # some files were rejected or some rows quarantined; the rest committed
EXIT_NOTHING_LOADED = 4  # every file given was rejected (or every row quarantined)
EXIT_BUSY = 75          # another opencem process is writing to the lake: retry later (EX_TEMPFAIL)

WIDE = 12  # beyond this many columns a table prints one column-value list per row


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


FormatOpt = Annotated[Format, typer.Option(
    "--format", "-f", metavar="FORMAT", help="table (for people), csv, json, jsonl or parquet (for programs).",
    case_sensitive=False, show_default=True)]


def outside_lake(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """An option callback: a file to write, refused inside the workspace's lake folder (or any
    other lake, a folder ``lake`` with a ``_manifest.json``), since overwriting one of its files
    would damage the lake."""
    if value is None:
        return None
    from .context import state

    target = Path(value).expanduser().resolve()
    lakes = [state(ctx).workspace.root / "lake"]
    lakes += [p for p in target.parents if p.name == "lake" and (p / "_manifest.json").is_file()]
    for lake in lakes:
        if target == lake or lake in target.parents:
            fail(f"{param.opts[0]} {value} is inside the lake folder {lake}, "
                 "whose files only opencem may write; choose a file outside it")
    return value


OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="FILE", callback=outside_lake, help="Write the result to FILE instead of stdout.")]

_consoles: dict[bool, tuple[object, Console]] = {}


def console(stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr), made on first use (Rich costs 70 ms to
    import) and again whenever the stream is swapped (a test runner's capture)."""
    stream = sys.stderr if stderr else sys.stdout
    cached = _consoles.get(stderr)
    if cached is None or cached[0] is not stream:
        from rich.console import Console

        tty = _isatty(stream)
        # Off a terminal (a pipe, a file, a scheduler's log) lines are not cut at 80 columns.
        con = Console(file=stream, width=None if tty else 10_000, highlight=False, soft_wrap=not tty)
        con.on_broken_pipe = _broken_pipe  # Rich would exit 1 itself; the command line exits 141
        cached = _consoles[stderr] = (stream, con)
    return cached[1]


def _broken_pipe() -> None:
    raise BrokenPipeError


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False


def say(text: str, stderr: bool = False) -> None:
    """One line of Rich markup (e.g. ``[dim]...[/dim]``) on stdout or stderr."""
    console(stderr).print(text, soft_wrap=True)


def rule(title: str) -> None:
    """A section heading across the terminal (80 columns off one)."""
    con = console()
    if con.is_terminal:
        con.rule(title)
    else:
        from rich.rule import Rule

        con.print(Rule(title), width=80)


def note(text: str) -> None:
    """A remark beside the result (skipped sources, what was assumed): on stderr, so stdout
    stays the result alone when it is piped."""
    say(f"[dim]{escape(text)}[/dim]", stderr=True)


def warn(text: str) -> None:
    say(f"[yellow]warning:[/yellow] {escape(text)}", stderr=True)


def error(text: str) -> None:
    say(f"[red]error:[/red] {escape(text)}", stderr=True)


def escape(text: str) -> str:
    # Messages quote user input (file names, SQL) that may contain [brackets].
    return text.replace("[", r"\[")


def fail(text: str, code: int = EXIT_ERROR):
    """Print one error sentence and leave with ``code``."""
    error(text)
    raise typer.Exit(code)


@contextmanager
def progress(description: str) -> Iterator:
    """A progress bar on stderr, silent when stderr is not a terminal. Yields
    ``update(description=None, completed=None, total=None, advance=None)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=None)

        def update(**fields: Any) -> None:
            bar.update(task, **{k: v for k, v in fields.items() if v is not None})
        yield update


# --- machine and human renderings ---------------------------------------------------------------

def emit(result: pa.Table | dict[str, pa.Table], fmt: Format = Format.table, output: Path | None = None,
         title: str | None = None, limit: int | None = None) -> None:
    """Render one table, or named sections of tables, in ``fmt`` to stdout or ``output``.

    Sections render as titled tables, a JSON object of lists, JSON Lines with a ``section``
    field; CSV and Parquet hold one table, so they need a single section. A file that cannot
    be written is one sentence (exit 2)."""
    try:
        _emit(result, Format(fmt), output, title, limit)
    except BrokenPipeError:
        raise
    except OSError as err:
        fail(f"cannot write {output or 'the output'}: {err.strerror or err}")


def _emit(result, fmt: Format, output: Path | None, title: str | None, limit: int | None) -> None:
    sections = result if isinstance(result, dict) else {title or "": result}
    if fmt is not Format.table:
        sections = {name: machine_ready(t, fmt) for name, t in sections.items()}
    if fmt in (Format.csv, Format.parquet) and len(sections) > 1:
        names = ", ".join(sections)
        fail(f"--format {fmt.value} holds one table and this result has {len(sections)} ({names}); "
             "use json or jsonl, or pick one with --section")
    if fmt is Format.table:
        out = _open_text(output)
        try:
            for name, table in sections.items():
                _print_table(table, name or title, limit, out)
        finally:
            _close(out)
        return
    if fmt is Format.parquet:
        import pyarrow.parquet as pq

        (table,) = sections.values()
        if output is None:
            if sys.stdout.isatty():
                fail("--format parquet is binary; give --output FILE or redirect stdout to a file")
            pq.write_table(table, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            pq.write_table(table, output)
        return
    if fmt is Format.csv:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        import csv
        import io

        (table,) = sections.values()
        table = _plain(table)
        head = io.StringIO()
        csv.writer(head, lineterminator="\n").writerow(table.column_names)  # Arrow quotes every header
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed", include_header=False))
        text = head.getvalue() + sink.getvalue().to_pybytes().decode()
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            Path(output).write_text(text, encoding="utf-8")
        return
    out = _open_text(output)
    try:
        if fmt is Format.json:
            payload: Any = {n: _records(t) for n, t in sections.items()} if len(sections) > 1 else \
                _records(next(iter(sections.values())))
            out.write(json.dumps(payload, indent=1, default=_json_default, allow_nan=False) + "\n")
        else:
            for name, table in sections.items():
                for row in _records(table):
                    row = {"section": name, **row} if len(sections) > 1 else row
                    out.write(json.dumps(row, default=_json_default, allow_nan=False) + "\n")
    finally:
        _close(out)


def machine_ready(table: pa.Table, fmt: Format) -> pa.Table:
    """A table every machine format writes the same way: float32 widened to its exact float64
    value, intervals as ISO 8601 durations, and (CSV) times as ISO 8601 text; repeated column
    names refused, since a row object can hold only one of them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        fail(f"the result has more than one column named {', '.join(repeated)}; give each column its own name "
             "(… AS name) for --format " + fmt.value)
    for i, f in enumerate(table.schema):
        column, kind = table.column(i), f.type
        if pa.types.is_floating(kind) and kind.bit_width < 64:
            column = column.cast(pa.float64())
        elif pa.types.is_interval(kind) or pa.types.is_duration(kind):
            column = pa.array([iso_duration(v) for v in column.to_pylist()], pa.string())
        elif pa.types.is_timestamp(kind) and fmt is Format.csv:
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S" + ("Z" if kind.tz in ("UTC", "+00:00") else ""))
        else:
            continue
        table = table.set_column(i, f.with_type(column.type), column)
    return table


def iso_duration(value: Any) -> str | None:
    """An interval (DuckDB's month-day-nanosecond, or a timedelta) as ISO 8601: P1M2DT3.5S."""
    if value is None:
        return None
    from decimal import Decimal

    if hasattr(value, "total_seconds"):  # a timedelta: whole microseconds
        months, days = 0, 0
        nanos = ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 1000
    else:
        months, days, nanos = value.months, value.days, value.nanoseconds
    seconds = format((Decimal(nanos) / 10**9).normalize(), "f")  # exact: 5372.827, not 5372.83
    return f"P{months}M{days}DT{seconds}S" if months or days else f"PT{seconds}S"


def _open_text(output: Path | None):
    return sys.stdout if output is None else open(output, "w", encoding="utf-8")


def _close(out) -> None:
    if out is sys.stdout:
        out.flush()
    else:
        out.close()


def _plain(table: pa.Table) -> pa.Table:
    """Columns CSV can carry: nested values as JSON text."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            texts = [None if v is None else json.dumps(v, default=_json_default) for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(texts, pa.string()))
    return table


def _records(table: pa.Table) -> list[dict]:
    from decimal import Decimal

    rows = table.to_pylist()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None  # JSON has no NaN or infinity
            elif isinstance(v, Decimal):  # DuckDB sums of integers are HUGEINT, decimals in Arrow
                row[k] = int(v) if v == v.to_integral_value() else float(v)
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
        return value.isoformat(timespec=spec).replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def unit_of(field: pa.Field) -> str:
    meta = field.metadata or {}
    return meta.get(b"unit", b"").decode()


# How a column name spells a unit when it ends in it (dl_user_throughput_mbps is in Mbit/s,
# handle_time_s and seconds in s). Other units are spelled as written: "dBm" -> _dbm.
UNIT_SPELLINGS = {
    "%": ("pct", "percent"), "s": ("s", "sec", "secs", "seconds"), "ms": ("ms",), "min": ("min", "mins", "minutes"),
    "h": ("h", "hours"), "kbit/s": ("kbps",), "mbit/s": ("mbps",), "gbit/s": ("gbps",), "km/h": ("kmh",),
}


def names_its_unit(name: str, unit: str) -> bool:
    """Whether ``name`` already ends in ``unit`` (``setup_time_ms`` in ms, ``seconds`` in s)."""
    generic = unit.lower().replace("%", "pct").replace("/", "p").replace(" ", "")
    name = name.lower()
    return any(name == t or name.endswith("_" + t) for t in (*UNIT_SPELLINGS.get(unit.lower(), ()), generic))


def header(field: pa.Field) -> str:
    """Column header for people: the name, and the unit unless the name already says it."""
    unit = unit_of(field)
    if not unit or unit == "count" or names_its_unit(field.name, unit):
        return field.name
    return f"{field.name} ({unit})"


def cell(value: Any) -> str:
    """A value as a person reads it in a table."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return number(value)
    if type(value).__name__ == "Decimal":
        return cell(int(value) if value == value.to_integral_value() else float(value))
    if isinstance(value, datetime):
        stamp = value.strftime("%Y-%m-%d %H:%M:%S" if value.second or value.microsecond else "%Y-%m-%d %H:%M")
        return stamp + ("Z" if value.utcoffset() is not None and not value.utcoffset() else "")
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=_json_default)
    if hasattr(value, "nanoseconds") or hasattr(value, "total_seconds"):
        return iso_duration(value)
    return str(value)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``1,234 files``: the number with its noun agreeing."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def number(value: float) -> str:
    """Six significant digits (float32 noise gone), thousands separated past a million."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    text = f"{value:.6g}"
    return text if "e" not in text else f"{value:.3g}"


def _print_table(table: pa.Table, title: str | None, limit: int | None, out) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    # A file gets what a pipe would (the same console settings as stdout off a terminal).
    target = console() if out is sys.stdout else Console(file=out, width=10_000, highlight=False, soft_wrap=True)
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    fields = list(table.schema)
    if len(fields) > WIDE:  # a cube row has a hundred columns: one column-value list per row
        for i, row in enumerate(rows):
            record = RichTable("column", "value", title=f"{title or 'row'} {i + 1}", title_justify="left")
            for f in fields:
                record.add_row(header(f), cell(row[f.name]))
            target.print(record)
    else:
        rich = RichTable(*[header(f) for f in fields], title=title or None)
        for f, column in zip(fields, rich.columns):
            if _numeric(f):
                column.justify = "right"
        for row in rows:
            rich.add_row(*[escape(cell(row[f.name])) for f in fields])
        target.print(rich)
    if limit is not None and table.num_rows > limit:
        note(f"(first {limit:,} of {table.num_rows:,} rows; --limit 0 shows all)")


def _numeric(field: pa.Field) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)


def arrow(rows: list[dict], units: dict[str, str] | None = None, columns: list[str] | None = None) -> pa.Table:
    """A table from row dicts, with ``units`` as field metadata (how listings carry units)."""
    import pyarrow as pa

    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns or []})
    if columns and rows:
        table = table.select(columns)
    units = units or {}
    fields = [f.with_metadata({"unit": units[f.name]}) if units.get(f.name) else f for f in table.schema]
    return table.cast(pa.schema(fields))
