"""``raftchaos status [--watch]``: a live table of the running cluster (role, term, commit, per-peer state)."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from harness.entry.cli import app
from harness.entry.cli.common import fail, open_faults_table
from harness.entry.cli.state import control, live_state
from harness.errors import ConfigError, HarnessError
from harness.spec import ClusterSpec
from harness.systems.base import Observer
from harness.systems.registry import system_for

ROLE_STYLE = {"LEADER": "bold green", "FOLLOWER": "default", "CANDIDATE": "yellow"}
KIND_COUNTERS = (("requests_with_ops", "ops"), ("status_only_requests", "st-only"), ("heartbeat_sends", "hb"))


def _observers(doc: dict[str, Any]) -> dict[str, Observer]:
    """Each node's observer from the system under test (the state's spec): kuduraft's reads its
    ``/status``, etcd's its gRPC gateway; the table shows the harness's fields of either."""
    spec = ClusterSpec.from_dict(doc["spec"])
    system = system_for(spec.system, spec)
    return {node: system.observer(node, info["http"], timeout_s=1.0) for node, info in doc["nodes"].items()}


def _statuses(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """node → (health, status or None), asked directly of each node through the system's observer."""
    observers = _observers(doc)
    try:
        live = control(doc, "GET", "/state", timeout_s=5)["nodes"]
    except HarnessError:
        live = doc["nodes"]
    out: dict[str, tuple[str, dict[str, Any] | None]] = {}
    for node, info in doc["nodes"].items():
        proc = live.get(node, info)
        if not proc.get("running", True):
            out[node] = ("down", None)
            continue
        if proc.get("paused"):
            out[node] = ("paused", None)
            continue
        try:
            out[node] = ("up", observers[node].observe().status_document())
        except HarnessError as exc:
            out[node] = (f"unreachable ({str(exc).splitlines()[0][:40]})", None)
    return out


def render(doc: dict[str, Any], faults: list[dict[str, Any]]) -> Group:
    statuses = _statuses(doc)
    nodes = Table(title=f"raftchaos cluster {doc['run_id']} (seed {doc['seed']})")
    for column in ("node", "health", "role", "term", "leader", "commit", "applied", "last"):
        nodes.add_column(column)
    peers = Table(title="leader's view of its peers")
    for column in ("leader", "peer", "failed attempts", "pending", "health", "status", "last kind",
                   *(label for _, label in KIND_COUNTERS)):
        peers.add_column(column)
    for node, (health, st) in statuses.items():
        if st is None:
            nodes.add_row(node, f"[red]{health}", "-", "-", "-", "-", "-", "-")
            continue
        role = str(st.get("role"))
        nodes.add_row(node, "[green]up", f"[{ROLE_STYLE.get(role, '')}]{role}", str(st.get("term")),
                      str(st.get("leader")), str(st.get("commit_index")), str(st.get("applied_index")),
                      str(st.get("last_index", "-")))
        for peer, view in sorted((st.get("peers") or {}).items()):
            counters = view.get("counters") or {}
            failed = int(view.get("failed_attempts", 0))
            peers.add_row(node, peer, f"[{'red' if failed else 'green'}]{failed}", str(view.get("request_pending")),
                          str(view.get("health")), str(view.get("status")), str(view.get("last_request_kind")),
                          *(str(counters.get(key, "-")) for key, _ in KIND_COUNTERS))
    return Group(nodes, peers, open_faults_table(faults, "open faults"))


def _faults(doc: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return list(control(doc, "GET", "/faults", timeout_s=5).get("faults", []))
    except HarnessError:
        return []


@app.command("status")
def status(
    watch: Annotated[bool, typer.Option("--watch", help="refresh until Ctrl-C")] = False,
    interval_s: Annotated[float, typer.Option(help="refresh period with --watch (s)", min=0.05, max=3600.0)] = 1.0,
    count: Annotated[int, typer.Option(help="with --watch: stop after this many refreshes (0: never)", min=0)] = 0,
) -> int:
    """Show the running cluster: each node's role, term and commit index, the leader's per-peer
    failed attempts, health and request kinds, and the open faults."""
    try:
        doc = live_state()
    except ConfigError as exc:
        fail(str(exc))
    if interval_s <= 0:
        fail(f"--interval-s must be > 0, got {interval_s}")
    console = Console()
    if not watch:
        console.print(render(doc, _faults(doc)))
        return 0
    ticks = threading.Event()
    shown = 0
    try:
        with Live(render(doc, _faults(doc)), console=console, refresh_per_second=4) as live:
            shown = 1
            while not (count and shown >= count) and not ticks.wait(interval_s):
                live.update(render(doc, _faults(doc)))
                shown += 1
    except KeyboardInterrupt:
        pass
    return 0
