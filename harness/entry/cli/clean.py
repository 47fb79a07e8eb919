"""``raftchaos clean``: remove every labelled Docker leftover and local processes of dead runs."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.entry.cli import app

EXIT_CLEAN, EXIT_ERRORS = 0, 1


@app.command("clean")
def clean(
    all_runs: Annotated[bool, typer.Option("--all", help="also remove resources of runs whose harness "
                                                         "still lives (or ran on another host), and "
                                                         "dead runs' directories that hold a failure")] = False,
) -> int:
    """Remove raftchaos-labelled Docker containers, networks and volumes of dead runs (saving each
    container's log into its run directory first), kill local node/Toxiproxy processes of dead runs
    and remove those runs' directories, except one holding a failure (an invalid verdict, a node
    that crashed for real, an unreadable history) unless --all.

    Does not start a Docker daemon. Exit 0 when everything was removed, 1 when something could not be
    (each printed as ``error: ...``)."""
    from harness.cleanup import clean_everything
    from harness.entry.cli.state import clean_state

    for line in clean_state(include_live=all_runs):  # a `raftchaos up` cluster: stale, or live with --all
        print(line)
    report = clean_everything(include_live=all_runs)
    for line in report.lines():
        print(line)
    return EXIT_ERRORS if report.errors else EXIT_CLEAN
