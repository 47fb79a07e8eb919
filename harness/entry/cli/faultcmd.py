"""``raftchaos fault add|heal|list``: faults on the running cluster, by catalog name and target."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness.entry.cli import app
from harness.entry.cli.common import fail, open_faults_table, parse_pairs
from harness.entry.cli.state import control, live_state, read_state
from harness.errors import ConfigError, HarnessError

fault_app = typer.Typer(no_args_is_help=True, help="Inject, heal and list faults on the running cluster.")
app.add_typer(fault_app, name="fault")


@fault_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="a fault name (raftchaos fault list)")],
    target: Annotated[str | None, typer.Option(help="leader, followers, one, minority, majority, all, "
                                                    "or ids like n1,n3")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="fault parameter name=value")] = None,
    for_s: Annotated[float | None, typer.Option(help="heal automatically after this many seconds")] = None,
) -> int:
    """Inject a fault into the running cluster (recorded in the run's history and schedule.jsonl)."""
    from faults.catalog import build_fault

    params = parse_pairs(param or [], "--param")
    if target is not None:
        params["target"] = target
    try:
        build_fault(name, params)
    except HarnessError as exc:
        fail(str(exc))
    if for_s is not None and for_s <= 0:
        fail(f"--for-s must be > 0, got {for_s}")
    try:
        line = control(live_state(), "POST", "/faults", {"name": name, "params": params, "for_s": for_s})
    except HarnessError as exc:
        fail(str(exc))
    resolved = line.get("resolved") or {}
    extra = f" links {', '.join(resolved['links'])}" if resolved.get("links") else ""
    print(f"slot {line['slot']}: {name} hit {', '.join(line.get('targets') or []) or '-'} in term "
          f"{line.get('term')}{extra}" + (f" (heals in {for_s:g} s)" if for_s else ""))
    return 0


@fault_app.command("heal")
def heal(
    slot: Annotated[int | None, typer.Argument(help="the slot `fault add` printed")] = None,
    all_faults: Annotated[bool, typer.Option("--all", help="heal every open fault")] = False,
) -> int:
    """Heal one open fault (by slot) or all of them."""
    if (slot is None) == (not all_faults):
        fail("give a slot or --all")
    try:
        line = control(live_state(), "POST", "/faults/heal", {"all": True} if all_faults else {"slot": slot})
    except HarnessError as exc:
        fail(str(exc))
    if all_faults:
        print(f"healed slots: {', '.join(map(str, line.get('healed_slots') or [])) or 'none were open'}")
    else:
        print(f"healed slot {slot}" + (f" ({line['error']})" if line.get("error") else ""))
    return 0


@fault_app.command("list")
def list_faults() -> int:
    """Every fault by name with its parameters, and the running cluster's open faults."""
    from faults.catalog import CATALOG

    console = Console()
    table = Table(title="faults")
    for column in ("name", "kind", "parameters", "what"):
        table.add_column(column)
    for entry in CATALOG.values():
        table.add_row(entry.name, entry.kind, ", ".join(entry.params), entry.help)
    console.print(table)
    doc = read_state()
    if doc is None:
        return 0
    try:
        open_faults = control(live_state(), "GET", "/faults", timeout_s=5).get("faults", [])
    except (ConfigError, HarnessError):
        return 0
    console.print(open_faults_table(open_faults, "open faults on the running cluster"))
    return 0
