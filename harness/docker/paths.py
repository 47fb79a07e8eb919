"""Where the Docker infrastructure keeps its files (state dir, build cache, dockerd log)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES_DIR = REPO_ROOT / "nodes"


def state_dir() -> Path:
    """The project's state directory: ``$RAFTCHAOS_HOME`` or ``<repo>/.raftchaos`` (created)."""
    path = Path(os.environ.get("RAFTCHAOS_HOME") or REPO_ROOT / ".raftchaos")
    path.mkdir(parents=True, exist_ok=True)
    return path


def docker_dir() -> Path:
    """``.raftchaos/docker``: dockerd's log and the flags it was last started with."""
    path = state_dir() / "docker"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """``.raftchaos/cache``: build inputs worth keeping between runs (the base rootfs tarball)."""
    path = state_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path

