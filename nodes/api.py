"""The node's HTTP control surface: status, metrics, flags and linearizable KV operations."""

from __future__ import annotations

import asyncio
from typing import Any

from nodes.consensus import LeadershipLost, NotLeader, RaftConsensus
from nodes.flags import FlagError
from nodes.http import HttpResponse, PendingResponse, json_response
from nodes.jsonsafe import JsonInputError, loads
from nodes.kv import KvError, validate_op
from nodes.service import ConsensusService


class NodeApi:
    """Routes one HTTP request; runs on the node's event loop, so it reads consistent state."""

    def __init__(self, c: RaftConsensus, service: ConsensusService) -> None:
        self.c = c
        self.service = service

    def status(self) -> dict[str, Any]:
        doc = self.c.status()
        doc["proxy"] = self.service.proxy_counters.as_dict()
        doc["flags"] = self.c.flags.as_dict()
        return doc

    async def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> HttpResponse:
        """``dispatch`` awaited: the coroutine form of the handler, for tests and other callers."""
        resp = self.dispatch(method, path, query, body)
        if isinstance(resp, HttpResponse):
            return resp
        fut: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

        def settle(r: HttpResponse | BaseException) -> None:
            if isinstance(r, BaseException):
                fut.set_exception(r)
            else:
                fut.set_result(r)
        resp.on_done(settle)
        return await fut

    def dispatch(self, method: str, path: str, query: dict[str, str],
                 body: bytes) -> HttpResponse | PendingResponse:
        """The HttpServer's handler: an answer now, or a future one for a replicated KV op.

        Synchronous on purpose: the write path then costs no task and no timer task per request
        (issue #14's profile), only a PendingResponse answered when consensus applies the entry.
        """
        if method == "POST" and path.startswith("/kv/"):
            return self._kv(path[len("/kv/"):], body)
        if method == "GET" and path == "/health":
            return json_response(200, {"ok": True, "uuid": self.c.uuid})
        if method == "GET" and path == "/status":
            return json_response(200, self.status())
        if method == "GET" and path == "/events":
            return self._events(query)
        if method == "GET" and path == "/metrics":
            return HttpResponse(200, render_metrics(self.status()).encode(),
                                "text/plain; version=0.0.4")
        if method == "GET" and path == "/flags":
            return json_response(200, {"flags": self.c.flags.as_dict()})
        if path.startswith("/flags/"):
            if method != "PUT":
                return json_response(405, {"error": "use PUT /flags/<name> with {\"value\": v}"})
            return self._set_flag(path[len("/flags/"):], body)
        if method == "POST" and path == "/admin/step_down":
            try:
                self.c.step_down()
            except NotLeader as e:
                return self._not_leader(e)
            return json_response(200, {"ok": True, "term": self.c.term})
        return json_response(404, {"error": f"no route for {method} {path}"})

    def _events(self, query: dict[str, str]) -> HttpResponse:
        """The node's own trace after ``since`` (docs/node-api.md, "GET /events")."""
        raw = query.get("since", "0")
        if not (raw.isascii() and raw.isdigit()):
            return json_response(400, {"error": f"since must be a non-negative integer, got {raw!r}"})
        doc = self.c.events.read(int(raw))
        doc["uuid"] = self.c.uuid
        return json_response(200, doc)

    def _set_flag(self, name: str, body: bytes) -> HttpResponse:
        if not self.c.flags.known(name):
            return json_response(404, {"error": f"unknown flag {name!r}"})
        try:
            payload = loads(body or b"{}")
        except JsonInputError as e:
            return json_response(400, {"error": f"{name}: body must be JSON {{\"value\": v}}; {e}"})
        if not isinstance(payload, dict) or "value" not in payload:
            return json_response(400, {"error": "body must be JSON {\"value\": v}"})
        try:
            value = self.c.flags.set(name, payload["value"])
        except FlagError as e:
            return json_response(400, {"error": str(e)})
        self.c.logger.info("flag %s set to %r", name, value)
        return json_response(200, {"name": name, "value": value})

    def _not_leader(self, e: NotLeader) -> HttpResponse:
        hint = e.leader
        addr = str(self.c.config.nodes[hint].http) if hint in self.c.config.nodes else None
        return json_response(421, {"ok": False, "error": "not_leader", "leader": hint,
                                   "leader_http": addr})

    def _kv(self, verb: str, body: bytes) -> HttpResponse | PendingResponse:
        try:
            payload = loads(body or b"{}")
            if not isinstance(payload, dict):
                raise KvError("body must be a JSON object")
            op = {"op": verb, **{k: payload[k] for k in ("key", "value", "from", "to") if k in payload}}
            validate_op(op)
        except (ValueError, KvError) as e:
            return json_response(400, {"ok": False, "error": "bad_request", "message": str(e)})
        loop = asyncio.get_running_loop()
        out = PendingResponse()
        timer: asyncio.TimerHandle | None = None

        def applied(outcome: dict[str, Any] | Exception) -> None:
            if timer is not None:
                timer.cancel()
            _answer_outcome(outcome, out)

        try:
            # The result comes straight from the apply loop (no future callback turn, issue #14).
            self.c.replicate_then(op, applied)
        except NotLeader as e:
            return self._not_leader(e)
        # The op is never withdrawn from consensus here (it may still commit); a timeout only
        # answers the client, indeterminate.
        timer = loop.call_later(float(self.c.flags["kv_op_timeout_ms"]) / 1000.0, _answer_timeout, out)
        return out


def _answer_timeout(out: PendingResponse) -> None:
    out.set(json_response(503, {"ok": False, "error": "timeout", "indeterminate": True}))


def _answer_outcome(outcome: dict[str, Any] | Exception, out: PendingResponse) -> None:
    if out.done():
        return  # answered "timeout" already
    if isinstance(outcome, LeadershipLost):
        out.set(json_response(503, {"ok": False, "error": "leadership_lost", "message": str(outcome),
                                    "indeterminate": True}))
    elif isinstance(outcome, Exception):
        out.set(outcome)
    else:
        out.set(_applied_response(outcome))


def _applied_response(result: dict[str, Any]) -> HttpResponse:
    if "error" in result:
        # Committed and applied as a no-op (e.g. append to a non-string): definitely failed.
        return json_response(409, {"ok": False, "error": "apply_error",
                                   "message": result["error"], "index": result.get("index")})
    return json_response(200, {"ok": True, **result})


def _metric_lines(prefix: str, doc: dict[str, Any], labels: str) -> list[str]:
    out = []
    for k, v in doc.items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int | float):
            out.append(f"raftchaos_{prefix}{k}{{{labels}}} {v}")
    return out


def render_metrics(status: dict[str, Any]) -> str:
    """Prometheus text exposition of /status numbers (per-peer counters labelled by peer)."""
    node = f'node="{status["uuid"]}"'
    lines = _metric_lines("", status, node)
    lines.append(f'raftchaos_is_leader{{{node}}} {int(status["role"] == "LEADER")}')
    for flag, n in status.get("crash_flag_draws", {}).items():
        lines.append(f'raftchaos_crash_flag_draws{{{node},flag="{flag}"}} {n}')
    for k, v in status.get("proxy", {}).items():
        lines.append(f"raftchaos_proxy_{k}{{{node}}} {v}")
    for peer, view in status.get("peers", {}).items():
        labels = f'{node},peer="{peer}"'
        lines += _metric_lines("peer_", {k: v for k, v in view.items() if k != "counters"}, labels)
        lines += _metric_lines("peer_", view.get("counters", {}), labels)
    return "\n".join(lines) + "\n"
