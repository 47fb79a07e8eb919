"""Run ownership of local processes: labels in their environment, a registry, and sweeping leftovers.

Every process the local backend starts carries ``RAFTCHAOS_RUN=<run id>`` and
``RAFTCHAOS_OWNER=<pid>:<start ticks>`` (the harness process's identity, robust to pid reuse) in
its environment and leads its own process group. A run also writes a small registry file with the
owner and the pids it started. ``sweep_orphans()`` kills every labelled process whose owner is no
longer alive (a SIGKILLed harness) and drops registry entries of dead owners.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
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


def sweep_orphans() -> list[Labelled]:
    """Kill labelled processes whose owning harness is dead; returns what was killed."""
    killed = []
    for proc in labelled_processes():
        if proc.pid == os.getpid() or owner_alive(proc.owner):
            continue
        kill_group(proc.pid)
        killed.append(proc)
    for path in registry_dir().glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            if not owner_alive(json.loads(path.read_text())["owner"]):
                path.unlink()
    return killed


class Registry:
    """This run's registry file: owner, run dir, and the pids it started."""

    def __init__(self, run_id: str, run_dir: Path) -> None:
        self.path = registry_dir() / f"{run_id}.json"
        self._data = {"run_id": run_id, "owner": owner_token(), "run_dir": str(run_dir), "pids": []}
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
