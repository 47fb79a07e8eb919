"""Loading one run directory (history, spec, verdicts, schedule, node logs, versions) into plain data."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.checkers.verdict import Validity, compose
from harness.errors import HarnessError
from harness.history import Event, load_history
from harness.history_views import history_end, malformed, run_spec
from harness.store import RunDir, open_run_dir

LOG_TAIL_LINES = 30
VALIDITIES = ("valid", "invalid", "unknown")


class ReportError(HarnessError):
    """The run directory cannot be rendered at all (not a run directory, unreadable history)."""


@dataclass(frozen=True)
class LogFile:
    """One log file of the run, linked from the report by its path relative to the run directory."""

    name: str
    rel_path: str
    size_bytes: int
    tail: tuple[str, ...]


@dataclass(frozen=True)
class RunData:
    """Everything the reports read from a run directory; nothing here needs a live cluster.

    ``verdicts`` are verdict dicts (``checker``, ``validity``, ``summary``, ``details``) as saved in
    ``verdicts.json``. ``problems`` lists files that were present but unreadable, so the report can
    say so instead of silently showing less.
    """

    run: RunDir
    events: list[Event]
    spec: dict[str, Any]
    verdicts: list[dict[str, Any]]
    schedule: list[dict[str, Any]]
    logs: list[LogFile]
    versions: dict[str, str]
    versions_recorded: bool
    problems: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def seed(self) -> int | None:
        seed = self.spec.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def test_name(self) -> str:
        return str(self.spec.get("test_name") or self.run_id)

    @property
    def nodes(self) -> list[str]:
        """Node ids from the spec (n1..nN), plus any other node the history mentions."""
        count = self.spec.get("node_count")
        ids = [f"n{i}" for i in range(1, count + 1)] if isinstance(count, int) else []
        for event in self.events:
            node = event.get("node")
            if event.get("kind") in ("sample", "node") and isinstance(node, str) and node not in ids:
                ids.append(node)
        return ids

    @property
    def duration_s(self) -> float:
        return history_end(self.events)


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({exc})")
        return None


def normalise_verdicts(raw: Any) -> list[dict[str, Any]]:
    """Verdict dicts from any of the shapes ``verdicts.json`` may take: a list of verdicts, an object
    with a ``verdicts`` list, or an object mapping checker name to verdict. Unknown validity values
    become ``unknown`` (a report must never show a verdict as better than it is)."""
    if isinstance(raw, dict) and isinstance(raw.get("verdicts"), list | dict):
        raw = raw["verdicts"]
    items: list[tuple[str | None, Any]]
    if isinstance(raw, list):
        items = [(None, v) for v in raw]
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        return []
    out: list[dict[str, Any]] = []
    for name, item in items:
        if not isinstance(item, dict):
            continue
        validity = str(item.get("validity", "unknown")).lower()
        out.append({
            "checker": str(item.get("checker") or name or "?"),
            "validity": validity if validity in VALIDITIES else "unknown",
            "summary": str(item.get("summary", "")),
            "details": item.get("details") if isinstance(item.get("details"), dict) else {},
        })
    return out


def overall_validity(verdicts: list[dict[str, Any]]) -> str:
    """``harness.checkers.verdict.compose`` over saved verdicts (invalid beats unknown beats valid;
    no verdicts at all is unknown: nothing was checked). A validity that is not one of the three
    counts as unknown: a report must never show a verdict as better than it is."""
    return compose(Validity(v["validity"]) if v.get("validity") in VALIDITIES else Validity.UNKNOWN
                   for v in verdicts).value


def _read_schedule(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path.name}:{number}: not JSON")
            continue
        entries.append(entry if isinstance(entry, dict) else {"value": entry})
    return entries


def _log_file(run: RunDir, path: Path) -> LogFile:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        size = path.stat().st_size
    except OSError:
        lines, size = [], 0
    return LogFile(path.stem, path.relative_to(run.path).as_posix(), size,
                   tuple(lines[-LOG_TAIL_LINES:]))


def _logs(run: RunDir) -> list[LogFile]:
    found = sorted(run.nodes_dir.glob("*.log")) if run.nodes_dir.is_dir() else []
    if run.toxiproxy_log.exists():
        found.append(run.toxiproxy_log)
    return [_log_file(run, p) for p in found]


def renderer_versions() -> dict[str, str]:
    """Versions of the process rendering the report (shown when the run recorded none)."""
    try:
        raftchaos = metadata.version("raftchaos")
    except metadata.PackageNotFoundError:
        raftchaos = "unknown"
    return {"python": platform.python_version(), "raftchaos": raftchaos}


def recorded_versions(events: list[Event], spec: dict[str, Any], extra: Any) -> dict[str, str]:
    """Versions the run itself recorded: a ``versions`` object in a history note, in ``spec.json``
    or in ``versions.json`` (later sources win). Empty when none did."""
    found: dict[str, str] = {}
    sources = [e.get("versions") for e in events if e.get("kind") == "note"]
    sources += [spec.get("versions"), extra]
    for source in sources:
        if isinstance(source, dict):
            found.update({str(k): str(v) for k, v in source.items()})
    return found


def load_run(path: Path | str) -> RunData:
    """Read a run directory. ReportError when it is not one or its history is unreadable; other
    files that are missing are simply absent, unreadable ones are listed in ``problems``."""
    try:
        run = open_run_dir(path)
    except HarnessError as exc:
        raise ReportError(str(exc)) from None
    problems: list[str] = []
    try:
        events = load_history(run.events_path) if run.events_path.exists() else []
    except (HarnessError, OSError) as exc:
        raise ReportError(f"{run.events_path}: {exc}") from None
    bad = malformed(events)
    if bad:  # the views leave these out; the report shows the rest and says so
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        problems.append(f"{run.events_path.name}: left out of the report: {'; '.join(bad[:3])}{more}")
    spec = _read_json(run.spec_path, problems)
    if not isinstance(spec, dict):
        noted = run_spec(events)
        spec = dict(noted) if noted is not None else {}
    verdicts = normalise_verdicts(_read_json(run.verdicts_path, problems))
    versions = recorded_versions(events, spec, _read_json(run.path / "versions.json", problems))
    recorded = bool(versions)
    if not recorded:
        versions = renderer_versions()
    return RunData(run=run, events=events, spec=spec, verdicts=verdicts,
                   schedule=_read_schedule(run.schedule_path, problems), logs=_logs(run),
                   versions=versions, versions_recorded=recorded, problems=problems)
