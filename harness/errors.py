"""The harness's own failures (as opposed to findings about the system under test)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path


def format_log_tails(tails: Mapping[str, Sequence[str]]) -> str:
    """Render each node's last log lines under a header naming the node ('' when there are none)."""
    parts: list[str] = []
    for node_id, lines in tails.items():
        body = "\n".join(f"    {line}" for line in lines) if lines else "    (empty log)"
        parts.append(f"  --- last log lines of {node_id} ---\n{body}")
    return "\n".join(parts)


class HarnessError(Exception):
    """Root of every error the harness raises about itself (setup, config, waits, faults)."""


class ConfigError(HarnessError):
    """A cluster spec, timing profile or argument that cannot work; raised before anything starts."""


def read_utf8(path: Path, error: type[ConfigError] = ConfigError) -> str:
    """A file the harness was handed, as text: ``error`` (one line naming the file) when it cannot
    be read or is not UTF-8, so a bad input file never turns into a traceback or replaced bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


class _WithLogs(HarnessError):
    """An error that carries the last log lines of each node, appended to its message."""

    def __init__(self, message: str, node_logs: Mapping[str, Sequence[str]] | None = None) -> None:
        self.message = message
        self.node_logs: dict[str, list[str]] = {k: list(v) for k, v in (node_logs or {}).items()}
        super().__init__(message)

    def __str__(self) -> str:
        tails = format_log_tails(self.node_logs)
        return f"{self.message}\n{tails}" if tails else self.message


class SetupError(_WithLogs):
    """Something the harness needs could not be started (binary missing, node died at start, ...)."""


class FaultError(HarnessError):
    """A fault could not be injected or healed (the harness's failure, not the system's)."""


class NoTarget(FaultError):
    """The target resolves to nobody right now (e.g. ``leader`` while no leader is agreed, even
    after waiting for one): a schedule records the step as skipped, as Jepsen's nemesis does."""


class FaultUnavailable(FaultError):
    """A fault cannot run on this cluster/backend; ``reason`` says why. Suites skip, never fail."""

    def __init__(self, fault: str, reason: str) -> None:
        self.fault = fault
        self.reason = reason
        super().__init__(f"fault {fault} unavailable: {reason}")


class NodeUnreachable(HarnessError):
    """An HTTP call to a node failed at the transport level (refused, reset, timed out).

    Waits treat it as transient. ``kind`` is ``refused`` (nothing was delivered: a definite
    failure for a client op), ``timeout``, ``reset`` or ``other`` (indeterminate).
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        self.kind = kind
        super().__init__(message)

    @classmethod
    def from_reason(cls, message: str, reason: object) -> NodeUnreachable:
        """Classify a transport failure (urllib's ``reason`` or the exception itself)."""
        if isinstance(reason, TimeoutError | socket.timeout):
            kind = "timeout"
        elif isinstance(reason, ConnectionRefusedError):
            kind = "refused"
        elif isinstance(reason, ConnectionError | http.client.HTTPException):
            kind = "reset"
        else:
            kind = "other"
        return cls(f"{message}: {type(reason).__name__}: {reason}", kind)


class ToxiproxyError(HarnessError):
    """A Toxiproxy API call failed, answered an error status, or did not answer in time."""


class WaitTimeout(_WithLogs):
    """A wait ran out of time. Carries what was awaited, the bound, and each node's last log lines."""

    def __init__(
        self,
        what: str,
        timeout_s: float,
        last_problem: str | None = None,
        node_logs: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.last_problem = last_problem
        msg = f"timed out after {timeout_s:.2f} s waiting for {what}"
        if last_problem:
            msg += f" (last: {last_problem})"
        super().__init__(msg, node_logs)
