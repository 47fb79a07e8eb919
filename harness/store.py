"""Run directory layout (one directory per run: history, spec, logs, verdicts, report) and listing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import ConfigError

DEFAULT_ROOT = Path(".raftchaos/runs")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class RunDir:
    """One run's directory; the run id is its name (``<UTC time>-<test name>-<seed>``)."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def nodes_dir(self) -> Path:
        return self.path / "nodes"

    def node_log(self, node_id: str) -> Path:
        """The node's stdout+stderr, appended across restarts."""
        return self.nodes_dir / f"{node_id}.log"

    def node_data(self, node_id: str) -> Path:
        """The node's data directory (WAL, metadata); survives restarts."""
        return self.path / "data" / node_id

    @property
    def cluster_file(self) -> Path:
        return self.path / "cluster.json"

    @property
    def toxiproxy_log(self) -> Path:
        return self.path / "toxiproxy.log"

    @property
    def verdicts_path(self) -> Path:
        return self.path / "verdicts.json"

    @property
    def schedule_path(self) -> Path:
        return self.path / "schedule.jsonl"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def create(self) -> RunDir:
        """Make the directory and its ``nodes/`` and ``data/`` subdirectories (idempotent)."""
        self.nodes_dir.mkdir(parents=True, exist_ok=True)
        (self.path / "data").mkdir(exist_ok=True)
        return self


def run_name(test_name: str, seed: int, now: datetime | None = None) -> str:
    """``<UTC time>-<test name>-<seed>`` with the test name made filesystem-safe."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    safe = _UNSAFE.sub("_", test_name).strip("_")[:80] or "run"
    return f"{stamp}-{safe}-{seed}"


def new_run_dir(test_name: str, seed: int, root: Path | str | None = None,
                now: datetime | None = None) -> RunDir:
    """Create a fresh run directory under ``root`` (default ``.raftchaos/runs``)."""
    base = Path(root) if root is not None else DEFAULT_ROOT
    name = run_name(test_name, seed, now)
    for n in range(1000):
        path = base / (name if n == 0 else f"{name}.{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return RunDir(path).create()
    raise ConfigError(f"cannot create a run directory named {name} under {base}")


def open_run_dir(path: Path | str) -> RunDir:
    """An existing run directory (it must hold an ``events.jsonl`` or ``spec.json``)."""
    run = RunDir(Path(path))
    if not (run.events_path.exists() or run.spec_path.exists()):
        raise ConfigError(f"{path} is not a run directory (no events.jsonl or spec.json)")
    return run


def list_runs(root: Path | str | None = None) -> list[RunDir]:
    """Every run under ``root``, oldest first (names start with the UTC time)."""
    base = Path(root) if root is not None else DEFAULT_ROOT
    if not base.is_dir():
        return []
    runs = [RunDir(p) for p in sorted(base.iterdir()) if p.is_dir()]
    return [r for r in runs if r.events_path.exists() or r.spec_path.exists()]
