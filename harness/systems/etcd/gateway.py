"""etcd's v3 JSON gateway (grpc-gateway, etcd 3.4): the observer and the KV client of one member.

Keys and values travel base64-encoded; 64-bit ids and counters arrive as decimal strings. The KV
client stores each value as its JSON text, so the workload's values (ints, strings, null) read
back as they were written. Outcomes follow the harness's rule (house style 7): only an answer that
proves the request was not executed is FAIL; a timeout, a reset or an etcd error that may follow a
proposal ("request timed out", "leader changed", "no leader") is INFO.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from harness.errors import HarnessError, NodeUnreachable
from harness.nodeclient import KvResult, Outcome, json_over_http
from harness.systems.base import NodeObservation, Role

# gRPC codes in the gateway's error body that prove the request was refused before any proposal
# (etcd v3.4 etcdserver/api/v3rpc/rpctypes/error.go maps the errors to codes; v3_server.go
# processInternalRaftRequestOnce returns ErrTooManyRequests (ResourceExhausted) and
# ErrRequestTooLarge (InvalidArgument) before s.r.Propose): InvalidArgument, NotFound,
# AlreadyExists, PermissionDenied, ResourceExhausted, FailedPrecondition, Unimplemented,
# Unauthenticated. Everything else, Unavailable ("request timed out", "leader changed") and
# DeadlineExceeded included, may follow a proposal: INFO.
_DEFINITE_CODES = frozenset({3, 5, 6, 7, 8, 9, 12, 16})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode(errors="replace")


def encode_value(value: Any) -> str:
    """A workload value as stored in etcd: its JSON text, base64-encoded for the gateway."""
    return b64(json.dumps(value, separators=(",", ":")))


def decode_value(raw: str) -> Any:
    """The inverse of ``encode_value``; a value some other writer stored as plain text stays text."""
    text = unb64(raw)
    try:
        return json.loads(text)
    except ValueError:
        return text


class Gateway:
    """POSTs JSON to one member's gateway; NodeUnreachable (``refused``/``timeout``/``reset``/
    ``other``) for transport failures, as ``harness.nodeclient`` classifies them."""

    def __init__(self, node_id: str, base_url: str, timeout_s: float = 2.0) -> None:
        self.node_id = node_id
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def post(self, path: str, body: Mapping[str, Any], timeout_s: float | None = None) -> tuple[int, Any]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return json_over_http(f"{self.node_id} POST {path}", self.base_url + path, "POST", body, timeout)

    def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A control call that must succeed (status, member list): HarnessError otherwise."""
        status, doc = self.post(path, body)
        if status != 200 or not isinstance(doc, dict):
            raise HarnessError(f"{self.node_id} POST {path}: HTTP {status}: {str(doc)[:200]}")
        return doc


class EtcdObserver:
    """``/v3/maintenance/status`` plus the member list (cached; re-read when the leader's id is
    not in it) mapped to a NodeObservation. etcd does not report candidacy: a member that knows
    no leader is UNKNOWN."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._names: dict[str, str] = {}

    def members(self) -> dict[str, str]:
        """Member id (decimal string) -> name, from ``/v3/cluster/member/list``."""
        doc = self.gateway.call("/v3/cluster/member/list", {})
        self._names = {str(m.get("ID")): str(m.get("name", "")) for m in doc.get("members", [])}
        return dict(self._names)

    def observe(self) -> NodeObservation:
        status = self.gateway.call("/v3/maintenance/status", {})
        leader_id = str(status.get("leader", "0"))
        if not self._names or (leader_id != "0" and leader_id not in self._names):
            self.members()
        return observation(self.gateway.node_id, status, self._names)


def observation(node_id: str, status: Mapping[str, Any], names: Mapping[str, str]) -> NodeObservation:
    """Map a status document (``names``: member id -> name); HarnessError names a missing field."""
    try:
        own = str(status["header"]["member_id"])
        term = int(status["raftTerm"])
        commit = int(status["raftIndex"])
        applied = int(status["raftAppliedIndex"]) if "raftAppliedIndex" in status else None
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{node_id} /v3/maintenance/status: unreadable ({type(exc).__name__}: {exc})") from None
    leader_id = str(status.get("leader", "0"))
    if leader_id == "0":
        role, leader = Role.UNKNOWN, None
    else:
        role = Role.LEADER if leader_id == own else Role.FOLLOWER
        leader = names.get(leader_id) or None
    members = tuple(sorted(n for n in names.values() if n))
    return NodeObservation(node_id=node_id, role=role, term=term, leader=leader, commit_index=commit,
                           applied_index=applied, members=members, raw=dict(status))


class EtcdKv:
    """get/put/cas/append on one member: ``/v3/kv/range`` (linearizable), ``/v3/kv/put``,
    ``/v3/kv/txn``. A cas compares the stored value, or version 0 when ``expected`` is None (the
    key must be absent; kuduraft's node also matches a stored null, which the workload never
    writes). etcd has no append: it is read, then a txn on the key's mod_revision, retried while
    another writer gets in between (``APPEND_ATTEMPTS``)."""

    APPEND_ATTEMPTS = 8

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _op(self, path: str, body: Mapping[str, Any], timeout_s: float | None,
            read: Callable[[dict[str, Any]], dict[str, Any]]) -> KvResult:
        started = time.monotonic()
        try:
            status, doc = self.gateway.post(path, body, timeout_s)
        except NodeUnreachable as exc:
            outcome = Outcome.FAIL if exc.kind == "refused" else Outcome.INFO
            error = {"refused": "connection_refused", "timeout": "timeout",
                     "reset": "connection_reset"}.get(exc.kind, "connection_error")
            return KvResult(outcome, time.monotonic() - started, error=error)
        latency = time.monotonic() - started
        doc = doc if isinstance(doc, dict) else {"raw": doc}
        if status == 200:
            try:
                return KvResult(Outcome.OK, latency, read(doc), http_status=status)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                # etcd said it executed the request but the answer is unreadable: outcome unknown.
                return KvResult(Outcome.INFO, latency, {"raw": doc}, f"unreadable_answer: {exc}", status)
        message = str(doc.get("message") or doc.get("error") or f"http_{status}")
        code = doc.get("code")
        outcome = Outcome.FAIL if code in _DEFINITE_CODES else Outcome.INFO
        return KvResult(outcome, latency, doc, message, status)

    def get(self, key: str, timeout_s: float | None = None) -> KvResult:
        def read(doc: dict[str, Any]) -> dict[str, Any]:
            kvs = doc.get("kvs") or []
            value = decode_value(kvs[0].get("value", "")) if kvs else None
            return {"value": value, "revision": int(doc["header"]["revision"])}
        return self._op("/v3/kv/range", {"key": b64(key)}, timeout_s, read)

    def put(self, key: str, value: Any, timeout_s: float | None = None) -> KvResult:
        def read(doc: dict[str, Any]) -> dict[str, Any]:
            return {"value": value, "revision": int(doc["header"]["revision"])}
        return self._op("/v3/kv/put", {"key": b64(key), "value": encode_value(value)}, timeout_s, read)

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult:
        k = b64(key)
        if expected is None:
            compare = {"key": k, "target": "VERSION", "result": "EQUAL", "version": "0"}
        else:
            compare = {"key": k, "target": "VALUE", "result": "EQUAL", "value": encode_value(expected)}
        body = {"compare": [compare], "success": [{"request_put": {"key": k, "value": encode_value(new)}}],
                "failure": [{"request_range": {"key": k}}]}

        def read(doc: dict[str, Any]) -> dict[str, Any]:
            revision = int(doc["header"]["revision"])
            if doc.get("succeeded"):
                return {"swapped": True, "value": new, "revision": revision}
            kvs = doc["responses"][0]["response_range"].get("kvs") or []
            current = decode_value(kvs[0].get("value", "")) if kvs else None
            return {"swapped": False, "value": current, "revision": revision}
        return self._op("/v3/kv/txn", body, timeout_s, read)

    def append(self, key: str, value: str, timeout_s: float | None = None) -> KvResult:
        """Append ``value`` to the string at ``key`` (absent: empty), as kuduraft's node does.

        Every txn before the last one failed its compare (executed, changed nothing), so an error
        while reading is FAIL; the last txn's own outcome is the append's. A non-string value is
        FAIL ``apply_error`` (the node's 409)."""
        started = time.monotonic()
        k = b64(key)
        for _ in range(self.APPEND_ATTEMPTS):
            read = self._op("/v3/kv/range", {"key": k}, timeout_s, lambda doc: {"kvs": doc.get("kvs") or []})
            if read.outcome is not Outcome.OK:
                return KvResult(Outcome.FAIL, time.monotonic() - started, read.body, read.error, read.http_status)
            kvs = read.body["kvs"]
            current = decode_value(kvs[0].get("value", "")) if kvs else None
            if current is not None and not isinstance(current, str):
                return KvResult(Outcome.FAIL, time.monotonic() - started, {"value": current}, "apply_error")
            if kvs:
                compare = {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": kvs[0]["mod_revision"]}
            else:
                compare = {"key": k, "target": "VERSION", "result": "EQUAL", "version": "0"}
            new = (current or "") + value
            body = {"compare": [compare], "success": [{"request_put": {"key": k, "value": encode_value(new)}}]}
            result = self._op("/v3/kv/txn", body, timeout_s,
                              lambda doc: {"swapped": bool(doc.get("succeeded"))})
            if result.outcome is not Outcome.OK or result.body["swapped"]:
                return KvResult(result.outcome, time.monotonic() - started,
                                {"value": new} if result.outcome is Outcome.OK else result.body,
                                result.error, result.http_status)
        return KvResult(Outcome.FAIL, time.monotonic() - started, {}, "append_contended")
