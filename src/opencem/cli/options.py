"""Option types and parsers shared by the command modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Annotated

import typer

from ..errors import ConfigError, OpencemError


def completes(values: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """Shell completion for an option whose values are a list: ``values`` is read only when
    completing, so the modules that hold the lists stay unimported at start-up."""
    def complete(incomplete: str) -> list[str]:
        return [v for v in values() if v.startswith(incomplete)]
    return complete


def engines() -> Iterable[str]:
    from ..engines import ENGINES

    return ENGINES


def grains() -> Iterable[str]:
    from ..indicators.spec import GRAINS

    return GRAINS


def vendors() -> Iterable[str]:
    """Counter dictionaries: bundled, and the workspace's (as $OPENCEM_WORKSPACE or the default names it)."""
    from ..ingest.vendors import available
    from ..workspace import Workspace

    try:
        return sorted(available(Workspace.resolve().dictionaries_dir))
    except OpencemError:  # the workspace is a file: the bundled ones
        return sorted(available(None))


EngineOpt = Annotated[str, typer.Option(metavar="ENGINE", autocompletion=completes(engines),
                                        help="duckdb (embedded, default) or spark (PySpark; needs the spark extra).")]
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
