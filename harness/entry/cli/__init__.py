"""The ``raftchaos`` command line: one typer app; each command group lives in its own module.

Exit codes follow one table (``harness.entry.cli.common.EXIT_TABLE``, README "Verdicts and exit codes"):
0 valid, 1 invalid, 2 unknown, 3 environment, 254 bad input, 255 internal error, 130 Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import click
import typer

from harness.entry.cli import clock
from harness.entry.cli.common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_TABLE

app = typer.Typer(name="raftchaos", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=EXIT_TABLE,
                  help="Chaos-testing harness for a kuduraft-style Raft cluster.")

# Command modules register themselves on ``app`` when imported; add new groups (up, status, fault,
# down, run, replay, clean) as modules imported by ``load_commands``, in --help order, rather
# than here: ``raftchaos check`` answers under a time limit that counts from the process's
# start, and the other commands pull in requests, docker and the report renderers (~0.5 s).
# A command whose module alone is loaded when it is the first argument.
_LIGHT_COMMANDS = frozenset({"check"})

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "app", "load_commands", "main"]


def load_commands(first_arg: str | None = None) -> None:
    """Register the command modules on ``app``: only the one ``first_arg`` needs when it names a
    light command (``check``), every module otherwise (``--help`` lists them all). Plain imports,
    not importlib strings, so import-linter sees every edge."""
    if first_arg in _LIGHT_COMMANDS:
        from harness.entry.cli import report  # noqa: F401 - registers `check`
        return
    from harness.entry.cli import clean, faultcmd, report, scenario, status, up  # noqa: F401


# typer >= 0.20 vendors click (its exceptions derive from TyperException); older typer raises
# click's own. Catch both so a usage error is always one line, whatever typer is installed.
_CLI_ERRORS: tuple[type[Exception], ...] = (click.ClickException, typer.TyperException)
_EXITS: tuple[type[Exception], ...] = (click.exceptions.Exit, typer.Exit)
_ABORTS: tuple[type[BaseException], ...] = (click.Abort, typer.Abort, KeyboardInterrupt)


def _error_line(exc: Exception) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = f"raftchaos {ctx.info_name}" if ctx is not None and ctx.parent is not None else "raftchaos"
    first = message.splitlines()[0] if message else "bad usage"
    return f"raftchaos: {first} (see: {where} --help)"


def _save_traceback() -> Path | None:
    """Write the current exception's traceback under ``$RAFTCHAOS_HOME/crashes`` (None if it cannot)."""
    folder = Path(os.environ.get("RAFTCHAOS_HOME", ".raftchaos")) / "crashes"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"raftchaos-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
        path.write_text(f"raftchaos {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}", encoding="utf-8")
        return path
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``raftchaos = "harness.entry.cli:main"``). Usage errors print one line and exit 254,
    a bug in raftchaos one line and 255 (traceback saved to a file, not printed): the caller is
    often a script reading the exit code, and 1/2 are reserved for invalid/unknown verdicts.
    Returns the exit code when ``argv`` is given (tests); exits the process otherwise."""
    args = list(argv) if argv is not None else sys.argv[1:]
    # Run as the command, limits count from the process's start; called in-process (tests), from now.
    clock.command_started = clock.process_started() if argv is None else time.monotonic()
    try:
        load_commands(args[0] if args else None)
        result = app(args=args, prog_name="raftchaos", standalone_mode=False)
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
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback goes to a file
        saved = _save_traceback()
        where = f"traceback saved to {saved}" if saved else "the traceback could not be saved"
        print(f"raftchaos: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              f" ({where})", file=sys.stderr)
        code = EXIT_INTERNAL
    else:
        code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code
