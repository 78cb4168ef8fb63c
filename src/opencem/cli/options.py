"""Option types and parsers shared by the command modules."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from ..errors import ConfigError

EngineOpt = Annotated[str, typer.Option(metavar="ENGINE", help="duckdb (embedded, default) or spark (PySpark; needs the spark extra).")]
FromOpt = Annotated[str | None, typer.Option("--from", metavar="DATE", help="First day, YYYY-MM-DD.")]
ToOpt = Annotated[str | None, typer.Option("--to", metavar="DATE", help="Last day, YYYY-MM-DD (inclusive).")]


def parse_date(value: str | None, option: str) -> date | None:
    """``value`` as a date; a bad one is a one-sentence error naming ``option``."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a date like 2026-11-02") from None
