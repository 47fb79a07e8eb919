"""Helpers shared by the CLI command modules: the exit-code table, one-line errors, ``key=value``
parsing, the open-faults table, the ``--backend`` and ``--system`` options and making Docker ready."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from harness.errors import SetupError
from harness.spec import BackendName, ClusterSpec

if TYPE_CHECKING:  # rich is imported where a table is drawn: ``check`` answers against the clock
    from rich.table import Table

# The exit-code table every verdict-ending command follows (Jepsen's convention for 0/1/2; bad input
# is kept apart from "unknown" so a script can tell "the system was not judged" from "you typed it
# wrong"). README "Verdicts and exit codes" and the ``--help`` epilog show the same table.
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNKNOWN = 2
EXIT_ENVIRONMENT = 3  # no Docker daemon, Toxiproxy missing: this machine cannot run it
EXIT_BAD_INPUT = 254  # bad argument, option, config or file (one line naming it)
EXIT_INTERNAL = 255  # a bug in raftchaos (one line + where the traceback was saved)
EXIT_BY_VERDICT = {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "unknown": EXIT_UNKNOWN}

EXIT_TABLE = (f"Exit codes: {EXIT_VALID} valid, {EXIT_INVALID} invalid, {EXIT_UNKNOWN} unknown (the run's "
              f"overall verdict), {EXIT_ENVIRONMENT} this machine cannot run it (no Docker daemon, "
              f"Toxiproxy missing), {EXIT_BAD_INPUT} bad input (argument, option or file), "
              f"{EXIT_INTERNAL} internal error, 130 interrupted.")

# ``--backend``: None means "what the scenario file (or the recorded run) says, else local".
BackendOption = Annotated[BackendName | None, typer.Option(
    case_sensitive=False, show_default=False,
    help="local or docker (default: the scenario file's or the recorded run's, else local)")]


# ``--system``: None means kuduraft (the node of ``nodes/``); checked against the registry by
# ``system_choice`` (not at import: ``check`` answers against the clock and needs no system).
SystemOption = Annotated[str | None, typer.Option(
    "--system", metavar="NAME", show_default=False,
    help="the system under test: kuduraft (default) or etcd (harness.systems.registry)")]
DEFAULT_SYSTEM = "kuduraft"


def system_choice(name: str | None) -> str:
    """The ``--system`` value, checked: an unknown name is one line listing the systems, exit 254."""
    from harness.systems.registry import names

    chosen = DEFAULT_SYSTEM if name is None else name
    if chosen not in names():
        fail(f"--system {chosen}: unknown system (choose from {', '.join(names())})")
    return chosen


def with_system(spec: ClusterSpec, system: str) -> ClusterSpec:
    """``spec`` for ``system``. A system without runtime flags refuses node flags the spec sets
    (they would be silently ignored: the run would not be the one asked for), one line, exit 254."""
    from harness.systems.base import Capability
    from harness.systems.registry import system_for

    spec = ClusterSpec.from_dict({**spec.to_dict(), "system": system})
    flagged = sorted({*spec.flags, *(k for flags in spec.node_flags.values() for k in flags)})
    if flagged and Capability.RUNTIME_FLAGS not in system_for(system, spec).capabilities(spec.backend.value):
        fail(f"--system {system}: node flags ({', '.join(flagged)}) are not available for system {system}")
    return spec


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``raftchaos: <first line>`` on stderr and exit ``code`` (no traceback). The message
    starts with the file or argument at fault (``scenario.toml: ...``, ``--flag: ...``)."""
    print(f"raftchaos: {str(message).splitlines()[0] if message else 'failed'}", file=sys.stderr)
    raise typer.Exit(code)


def parse_value(text: str) -> Any:
    """A JSON value when the text is one (``3``, ``0.5``, ``true``, ``[1,2]``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``; exit 254 naming the bad item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{what}: must look like name=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def open_faults_table(faults: Iterable[dict[str, Any]], title: str) -> Table:
    """The running cluster's open faults (``GET /faults`` of the supervisor), one row per slot."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("slot", "fault", "targets", "term", "params"):
        table.add_column(column)
    for f in faults:
        table.add_row(str(f["slot"]), f["fault"], ",".join(f.get("targets") or []), str(f.get("term")),
                      str(f.get("params")))
    return table


def ensure_backend(backend: BackendName) -> None:
    """For ``docker``: make the daemon answer and the images exist (rich progress on stderr), as
    ``python -m harness.docker setup`` does. On failure one line and exit 3 (no daemon, or the
    images cannot be built here)."""
    if backend is not BackendName.DOCKER:
        return
    from rich.console import Console

    from harness.docker.daemon import DockerUnavailable, no_daemon_reason
    from harness.docker.ready import EXIT_NO_DAEMON, ensure_ready

    try:
        client, _images = ensure_ready(Console(stderr=True))
    except DockerUnavailable as exc:
        fail(no_daemon_reason(exc), code=EXIT_NO_DAEMON)
    except SetupError as exc:
        fail(f"docker setup failed: {exc.message}", code=EXIT_ENVIRONMENT)
    client.close()
