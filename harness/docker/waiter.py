"""One node container's incarnation and the thread that waits for its exit code (the Docker ``Popen.wait``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, NotFound
from requests.exceptions import RequestException

__all__ = ["Incarnation", "normalise_exit", "start_exit_waiter"]

WAIT_CLIENT_TIMEOUT_S = 3600
RETRY_AFTER_S = 0.2


@dataclass
class Incarnation:
    """One container run of a node; its waiter thread records the exit code and sets ``done``."""

    number: int
    container_id: str
    exit_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


def normalise_exit(code: int | None) -> int | None:
    """A container killed by signal N exits 128+N; report it as -N, like ``Popen.returncode``."""
    if code is not None and 128 < code <= 128 + 64:
        return -(code - 128)
    return code


def start_exit_waiter(incarnation: Incarnation, closing: threading.Event, node_id: str) -> threading.Thread:
    """Start a daemon thread that blocks on the container's exit (on its own connection)."""
    thread = threading.Thread(target=_wait_exit, args=(incarnation, closing), name=f"docker-wait-{node_id}",
                              daemon=True)  # fmt: skip
    thread.start()
    return thread


def _wait_exit(incarnation: Incarnation, closing: threading.Event) -> None:
    """Record the exit code in ``incarnation``; never raises. ``done`` is set even when the code is
    unknown (container removed under us, no client)."""
    try:
        waiter = docker.from_env(timeout=WAIT_CLIENT_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - no client: report the node as gone with an unknown code
        incarnation.done.set()
        return
    try:
        while not closing.is_set():
            try:
                result = waiter.api.wait(incarnation.container_id)
                incarnation.exit_code = normalise_exit(result.get("StatusCode"))
                break
            except NotFound:
                break  # removed under us (close, or a sweep); code unknown
            except (APIError, RequestException):
                closing.wait(RETRY_AFTER_S)  # a read timeout or a daemon hiccup: back off, wait again
    finally:
        incarnation.done.set()
        waiter.close()
