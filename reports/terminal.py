"""Rich terminal report of saved runs, rendered from run directories alone (history + verdicts.json)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.history import Event
from harness.history_views import fault_windows, leader_changes, leaderships, node_samples
from reports.run_data import ReportError, RunData, load_run, overall_validity

STYLE = {"valid": "green", "invalid": "bold red", "unknown": "yellow"}
OUTCOME_STYLE = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow",
                 "unknown": "bold yellow"}
DEGRADATION_COLUMNS = (("requests_with_ops", "ops"), ("status_only_requests", "st-only"),
                       ("heartbeat_sends", "hb"))


@dataclass(frozen=True)
class RunRow:
    """One run as the terminal shows it."""

    test: str
    outcome: str
    verdict: str
    seed: int | None
    faults: list[str]
    recovery: list[str]
    leader_changes: int
    run_dir: Path
    verdicts: list[dict[str, Any]]
    problems: list[str]


def _extras(data: RunData) -> Mapping[str, Any]:
    """Fields the plugin adds beside the verdicts in verdicts.json (test id, outcome)."""
    try:
        raw = json.loads(data.run.verdicts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def faults_injected(events: Sequence[Event]) -> list[str]:
    """``name(targets)`` of every recorded fault, in order (``harness.history_views.fault_windows``);
    `` vacuous`` when its heal says it did not bite (in place, but e.g. no traffic crossed the cut)."""
    return [w.label() + (" [yellow]vacuous[/]" if w.vacuous else "") for w in fault_windows(events)]


def count_leader_changes(events: Sequence[Event]) -> int:
    """Leader changes as every report and checker counts them: leaderships (a new term with a
    leader) after the first (``harness.history_views.leaderships``)."""
    return leader_changes(leaderships(node_samples(events)))


def _recovery_cells(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    cells = []
    for verdict in verdicts:
        if verdict["checker"] != "recovery":
            continue
        for row in verdict["details"].get("faults", []):
            parts = []
            if row.get("new_leader_s") is not None:
                parts.append(f"leader {row['new_leader_s']:.2f}s")
            if row.get("write_after_heal_s") is not None:
                parts.append(f"write {row['write_after_heal_s']:.2f}s after heal")
            cells.append(f"{row.get('fault')}: " + (", ".join(parts) or "-"))
    return cells


def run_row(path: Path | str) -> RunRow:
    """Read one run directory into a row (ReportError if it is not a run directory)."""
    data = load_run(path)
    extras = _extras(data)
    verdicts = data.verdicts
    return RunRow(test=str(extras.get("test") or data.test_name), outcome=str(extras.get("outcome", "?")),
                  verdict=overall_validity(verdicts), seed=data.seed, faults=faults_injected(data.events),
                  recovery=_recovery_cells(verdicts), leader_changes=count_leader_changes(data.events),
                  run_dir=data.path, verdicts=verdicts, problems=list(data.problems))


def _summary_table(rows: Sequence[RunRow]) -> Table:
    table = Table(title="raftchaos runs", show_lines=True, expand=False)
    for column in ("test", "outcome", "verdict", "seed", "faults injected", "recovery", "leader changes"):
        table.add_column(column, overflow="fold")
    for row in rows:
        outcome = f"[{OUTCOME_STYLE[row.outcome]}]{row.outcome}" if row.outcome in OUTCOME_STYLE else row.outcome
        table.add_row(escape(row.test), outcome,
                      f"[{STYLE.get(row.verdict, '')}]{row.verdict}", str(row.seed),
                      "\n".join(row.faults) or "-", "\n".join(row.recovery) or "-", str(row.leader_changes))
    return table


def _verdict_lines(row: RunRow) -> list[str]:
    return [f"  [{STYLE.get(v['validity'], '')}]{v['validity']:>7}[/] {v['checker']}: {v['summary']}"
            for v in row.verdicts]


def degradation_table(row: RunRow, verdict: Mapping[str, Any]) -> Table:
    """Per-peer requests with ops / status-only / heartbeats before, during and after the fault."""
    details = verdict["details"]
    table = Table(title=f"{row.test}: leader {', '.join(details.get('leaders') or ['?'])} towards its "
                  f"peers around {details.get('fault', '?')} [{STYLE.get(verdict['validity'], '')}]"
                  f"{verdict['validity']}[/]")
    table.add_column("peer")
    for window in ("before", "during", "after"):
        for _, label in DEGRADATION_COLUMNS:
            table.add_column(f"{window}\n{label}", justify="right")
    faulted = set(details.get("faulted_peers") or [])
    cells: dict[str, dict[str, Mapping[str, Any]]] = {}
    for entry in details.get("peers", []):
        cells.setdefault(entry["peer"], {})[entry["window"]] = entry
    for peer, windows in sorted(cells.items()):
        values = []
        for window in ("before", "during", "after"):
            counters = (windows.get(window) or {}).get("counters") or {}
            values += [str(counters.get(key, "-")) for key, _ in DEGRADATION_COLUMNS]
        table.add_row(f"{peer} (faulted)" if peer in faulted else peer, *values)
    return table


def _arrow(values: Iterable[str]) -> str:
    return "→".join(values)


def window_lines(row: RunRow, verdict: Mapping[str, Any]) -> list[str]:
    """One compact line per fault of a ``windows`` verdict: success rate, p50/p99 latency (ms),
    leader changes and, for each targeted peer, requests with ops / status-only / heartbeats,
    before → during → after."""
    lines = []
    for fault in verdict["details"].get("faults") or []:
        parts = [(fault.get("windows") or {}).get(w) or {} for w in ("before", "during", "after")]
        rate = [("-" if w.get("success_rate") is None else f"{100 * w['success_rate']:.0f}%") for w in parts]
        lat = {p: [f"{w['latency_ms'][p]:.0f}" if p in (w.get("latency_ms") or {}) else "-" for w in parts]
               for p in ("p50", "p99")}
        test = row.test.rsplit("::", 1)[-1]
        text = (f"  [{STYLE.get(verdict['validity'], '')}]{test}[/] {fault.get('fault')}: success "
                f"{_arrow(rate)} · p50 {_arrow(lat['p50'])} ms · p99 {_arrow(lat['p99'])} ms · leader "
                f"changes {_arrow(str(w.get('leader_changes', '-')) for w in parts)}")
        for peer in fault.get("targets") or []:
            kinds = ["/".join(str(((w.get("peers") or {}).get(peer) or {}).get(k, "-"))
                              for k, _ in DEGRADATION_COLUMNS) for w in parts]
            text += f" · to {peer} ops/st-only/hb {_arrow(kinds)}"
        lines.append(text)
    return lines


def render(paths: Iterable[Path | str], console: Console) -> list[RunRow]:
    """Print the summary table, each run's verdicts, its degradation tables and a line per fault
    window; returns the rows.
    Directories that cannot be read are named with the reason instead of aborting the report."""
    rows: list[RunRow] = []
    for path in paths:
        try:
            rows.append(run_row(path))
        except ReportError as exc:
            console.print(f"[yellow]cannot render {path}: {exc}")
    if not rows:
        return rows
    console.print(_summary_table(rows))
    for row in rows:
        if row.verdict != "valid" or row.outcome not in ("passed", "?"):
            console.print(f"[bold]{row.test}[/] seed={row.seed} run dir: {row.run_dir}")
            for line in _verdict_lines(row):
                console.print(line)
        for problem in row.problems:
            console.print(f"  [yellow]{problem}")
        for verdict in row.verdicts:
            if verdict["checker"] == "degradation" and verdict["details"].get("peers"):
                console.print(degradation_table(row, verdict))
            if verdict["checker"] == "windows":
                for line in window_lines(row, verdict):
                    console.print(line)
    return rows


def _console(buffer: io.StringIO, width: int, color: bool) -> Console:
    return Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None,
                   highlight=False)


def render_text(paths: Iterable[Path | str], width: int = 140, color: bool = False) -> str:
    """The report as a string (for pytest's terminal writer, or files)."""
    buffer = io.StringIO()
    render(paths, _console(buffer, width, color))
    return buffer.getvalue()


def tests_table(tests: Sequence[Mapping[str, Any]]) -> Table:
    """One row per test (entries of the session summary, ``reports.session``): its pytest outcome
    (``unknown`` when its body passed but its verdict is unknown), its composed verdict, seed, and
    the reasons of every verdict that is not valid."""
    table = Table(title="raftchaos tests", show_lines=True, expand=False)
    for column in ("test", "outcome", "verdict", "seed", "runs", "reasons"):
        table.add_column(column, overflow="fold")
    for test in tests:
        outcome, verdict = str(test.get("outcome")), str(test.get("verdict"))
        table.add_row(escape(str(test.get("nodeid"))), f"[{OUTCOME_STYLE.get(outcome, '')}]{outcome}",
                      f"[{STYLE.get(verdict, '')}]{verdict}", str(test.get("seed")),
                      str(len(test.get("run_dirs") or [])), escape("\n".join(test.get("reasons") or []) or "-"))
    return table


def render_tests_text(tests: Sequence[Mapping[str, Any]], width: int = 140, color: bool = False) -> str:
    """``tests_table`` as a string for pytest's terminal writer."""
    buffer = io.StringIO()
    _console(buffer, width, color).print(tests_table(tests))
    return buffer.getvalue()
