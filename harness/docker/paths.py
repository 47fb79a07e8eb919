"""Where the Docker infrastructure keeps its files (state dir, build cache, dockerd log) and finds Toxiproxy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.errors import SetupError

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


def toxiproxy_binary() -> Path:
    """The real toxiproxy-server: ``$TOXIPROXY_SERVER``, then ``<repo>/.bin``, then ``PATH``.

    Raises SetupError naming the fix (``make setup``) when none is found.
    """
    env = os.environ.get("TOXIPROXY_SERVER")
    if env:
        if not Path(env).is_file():
            raise SetupError(
                f"TOXIPROXY_SERVER={env} is not a file; unset it or point it at toxiproxy-server"
            )
        return Path(env)
    local = REPO_ROOT / ".bin" / "toxiproxy-server"
    if local.is_file():
        return local
    found = shutil.which("toxiproxy-server")
    if found:
        return Path(found)
    raise SetupError("toxiproxy-server not found (TOXIPROXY_SERVER, .bin/, PATH); run `make setup`")
