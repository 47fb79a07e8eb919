"""The ``raftchaos`` command line: one typer app; each command group lives in its own module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer

app = typer.Typer(name="raftchaos", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Chaos-testing harness for a kuduraft-style Raft cluster.")

# Command modules register themselves on ``app`` when imported; add new groups (up, status, fault,
# down, run, replay, clean) as modules here, one import each.
from harness.cli import clean as _clean  # noqa: E402,F401
from harness.cli import faultcmd as _faultcmd  # noqa: E402,F401
from harness.cli import report as _report  # noqa: E402,F401
from harness.cli import scenario as _scenario  # noqa: E402,F401
from harness.cli import status as _status  # noqa: E402,F401
from harness.cli import up as _up  # noqa: E402,F401

EXIT_BAD_INPUT = 2


# typer >= 0.20 vendors click (its exceptions derive from TyperException); older typer raises
# click's own. Catch both so a usage error is always one line, whatever typer is installed.
_CLI_ERRORS: tuple[type[Exception], ...] = (click.ClickException, typer.TyperException)
_EXITS: tuple[type[Exception], ...] = (click.exceptions.Exit, typer.Exit)
_ABORTS: tuple[type[BaseException], ...] = (click.Abort, typer.Abort)


def _error_line(exc: Exception) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = f"raftchaos {ctx.info_name}" if ctx is not None and ctx.parent is not None else "raftchaos"
    return f"raftchaos: error: {message} (see: {where} --help)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``raftchaos = "harness.cli:main"``). Usage errors print one line and exit 2,
    never a traceback or a usage box: the caller is often a script reading the exit code.
    Returns the exit code when ``argv`` is given (tests); exits the process otherwise."""
    try:
        result = app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="raftchaos",
                     standalone_mode=False)
    except _EXITS as exc:
        code = int(getattr(exc, "exit_code", 0) or 0)
    except _ABORTS:
        print("raftchaos: aborted", file=sys.stderr)
        code = 130
    except _CLI_ERRORS as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
        else:
            print(_error_line(exc), file=sys.stderr)
        code = EXIT_BAD_INPUT
    else:
        code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code
