"""The ``opencem`` command: mounts one Typer app per command group and owns what is global.

Global options (``--workspace``, ``--version``) work before or after the subcommand. Errors a
user can fix (:class:`~opencem.errors.OpencemError`) are caught here, once, and printed as one
sentence with exit code 2; see :mod:`.output` for the other exit codes. Start-up stays fast
because command modules import only Typer at the top; DuckDB, Arrow and SQLGlot load inside
the commands that use them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from .. import __version__
from ..errors import OpencemError
from . import context, output

WORKSPACE_ENV = "OPENCEM_WORKSPACE"
_GLOBAL_WITH_VALUE = ("--workspace", "-w")
_GLOBAL_FLAGS = ("--version",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front, where Click parses them
    (``opencem ingest X --workspace W`` means ``opencem --workspace W ingest X``). Nothing
    after ``--`` moves."""
    front, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in _GLOBAL_WITH_VALUE:
            # "-w DIR" moves whole; a bare "-w" at the end (or before another option) moves
            # alone, so the group says its value is missing.
            has_value = i + 1 < len(args) and not args[i + 1].startswith("-")
            front += args[i:i + 2] if has_value else [arg]
            i += 2 if has_value else 1
            continue
        if arg.startswith("--workspace=") or (arg.startswith("-w") and len(arg) > 2 and not arg.startswith("--")):
            front.append(arg)
        elif arg in _GLOBAL_FLAGS:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class OpencemGroup(TyperGroup):
    """The root group: global options anywhere, user errors as one sentence."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as err:  # a usage error: one line a script's log can hold
            if err.__class__.__name__ != "NoArgsIsHelpError":  # that one has printed the help
                output.error(err.format_message().replace("Value error, ", ""))
                ctx = getattr(err, "ctx", None)
                if ctx is not None:
                    output.say(f"[dim]see: {output.escape(ctx.command_path)} --help[/dim]", stderr=True)
            sys.exit(err.exit_code)
        except Abort:
            output.say("aborted", stderr=True)
            sys.exit(1)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
            sys.exit(141)
        sys.exit(code if isinstance(code, int) else 0)

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OpencemError as err:
            report(err)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            output.say("interrupted", stderr=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `opencem ... | head`: the reader left; that is not an error
            _quiet_stdout()
            raise typer.Exit(141) from None  # 128 + SIGPIPE, as a shell reports it


def _quiet_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def report(err: OpencemError) -> None:
    """Print a user error: each issue of a definition file on its own line."""
    from ..specfile import SpecError

    if isinstance(err, SpecError):
        for issue in err.issues:
            (output.error if issue.level == "error" else output.warn)(str(issue))
    else:
        output.error(str(err))


# Flags read as flags in --help ("--full"), not "--full <bool>"; a parameter with a metavar
# (FILE, DATE) shows that instead of its Python type.
_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _option_type(self, ctx)
_argument_type = TyperArgument.display_type_rich
TyperArgument.display_type_rich = lambda self, ctx: None if self.metavar else _argument_type(self, ctx)

app = typer.Typer(cls=OpencemGroup, no_args_is_help=True, add_completion=True, rich_markup_mode="markdown",
                  help="opencem: open-source Customer Experience Management for telecom operators.",
                  epilog="Exit codes: 0 done; 1 a check found problems; 2 bad input or options; "
                         "3 partly loaded (files rejected or rows quarantined); 4 nothing loaded; "
                         "75 the lake is busy (another opencem is writing): retry later.")


def _version(value: bool) -> None:
    if value:
        print(f"opencem {__version__}")
        raise typer.Exit()


def _workspace(value: str | None) -> str | None:
    # Path("") is the current folder: an empty --workspace (an unset shell variable) must not
    # silently become the folder the command runs in.
    if value is not None and not value.strip():
        raise typer.BadParameter("is empty; give the workspace folder, or leave the option out for "
                                 "./opencem-workspace")
    return value


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[str | None, typer.Option(
        "--workspace", "-w", metavar="DIR", envvar=WORKSPACE_ENV, show_envvar=True, callback=_workspace,
        help="Workspace folder (default ./opencem-workspace). Works before or after the subcommand.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = context.State(Path(workspace) if workspace is not None else None)


def _mount() -> None:
    from . import alerts, db, demo, diagnose, indicators, ingest, qoe, rules, simulate, sources, sql, stream, stream_spark

    for module in (demo, simulate, ingest, sources, sql, indicators, stream, stream_spark, rules, alerts, diagnose, qoe,
                   db):
        for sub, name, *panel in module.APPS:
            app.add_typer(sub, name=name, rich_help_panel=panel[0] if panel else None)


_mount()


def run() -> None:
    """Console entry point."""
    app(prog_name="opencem")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
