"""Make a Docker daemon answer: use a running one, else (as root) install Debian's docker.io and start dockerd.

What this sandbox (and CI, the same kind of machine) needed, found by trying it:

- A Firecracker VM running Debian 12 as root, no init system, cgroup v1 hierarchies mounted (freezer
  included, so ``docker pause`` works), root filesystem ext4. Nothing listens on
  /var/run/docker.sock, and ``/usr/sbin/policy-rc.d`` denies service starts, so installing
  ``docker.io`` (20.10.24, API 1.41) does not start it: we start ``dockerd`` ourselves, in its own
  session so it outlives the harness process and the next run reuses it.
- ``overlay2`` works here (ext4, d_type). Inside a container whose root is itself overlayfs it does
  not; dockerd then dies at start, so we retry with ``--storage-driver=vfs`` (slow, but works
  anywhere), and then also with ``--iptables=false`` for kernels without netfilter. The flags that
  worked are remembered in ``.raftchaos/docker/dockerd.json`` and tried first next time.
- iptables (nft backend) works, so dockerd keeps it: it installs the isolation rules that make the
  harness's ``internal`` networks unable to reach anything but their own members and the host.
- Always: ``--bridge=none`` (no default bridge, so a container started without an explicit network
  has none), ``--ip-masq=false`` and ``--ip-forward=false``: the harness's containers reach only each
  other and the host (the host reaches them at their container IPs, the gateway is on the host), and
  never anything else, as the workplace requires.
- dockerd keeps its own pidfile at the default /var/run/docker.pid, which is also its lock over
  /var/lib/docker: one daemon per machine, shared by every checkout. A lock file serialises
  concurrent starters (e.g. two pytest processes). Its log goes to ``.raftchaos/docker/dockerd.log``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException
from rich.progress import Progress
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.docker.apt import ensure_commands, tail
from harness.docker.paths import docker_dir
from harness.docker.progress import step
from harness.errors import SetupError

__all__ = ["DockerUnavailable", "client_if_answering", "ensure_daemon", "no_daemon_reason", "unavailable_reason"]

PING_TIMEOUT_S = 3.0
CLIENT_TIMEOUT_S = 600
START_TIMEOUT_S = 90.0
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
START_LOCK = Path("/run/lock/raftchaos-dockerd.lock")
ALWAYS_FLAGS = ("--bridge=none", "--ip-masq=false", "--ip-forward=false")
FALLBACKS: tuple[tuple[str, ...], ...] = (
    (),
    ("--storage-driver=vfs",),
    ("--storage-driver=vfs", "--iptables=false"),
)


class DockerUnavailable(SetupError):
    """No Docker daemon answers and this process cannot make one answer; the message names the fix."""


def client_if_answering(timeout_s: float = PING_TIMEOUT_S) -> docker.DockerClient | None:
    """A client for the daemon at ``$DOCKER_HOST`` (default socket) if it answers a ping, else None."""
    try:
        probe = docker.from_env(timeout=int(max(1, timeout_s)))
        probe.ping()
        probe.close()
        return docker.from_env(timeout=CLIENT_TIMEOUT_S)
    except (DockerException, RequestException, OSError):
        return None


def ensure_daemon(
    progress: Progress | None = None, start_timeout_s: float = START_TIMEOUT_S
) -> docker.DockerClient:
    """A client for a daemon that answers, installing and starting dockerd when needed (root only).

    Raises DockerUnavailable with one line naming the problem and the fix when that is not possible.
    """
    client = client_if_answering()
    if client is not None:
        return client
    if os.environ.get("DOCKER_HOST"):
        raise DockerUnavailable(
            f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer; start that daemon or unset DOCKER_HOST"
        )
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "no Docker daemon answers at /var/run/docker.sock and this user is not root: "
            "start one (`sudo dockerd &`, or the docker service) or run the harness as root"
        )
    with _start_lock():
        client = client_if_answering()  # another process may have started it while we waited
        if client is not None:
            return client
        ensure_commands({"dockerd": "docker.io"}, progress)
        return _start_dockerd(progress, start_timeout_s)


def unavailable_reason(progress: Progress | None = None) -> str | None:
    """None when a daemon answers (started here if this process may: root with apt), else why not.

    For callers that skip rather than fail without Docker (the Docker tests, ``--backend docker``).
    """
    try:
        ensure_daemon(progress).close()
    except SetupError as exc:  # DockerUnavailable, or apt could not install docker.io
        return no_daemon_reason(exc)
    return None


def no_daemon_reason(exc: SetupError) -> str:
    """The one line ``unavailable_reason`` gives for ``exc`` (also what ``--backend docker`` prints)."""
    return f"no Docker daemon: {exc.message}"


@contextmanager
def _start_lock() -> Iterator[None]:
    START_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(START_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _start_dockerd(progress: Progress | None, timeout_s: float) -> docker.DockerClient:
    existing = _live_dockerd_pid()
    if existing is not None:
        # A dockerd holds the pidfile but does not answer yet (still starting, or wedged): wait for it
        # rather than start a second one on the same data root.
        with step(progress, f"docker: waiting for running dockerd (pid {existing})") as current:
            client = _wait_answering(None, timeout_s)
            if client is None:
                raise DockerUnavailable(
                    f"dockerd pid {existing} runs but does not answer after {timeout_s:.0f} s; "
                    f"kill {existing} and retry (its log may be {docker_dir() / 'dockerd.log'})"
                )
            current.finish("answers")
            return client
    failures: list[str] = []
    for flags in _attempt_order():
        command = ["dockerd", *ALWAYS_FLAGS, *flags]
        with step(progress, "docker: starting dockerd " + " ".join(flags or ("(defaults)",))) as current:
            proc, log_path = _spawn(command)
            client = _wait_answering(proc, timeout_s)
            if client is not None:
                _remember(command)
                current.finish(f"answers (pid {proc.pid}, log {log_path})")
                return client
            if proc.poll() is None:
                raise DockerUnavailable(
                    f"dockerd (pid {proc.pid}) started but did not answer within {timeout_s:.0f} s; "
                    f"see {log_path}: {tail(log_path, 2)}"
                )
            failures.append(f"{' '.join(command)} exited {proc.returncode}: {tail(log_path, 1)}")
            current.note(f"exited {proc.returncode}, trying fallback flags")
    raise DockerUnavailable("dockerd would not start with any flags; " + " | ".join(failures))


def _attempt_order() -> list[tuple[str, ...]]:
    order = list(FALLBACKS)
    remembered = _remembered_flags()
    if remembered is not None and remembered in order:
        order.remove(remembered)
        order.insert(0, remembered)
    return order


def _remembered_flags() -> tuple[str, ...] | None:
    try:
        data = json.loads((docker_dir() / "dockerd.json").read_text())
        return tuple(flag for flag in data["command"][1:] if flag not in ALWAYS_FLAGS)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(command: Sequence[str]) -> None:
    (docker_dir() / "dockerd.json").write_text(json.dumps({"command": list(command)}, indent=2) + "\n")


def _spawn(command: Sequence[str]) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = docker_dir() / "dockerd.log"
    with open(log_path, "ab") as log:
        log.write(f"--- raftchaos: {' '.join(command)}\n".encode())
        log.flush()
        # Own session: the daemon must survive the harness (and Ctrl-C in its terminal).
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


class _NotYet(Exception):
    """The daemon does not answer yet (retried)."""


def _wait_answering(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> docker.DockerClient | None:
    """Poll until the daemon answers (a client), ``proc`` exits or ``timeout_s`` passes (None)."""
    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.3),
        retry=retry_if_exception_type(_NotYet),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                if proc is not None and proc.poll() is not None:
                    return None
                client = client_if_answering(timeout_s=2.0)
                if client is None:
                    raise _NotYet()
                return client
    except _NotYet:
        return None
    return None


def _live_dockerd_pid() -> int | None:
    try:
        pid = int(DOCKERD_PIDFILE.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "dockerd" else None
