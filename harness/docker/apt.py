"""Install missing Debian packages for the Docker setup (root only, idempotent, logged, with progress)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.progress import Progress

from harness.docker.paths import docker_dir
from harness.docker.progress import Step, step
from harness.errors import SetupError


def ensure_commands(commands: Mapping[str, str], progress: Progress | None) -> None:
    """Make every command in ``commands`` (command -> Debian package providing it) available.

    Does nothing when all are on PATH. Otherwise, as root, runs ``apt-get update`` and installs the
    missing packages without recommends; raises SetupError naming the command and the fix when it
    cannot (not root, no apt-get, install failed: the log is ``.raftchaos/docker/apt.log``).
    """
    missing = sorted({package for command, package in commands.items() if shutil.which(command) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError(
            f"needs Debian package(s) {', '.join(missing)}: run `apt-get install {' '.join(missing)}` as root"
        )
    log_path = docker_dir() / "apt.log"
    with step(progress, f"apt: installing {' '.join(missing)}") as current:
        _run(["apt-get", "update", "-q"], log_path, current)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], log_path, current)
        still = [command for command in commands if shutil.which(command) is None]
        if still:
            raise SetupError(
                f"installed {' '.join(missing)} but {', '.join(still)} still not on PATH; see {log_path}"
            )
        current.finish("installed")


def _run(command: Sequence[str], log_path: Path, current: Step) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    current.note(" ".join(command[:2]))
    with open(log_path, "a") as log:
        log.write(f"--- raftchaos: {' '.join(command)}\n")
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            current.note(line.strip())
        if proc.wait() != 0:
            raise SetupError(
                f"`{' '.join(command)}` failed (exit {proc.returncode}); see {log_path}: {tail(log_path, 3)}"
            )


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file joined with ' / ' (for one-line error messages)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " / ".join(line.strip() for line in text[-lines:]) or "(empty log)"
