"""A System's LaunchSpec as a node container's settings: pure, so the mapping is unit-tested.

The container runs ``argv`` as it is (the image decides what ``argv[0]`` names: the node image's
``python3``, or a host binary baked in at its own path), with its stdout and stderr appended to
the node's log in the run directory, which the backend bind-mounts at its own absolute path. So
every path a launch names (data directory, files to write first) must lie inside the run
directory: nothing else of the host is visible in the container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SetupError
from harness.systems.base import LaunchSpec

__all__ = ["ENTRYPOINT", "ContainerLaunch", "container_launch"]

# "$0" is the log file, "$@" the launch's argv: exec keeps the node as the container's pid 1 child
# of nothing, so signals (docker kill) reach it and its exit status is the container's.
ENTRYPOINT = ("/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1')
DEFAULT_WORKDIR = "/"


@dataclass(frozen=True)
class ContainerLaunch:
    """What Docker's create call gets for one node incarnation."""

    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    working_dir: str
    environment: Mapping[str, str]
    files: Mapping[Path, str]


def container_launch(launch: LaunchSpec, log: Path, run_root: Path, run_id: str) -> ContainerLaunch:
    """The container settings for ``launch``; SetupError (one line) when it names a path the
    container cannot see (outside ``run_root``) or an empty command."""
    if not launch.argv:
        raise SetupError("launch spec has an empty argv")
    for what, path in [("data directory", launch.data_dir), ("log", log), *(("file", p) for p in launch.files)]:
        if not _inside(path, run_root):
            raise SetupError(f"{what} {path} is outside the run directory {run_root}, which is all a node "
                             "container sees of the host")
    env = {**launch.env, "RAFTCHAOS_RUN": run_id}
    return ContainerLaunch(entrypoint=ENTRYPOINT, command=(str(log), *launch.argv),
                           working_dir=str(launch.cwd) if launch.cwd is not None else DEFAULT_WORKDIR,
                           environment=env, files=dict(launch.files))


def _inside(path: Path, root: Path) -> bool:
    path = Path(os.path.normpath(path))
    return path.is_absolute() and (path == root or root in path.parents)
