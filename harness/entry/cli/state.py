"""The state file of the cluster ``raftchaos up`` keeps running, and calls to its control API (loopback only).

One cluster per state directory (``$RAFTCHAOS_HOME/up``, default ``.raftchaos/up``):
``state.json`` holds the daemon's pid and owner token, its control URL, the run directory, each
node's addresses and pid, and each proxy's listen address. It is written atomically by the
daemon; a state whose daemon is dead is stale and removed by ``status``, ``up``, ``down`` and
``clean``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import requests

from harness.errors import ConfigError, HarnessError, WaitTimeout
from harness.sweep import kill_group, owner_alive, process_alive, sweep_orphans
from harness.waits import WaitStrategy, wait_until

CONTROL_TIMEOUT_S = 30.0


def home() -> Path:
    return Path(os.environ.get("RAFTCHAOS_HOME", ".raftchaos"))


def state_dir() -> Path:
    return home() / "up"


def state_path() -> Path:
    return state_dir() / "state.json"


def write_state(doc: dict[str, Any], path: Path | None = None) -> None:
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(path)


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    """The state document, or None when there is none (or it is unreadable)."""
    path = path or state_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def daemon_alive(doc: dict[str, Any]) -> bool:
    token = doc.get("owner")
    return isinstance(token, str) and owner_alive(token)


def live_state() -> dict[str, Any]:
    """The running cluster's state; ConfigError (one line) when none runs. A stale file is removed."""
    doc = read_state()
    if doc is None:
        raise ConfigError("no cluster is up (start one with: raftchaos up)")
    if not daemon_alive(doc):
        remove_stale()
        raise ConfigError("no cluster is up (the last one's supervisor is gone; its state was removed)")
    if doc.get("status") != "ready":
        raise ConfigError(f"the cluster is not ready (status {doc.get('status')!r})")
    return doc


def remove_stale() -> list[str]:
    """Remove a state file whose daemon is dead and kill what it left behind; what was done."""
    doc = read_state()
    if doc is None or daemon_alive(doc):
        return []
    with contextlib.suppress(FileNotFoundError):
        state_path().unlink()
    killed = sweep_orphans()
    return ([f"removed stale state of run {doc.get('run_id', '?')}"] + [f"killed {p.pid} (run {p.run_id})" for p in killed]
            + sweep_docker(doc))


def control(doc: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None,
            timeout_s: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
    """Call the daemon's control API; HarnessError with its one-line error on a 4xx/5xx."""
    url = str(doc["control"]).rstrip("/") + path
    try:
        resp = requests.request(method, url, json=body, timeout=timeout_s)
    except requests.RequestException as exc:
        raise HarnessError(f"the cluster's supervisor at {doc['control']} did not answer: {exc}") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {"error": resp.text.strip()[:200]}
    if resp.status_code >= 400:
        raise ConfigError(str(answer.get("error", f"HTTP {resp.status_code}")))
    return answer if isinstance(answer, dict) else {"result": answer}


def stop_daemon(doc: dict[str, Any]) -> None:
    """Last resort when the control API does not answer: kill the daemon's group, then its orphans."""
    pid = doc.get("pid")
    if isinstance(pid, int):
        kill_group(pid)
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: not process_alive(pid), what=f"supervisor {pid} to die",
                       strategy=WaitStrategy(5.0, 0.05))
    sweep_orphans()
    sweep_docker(doc)


def sweep_docker(doc: dict[str, Any]) -> list[str]:
    """For a Docker cluster (``doc["spec"]["backend"]``) whose supervisor is gone: remove the containers
    and networks of dead runs (logs saved into their run directories); what was removed."""
    if (doc.get("spec") or {}).get("backend") != "docker":
        return []
    from harness.cleanup import clean_everything

    report = clean_everything(include_live=False)
    removed = report.containers + report.networks + report.volumes
    return ([f"removed docker leftovers: {', '.join(removed)}"] if removed else []) + [
        f"docker: could not remove: {e}" for e in report.errors]


def clean_state(include_live: bool) -> list[str]:
    """For ``raftchaos clean``: remove a stale ``up`` state; with ``include_live`` also stop a live one."""
    lines = remove_stale()
    doc = read_state()
    if doc is not None and include_live and daemon_alive(doc):
        try:
            control(doc, "POST", "/down", timeout_s=60)
        except HarnessError:
            stop_daemon(doc)
        with contextlib.suppress(FileNotFoundError):
            state_path().unlink()
        lines.append(f"stopped the cluster of run {doc.get('run_id', '?')} (raftchaos up)")
    return lines
