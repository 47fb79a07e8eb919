"""kuduraft's node client: the HTTP API of ``nodes/`` (docs/node-api.md): ``/health``, ``/status``,
``/events``, ``/flags``, ``/admin/step_down`` and ``/kv/*`` with the node's answers (421 + leader
hint for not-leader, 400/409 for no effect), on the shared transport ``harness.nodeclient``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from harness.errors import HarnessError, NodeUnreachable
from harness.nodeclient import KvResult, Outcome, json_over_http

_ERRORS = {"refused": "connection_refused", "timeout": "timeout", "reset": "connection_reset"}


class NodeClient:
    """HTTP client of one node. ``base_url`` is where status/flags go (the node directly);
    ``kv_url`` is where KV operations go (by default the same; the cluster passes the node's
    ``client->nX`` proxy so client traffic crosses Toxiproxy)."""

    def __init__(self, node_id: str, base_url: str, kv_url: str | None = None,
                 timeout_s: float = 2.0) -> None:
        self.node_id = node_id
        self.base_url = base_url.rstrip("/")
        self.kv_url = (kv_url or base_url).rstrip("/")
        self.timeout_s = timeout_s

    # ---- transport ----------------------------------------------------------------------------

    def _request(self, url: str, method: str, body: Any, timeout_s: float) -> tuple[int, Any]:
        return json_over_http(f"{self.node_id} {method} {url}", url, method, body, timeout_s)

    def _get_json(self, path: str) -> Any:
        status, doc = self._request(self.base_url + path, "GET", None, self.timeout_s)
        if status != 200:
            raise HarnessError(f"{self.node_id} GET {path}: HTTP {status}: {doc}")
        return doc

    # ---- control API ----------------------------------------------------------------------------

    def health(self) -> bool:
        """True once the node serves; NodeUnreachable while it does not answer."""
        status, doc = self._request(self.base_url + "/health", "GET", None, self.timeout_s)
        return status == 200 and bool(doc.get("ok"))

    def status(self) -> dict[str, Any]:
        """The node's ``/status`` document (see docs/node-api.md)."""
        doc = self._get_json("/status")
        if not isinstance(doc, dict):
            raise HarnessError(f"{self.node_id} /status is not an object: {doc!r}")
        return doc

    def events(self, since: int = 0) -> dict[str, Any]:
        """The node's own event trace after sequence number ``since`` (``GET /events``,
        docs/node-api.md): request/reply and election events stamped on the node's clock."""
        doc = self._get_json(f"/events?since={int(since)}")
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            raise HarnessError(f"{self.node_id} /events is not an event page: {str(doc)[:80]!r}")
        return doc

    def flags(self) -> dict[str, Any]:
        return dict(self._get_json("/flags").get("flags", {}))

    def set_flag(self, name: str, value: Any) -> Any:
        """Change a runtime flag; returns the node's new value. HarnessError on 400/404."""
        url = f"{self.base_url}/flags/{quote(name, safe='')}"
        status, doc = self._request(url, "PUT", {"value": value}, self.timeout_s)
        if status != 200:
            raise HarnessError(f"{self.node_id}: set flag {name}={value!r} refused: HTTP {status}: {doc}")
        return doc.get("value", value) if isinstance(doc, dict) else value

    def step_down(self) -> bool:
        status, _ = self._request(self.base_url + "/admin/step_down", "POST", {}, self.timeout_s)
        return status == 200

    # ---- KV -----------------------------------------------------------------------------------

    def kv(self, op: str, body: Mapping[str, Any], timeout_s: float | None = None) -> KvResult:
        """POST ``/kv/<op>`` and classify the answer; never raises for node or network errors."""
        started = time.monotonic()
        try:
            status, doc = self._request(f"{self.kv_url}/kv/{op}", "POST", dict(body),
                                        timeout_s if timeout_s is not None else self.timeout_s)
        except NodeUnreachable as exc:
            # Refused: the request never left (definite); anything else may have been executed.
            outcome = Outcome.FAIL if exc.kind == "refused" else Outcome.INFO
            return KvResult(outcome, time.monotonic() - started, error=_ERRORS.get(exc.kind, "connection_error"))
        latency = time.monotonic() - started
        doc = doc if isinstance(doc, dict) else {"raw": doc}
        if status == 200 and doc.get("ok", True):
            return KvResult(Outcome.OK, latency, doc, http_status=status)
        if status == 421:
            return KvResult(Outcome.FAIL, latency, doc, "not_leader", status, doc.get("leader"),
                            doc.get("leader_http"))
        if status in (400, 409):  # bad request, or applied as a no-op (apply_error): no effect
            return KvResult(Outcome.FAIL, latency, doc, str(doc.get("error", "bad_request")), status)
        return KvResult(Outcome.INFO, latency, doc, str(doc.get("error", f"http_{status}")), status)

    def put(self, key: str, value: Any, timeout_s: float | None = None) -> KvResult:
        return self.kv("put", {"key": key, "value": value}, timeout_s)

    def get(self, key: str, timeout_s: float | None = None) -> KvResult:
        return self.kv("get", {"key": key}, timeout_s)

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult:
        return self.kv("cas", {"key": key, "from": expected, "to": new}, timeout_s)

    def append(self, key: str, value: str, timeout_s: float | None = None) -> KvResult:
        return self.kv("append", {"key": key, "value": value}, timeout_s)
