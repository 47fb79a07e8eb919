"""What every system's node client shares: the outcome vocabulary of a client operation
(``Outcome``, ``KvResult``) and one JSON-over-HTTP transport (``json_over_http``) that classifies a
timeout or refused connection the same way whichever system the harness talks to. The clients
themselves live in their system's package (kuduraft's ``NodeClient``:
``harness.systems.kuduraft.client``; etcd's gateway: ``harness.systems.etcd.gateway``)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.errors import NodeUnreachable


class Outcome(StrEnum):
    """How a client operation ended: took effect, definitely did not, or unknown."""

    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True)
class KvResult:
    """One KV call's result.

    ``outcome`` OK: ``body`` holds the answer. FAIL (definitely not executed): ``error`` is
    ``not_leader`` (``leader``/``leader_http`` carry the hint) or ``bad_request``. INFO
    (indeterminate): ``error`` is ``timeout``, ``leadership_lost``, ``connection reset``, ...
    """

    outcome: Outcome
    latency_s: float
    body: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    http_status: int | None = None
    leader: str | None = None
    leader_http: str | None = None


def json_over_http(what: str, url: str, method: str, body: Any, timeout_s: float) -> tuple[int, Any]:
    """(status, decoded JSON) for any HTTP answer, NodeUnreachable (labelled ``what``) for a
    transport failure: one transport for every system's HTTP control and KV calls, so a timeout or
    refused connection is classified the same whichever system the harness talks to."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except TimeoutError:
        raise NodeUnreachable(f"{what}: timeout after {timeout_s:g} s", "timeout") from None
    except urllib.error.URLError as exc:
        raise NodeUnreachable.from_reason(what, exc.reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise NodeUnreachable.from_reason(what, exc) from None
    try:
        decoded = json.loads(raw) if raw.strip() else {}
    except ValueError:
        decoded = {"raw": raw.decode(errors="replace")[:200]}
    return status, decoded
