"""Labels and names for everything a run creates in Docker, and sweeping what dead (or all) runs left behind."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from requests.exceptions import RequestException

__all__ = [
    "LABEL_NODE",
    "LABEL_PID",
    "LABEL_ROLE",
    "LABEL_RUN",
    "LABEL_RUN_UID",
    "Role",
    "RunResources",
    "SweepReport",
    "clean_all",
    "sweep",
]

LABEL_RUN = "raftchaos.run"
LABEL_RUN_UID = "raftchaos.run_uid"  # unique even when two runs share a run id (e.g. both named "run")
LABEL_ROLE = "raftchaos.role"
LABEL_NODE = "raftchaos.node"
LABEL_PID = "raftchaos.pid"  # the harness process that owns the run; the run is dead once it is gone
LABEL_PID_START = "raftchaos.pid_start"  # that process's start time (guards against pid reuse)
LABEL_HOST = "raftchaos.host"  # pids mean something only on the host that recorded them
LABEL_RUN_DIR = "raftchaos.run_dir"  # where sweep saves container logs before removing them
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
MAX_SLUG = 48


class Role(StrEnum):
    NODE = "node"
    TOXIPROXY = "toxiproxy"
    NETWORK = "network"
    VOLUME = "volume"
    SANDBOX = "sandbox"  # holds a node's network namespace and IP while the node itself is down


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class RunResources:
    """The labels and names of one run's Docker resources (owned by this process unless ``pid`` says otherwise)."""

    run_id: str
    run_dir: Path | None = None
    pid: int = field(default_factory=os.getpid)

    @property
    def uid(self) -> str:
        """The run id made safe for Docker names (shortened if long) plus a hash of id, run dir and owner."""
        safe = _UNSAFE.sub("-", self.run_id).strip("-.")[:MAX_SLUG] or "run"
        key = f"{self.run_id}\0{Path(self.run_dir).resolve() if self.run_dir else ''}\0{self.pid}"
        return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"

    def name(self, role: Role, node: str | None = None) -> str:
        """``raftchaos-<uid>-<role>`` or ``...-<node id>`` for a node (``...-<node id>-sandbox`` for its sandbox)."""
        if node is None:
            return f"raftchaos-{self.uid}-{role.value}"
        suffix = "" if role is Role.NODE else f"-{role.value}"
        return f"raftchaos-{self.uid}-{_UNSAFE.sub('-', node)}{suffix}"

    def labels(self, role: Role, node: str | None = None) -> dict[str, str]:
        """The labels every resource of this run carries (``raftchaos.node`` only for a node's)."""
        labels = {
            LABEL_RUN: self.run_id,
            LABEL_RUN_UID: self.uid,
            LABEL_ROLE: role.value,
            LABEL_PID: str(self.pid),
            LABEL_HOST: socket.gethostname(),
        }
        start = _process_start(self.pid)
        if start is not None:
            labels[LABEL_PID_START] = start
        if node is not None:
            labels[LABEL_NODE] = node
        if self.run_dir is not None:
            labels[LABEL_RUN_DIR] = str(Path(self.run_dir).resolve())
        return labels


@dataclass
class SweepReport:
    """What a sweep removed (resource names) and the errors it collected instead of raising."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    logs_saved: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes)


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the harness process recorded in a resource's labels still runs on this host.

    Resources from another host, or without a pid label, count as alive: nothing here can tell.
    """
    if labels.get(LABEL_HOST, socket.gethostname()) != socket.gethostname():
        return True
    try:
        pid = int(labels[LABEL_PID])
    except (KeyError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded = labels.get(LABEL_PID_START)
    return recorded is None or recorded == _process_start(pid)


def sweep(
    client: docker.DockerClient,
    run_id: str | None = None,
    only_dead: bool = True,
    log_dir: Path | None = None,
    run_uid: str | None = None,
) -> SweepReport:
    """Remove the containers, then networks, then volumes of ``run_id`` / ``run_uid`` (or of every run).

    With ``only_dead`` a run is kept while its harness process lives. Each container's log is saved
    first to ``<log_dir or its run dir>/docker/<container>.log``. Never raises for one resource:
    failures are collected in the report's ``errors``.
    """
    report = SweepReport()
    if run_uid is not None:
        selector = f"{LABEL_RUN_UID}={run_uid}"
    else:
        selector = f"{LABEL_RUN}={run_id}" if run_id is not None else LABEL_RUN
    decided: dict[str, bool] = {}

    def doomed(labels: dict[str, str]) -> bool:
        run = labels.get(LABEL_RUN_UID) or labels.get(LABEL_RUN, "")
        if run not in decided:
            decided[run] = not only_dead or not owner_alive(labels)
        return decided[run]

    try:
        containers = client.containers.list(all=True, filters={"label": selector})
    except (APIError, RequestException) as exc:
        report.errors.append(f"listing containers: {exc}")
        containers = []
    for container in containers:
        if doomed(container.labels):
            _save_log(container, log_dir, report)
            _remove(
                report.containers,
                report.errors,
                container.name,
                functools.partial(container.remove, force=True, v=True),
            )
    for kind, collection, removed in (
        ("networks", client.networks, report.networks),
        ("volumes", client.volumes, report.volumes),
    ):
        try:
            items = collection.list(filters={"label": selector})
        except (APIError, RequestException) as exc:
            report.errors.append(f"listing {kind}: {exc}")
            continue
        for item in items:
            labels = item.attrs.get("Labels") or {}
            if doomed(labels):
                _remove(removed, report.errors, item.name, item.remove)
    return report


def clean_all(client: docker.DockerClient, log_dir: Path | None = None) -> SweepReport:
    """Remove every labelled raftchaos container, network and volume, live runs included."""
    return sweep(client, run_id=None, only_dead=False, log_dir=log_dir)


def _remove(removed: list[str], errors: list[str], name: str, action: Callable[[], object]) -> None:
    try:
        action()
        removed.append(name)
    except NotFound:
        removed.append(name)  # already gone (e.g. auto-removed): the goal is met
    except (APIError, RequestException) as exc:
        errors.append(f"removing {name}: {exc}")


def _save_log(
    container: docker.models.containers.Container, log_dir: Path | None, report: SweepReport
) -> None:
    target_dir = log_dir or (
        Path(container.labels[LABEL_RUN_DIR]) if LABEL_RUN_DIR in container.labels else None
    )
    if target_dir is None:
        return
    try:
        data = container.logs(stdout=True, stderr=True)
        if not data:
            return  # nodes write their own log file in the run dir; nothing to keep here
        path = Path(target_dir) / "docker" / f"{container.name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        report.logs_saved.append(path)
    except (APIError, RequestException, OSError) as exc:
        report.errors.append(f"saving log of {container.name}: {exc}")
