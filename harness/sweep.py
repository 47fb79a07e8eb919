"""Run ownership of local processes: labels in their environment, a registry, and sweeping leftovers.

Every process the local backend starts carries ``RAFTCHAOS_RUN=<run id>`` and
``RAFTCHAOS_OWNER=<pid>:<start ticks>`` (the harness process's identity, robust to pid reuse) in
its environment and leads its own process group. A run also writes a small registry file with the
owner and the pids it started. ``sweep_orphans()`` kills every labelled process whose owner is no
longer alive (a SIGKILLed harness) and drops registry entries of dead owners.

A dead owner's run directory goes with its processes (``sweep_dead``): a killed run never
reached its verdicts, so its directory is noise, unless it holds a failure worth keeping: a
verdicts.json whose verdict is invalid, a history recording a node that crashed for real (the
crash checker's rule), or a history that cannot be read (it cannot be judged, so it is not
thrown away). ``keep_failures=False`` (``raftchaos clean --all``) removes those too. Only a
directory that looks like a run (it holds events.jsonl or spec.json) at an absolute path is
ever removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RUN_ENV = "RAFTCHAOS_RUN"
OWNER_ENV = "RAFTCHAOS_OWNER"


def registry_dir() -> Path:
    """Where run registry files live (``RAFTCHAOS_REGISTRY`` or a per-user temp directory)."""
    override = os.environ.get("RAFTCHAOS_REGISTRY")
    path = Path(override) if override else Path(tempfile.gettempdir()) / f"raftchaos-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (killed orphans linger as zombies until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_start_ticks(pid)}"


def owner_alive(token: str) -> bool:
    pid_text, _, ticks = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return str(process_start_ticks(pid)) == ticks and process_alive(pid)  # a zombie owner is dead


def labelled_env(run_id: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this environment) labelled with the run and its owner."""
    env = dict(os.environ if base is None else base)
    env[RUN_ENV] = run_id
    env[OWNER_ENV] = owner_token()
    return env


@dataclass(frozen=True)
class Labelled:
    pid: int
    run_id: str
    owner: str


def labelled_processes() -> list[Labelled]:
    """Every process of this user whose environment carries a raftchaos run label."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if RUN_ENV in env and OWNER_ENV in env:
            found.append(Labelled(int(entry.name), env[RUN_ENV], env[OWNER_ENV]))
    return found


def run_processes(run_id: str) -> list[int]:
    """Pids of live processes labelled with ``run_id``."""
    return [p.pid for p in labelled_processes() if p.run_id == run_id and p.pid != os.getpid()]


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (or just the pid); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class SweepReport:
    """What a sweep did: processes killed, run directories removed, and those kept (with why)."""

    processes: list[Labelled] = field(default_factory=list)
    removed_dirs: list[Path] = field(default_factory=list)
    kept_dirs: list[tuple[Path, str]] = field(default_factory=list)


def failure_worth_keeping(run_dir: Path) -> str | None:
    """Why a dead run's directory must be kept (None: nothing in it is worth keeping)."""
    from harness.checkers.crashes import check_crashes
    from harness.history import load_history

    try:
        doc = json.loads((run_dir / "verdicts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("verdict") == "invalid":
        return "its verdict is invalid"
    events_path = run_dir / "events.jsonl"
    if not events_path.exists():
        return None
    try:
        verdict = check_crashes(load_history(events_path))
    except Exception as exc:  # noqa: BLE001 - a history nobody can read is not thrown away
        return f"its history cannot be read ({type(exc).__name__})"
    return verdict.summary if verdict.validity.value == "invalid" else None


def _remove_run_dir(entry: dict[str, object], keep_failures: bool, report: SweepReport) -> bool:
    """Remove a dead run's directory unless it is worth keeping; True when its registry entry
    can go (False: kept, and the entry stays, marked, so ``clean --all`` can still find it)."""
    raw = entry.get("run_dir")
    if not isinstance(raw, str) or not raw:
        return True
    run_dir = Path(raw)
    if not run_dir.is_absolute() or not run_dir.is_dir():
        return True  # a relative path means another cwd: never guess which directory it was
    if not ((run_dir / "events.jsonl").exists() or (run_dir / "spec.json").exists()):
        return True
    kept = entry.get("kept")
    reason = (kept if isinstance(kept, str) else failure_worth_keeping(run_dir)) if keep_failures else None
    if reason:
        report.kept_dirs.append((run_dir, reason))
        entry["kept"] = reason
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    if not run_dir.exists():
        report.removed_dirs.append(run_dir)
    return True


def _wait_dead(pids: list[int], timeout_s: float = 5.0) -> None:
    """Until every SIGKILLed pid is gone (or a zombie): a dying process may finish a write."""
    from harness.errors import WaitTimeout
    from harness.waits import WaitStrategy, wait_until

    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not any(process_alive(pid) for pid in pids), what="swept processes to die",
                   strategy=WaitStrategy(timeout_s, 0.02))


def sweep_dead(keep_failures: bool = True, remove_dirs: bool = True) -> SweepReport:
    """Kill labelled processes whose owning harness is dead, then drop the registry entries of dead
    owners and (``remove_dirs``) their run directories, keeping failures unless ``keep_failures``
    is False. The processes die first, so nothing writes into a directory being removed."""
    report = SweepReport()
    for proc in labelled_processes():
        if proc.pid == os.getpid() or owner_alive(proc.owner):
            continue
        kill_group(proc.pid)
        report.processes.append(proc)
    if remove_dirs and report.processes:
        _wait_dead([p.pid for p in report.processes])
    for path in registry_dir().glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            entry = json.loads(path.read_text())
            if owner_alive(entry["owner"]):
                continue
            if not remove_dirs or _remove_run_dir(entry, keep_failures, report):
                path.unlink()
            elif "kept" in entry:
                path.write_text(json.dumps(entry))
    return report


def sweep_orphans() -> list[Labelled]:
    """Kill labelled processes whose owning harness is dead (their run directories go too, see
    ``sweep_dead``); returns what was killed."""
    return sweep_dead().processes


class Registry:
    """This run's registry file: owner, run dir, and the pids it started."""

    def __init__(self, run_id: str, run_dir: Path) -> None:
        self.path = registry_dir() / f"{run_id}.json"
        # absolute: the sweep that removes a dead run's directory may run from another cwd
        self._data = {"run_id": run_id, "owner": owner_token(), "run_dir": str(Path(run_dir).resolve()),
                      "pids": []}
        self._write()

    def add(self, pids: Iterable[int]) -> None:
        self._data["pids"] = sorted(set(self._data["pids"]) | set(pids))  # type: ignore[arg-type]
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data))
        tmp.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
