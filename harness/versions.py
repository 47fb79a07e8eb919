"""The versions a run records at start (Python, raftchaos, the Toxiproxy server, the backend) for its report."""

from __future__ import annotations

import platform
from importlib import metadata

from harness.errors import ToxiproxyError
from harness.toxi import ToxiproxyClient

UNKNOWN = "unknown"
# The Toxiproxy release the Makefile builds (TOXIPROXY_VERSION there; a test keeps the two equal).
TOXIPROXY_PINNED = "v2.12.0"


def package_version(name: str = "raftchaos") -> str:
    """The installed distribution's version, or ``unknown`` when it is not installed (a bare checkout)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def toxiproxy_version(client: ToxiproxyClient) -> str:
    """The Toxiproxy server's version as its API reports it (``unknown`` when it does not answer:
    a version must never stop a run)."""
    try:
        return client.version() or UNKNOWN
    except ToxiproxyError:
        return UNKNOWN


def run_versions(backend: str, toxiproxy: ToxiproxyClient) -> dict[str, str]:
    """The ``versions`` object of the run's ``versions`` note (``reports.run_data`` reads it)."""
    return {"python": platform.python_version(), "raftchaos": package_version(),
            "toxiproxy": toxiproxy_version(toxiproxy), "backend": backend}
