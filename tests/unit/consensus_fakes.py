"""Fakes for the consensus unit tests: clock, RPC caller, Peer transport, gated WAL writer, wire builders.

The fixture that assembles a node from them is consensus_fixture.py.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.log import RaftLog
from nodes.peer import RpcOutcome
from nodes.rpc import RpcLayerError
from nodes.storage import WalWriter
from nodes.wal import LogEntry


# ----- fake clock -----
class _Handle:
    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic seconds that move only in ``advance``; due callbacks run in time order then."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, _Handle]] = []

    def now(self) -> float:
        return self._now

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> _Handle:
        h = _Handle(self._now + max(0.0, delay_s), fn)
        heapq.heappush(self._heap, (h.when, next(self._seq), h))
        return h

    def advance_to(self, t: float) -> None:
        """Run every callback due at or before ``t`` (including ones they schedule), then stop at t."""
        while self._heap and self._heap[0][0] <= t:
            when, _, h = heapq.heappop(self._heap)
            if h.cancelled:
                continue
            self._now = max(self._now, when)
            h.fn()
        self._now = max(self._now, t)

    def advance(self, dt: float) -> None:
        self.advance_to(self._now + dt)

    def run_due(self) -> None:
        """Deliver callbacks due now (e.g. consensus notifications with zero latency)."""
        self.advance_to(self._now)


# ----- fake RPC caller (RequestVote / proxy forwards) -----
@dataclass
class RpcCall:
    uuid: str
    rpc: str
    body: dict[str, Any]
    timeout_s: float
    future: asyncio.Future[dict[str, Any]]

    @property
    def answered(self) -> bool:
        return self.future.done()

    def reply(self, body: dict[str, Any]) -> None:
        self.future.set_result(body)

    def fail(self, exc: Exception | None = None) -> None:
        self.future.set_exception(exc or RpcLayerError(f"{self.uuid}: connection refused (test)"))


class FakeRpc:
    """RpcCaller: records each call; the call completes when the test (or ``auto``) answers it."""

    def __init__(self) -> None:
        self.calls: list[RpcCall] = []
        self.auto: Callable[[RpcCall], None] | None = None

    async def call(self, uuid: str, rpc: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        call = RpcCall(uuid, rpc, copy.deepcopy(body), timeout_s, fut)
        self.calls.append(call)
        if self.auto is not None:
            self.auto(call)
        return await fut

    def pending(self, rpc: str | None = None) -> list[RpcCall]:
        return [c for c in self.calls if not c.answered and (rpc is None or c.rpc == rpc)]


# ----- fake Peer transport (the leader's UpdateConsensus sends) -----
@dataclass
class SentUpdate:
    hop: str
    body: dict[str, Any]
    timeout_s: float
    done: Callable[[RpcOutcome], None]
    answered: bool = False

    def reply(self, body: dict[str, Any]) -> None:
        assert not self.answered, "already answered"
        self.answered = True
        self.done(RpcOutcome(body=body))

    def fail(self, exc: Exception | None = None) -> None:
        assert not self.answered, "already answered"
        self.answered = True
        self.done(RpcOutcome(error=exc or RpcLayerError(f"{self.hop}: connection refused (test)")))


class FakePeerTransport:
    def __init__(self, hops: Iterable[str]) -> None:
        self.hops = set(hops)
        self.sent: list[SentUpdate] = []

    def has_hop(self, uuid: str) -> bool:
        return uuid in self.hops

    def send_update(self, hop: str, body: dict[str, Any], timeout_s: float,
                    done: Callable[[RpcOutcome], None]) -> None:
        self.sent.append(SentUpdate(hop, copy.deepcopy(body), timeout_s, done))

    def pending(self, hop: str | None = None) -> list[SentUpdate]:
        return [s for s in self.sent if not s.answered and (hop is None or s.hop == hop)]

    def take(self, hop: str) -> SentUpdate:
        """The one unanswered request to ``hop`` (the Peer keeps at most one in flight)."""
        p = self.pending(hop)
        assert len(p) == 1, f"expected one pending request to {hop}, got {len(p)}"
        return p[0]


# ----- WAL writer whose writes the test can hold -----
class GatedWalWriter(WalWriter):
    """A WalWriter whose next write waits while ``hold`` is set (to keep an Update in flight)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_gate = asyncio.Event()
        self.open_gate.set()

    def hold(self) -> None:
        self.open_gate.clear()

    def release(self) -> None:
        self.open_gate.set()
        self._kick()

    def _kick(self) -> None:
        if self.open_gate.is_set():  # held: nothing more goes to the append thread
            super()._kick()


class InjectedExit(Exception):
    """Raised instead of os._exit by the FaultPoints under test."""

    def __init__(self, code: int) -> None:
        super().__init__(f"injected exit {code}")
        self.code = code


# ----- request/response builders -----
def op(term: int, index: int, kind: str = "WRITE", payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One wire op; WRITE ops default to a put of k<index>=v<index>."""
    if kind == "WRITE" and payload is None:
        payload = {"op": "put", "key": f"k{index}", "value": f"v{index}"}
    return LogEntry(term, index, kind, payload).to_json()


def ops(term: int, first: int, last: int, kind: str = "WRITE") -> list[dict[str, Any]]:
    return [op(term, i, kind) for i in range(first, last + 1)]


def update_body(*, term: int, preceding: Sequence[int] = (0, 0), ops: Sequence[dict[str, Any]] = (),
                committed: int = 0, caller: str = "n2", dest: str = "n1",
                all_replicated: int | None = 0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tablet_id": "raftchaos", "caller_uuid": caller, "dest_uuid": dest, "caller_term": term,
        "preceding_id": list(preceding), "ops": [dict(o) for o in ops], "committed_index": committed,
        "last_idx_appended_to_leader": committed,
    }
    if all_replicated is not None:
        body["all_replicated_index"] = all_replicated
    body.update(extra)
    return body


def vote_body(*, candidate: str = "n2", term: int, last: Sequence[int] = (0, 0), pre: bool = False,
              forced: bool = False, dest: str | None = "n1") -> dict[str, Any]:
    body: dict[str, Any] = {"candidate_uuid": candidate, "candidate_term": term,
                            "candidate_status": {"last_received": list(last)},
                            "is_pre_election": pre, "ignore_live_leader": forced}
    if dest is not None:
        body["dest_uuid"] = dest
    return body


def follower_reply(uuid: str, term: int, last: Sequence[int], *, current_leader: Sequence[int] | None = None,
                   committed: int = 0, error: tuple[str, str] | None = None) -> dict[str, Any]:
    """An UpdateConsensus answer as a follower would produce it."""
    status: dict[str, Any] = {"last_received": list(last),
                              "last_received_current_leader": list(current_leader or last),
                              "last_committed_idx": committed}
    if error is not None:
        status["error"] = {"code": error[0], "message": error[1]}
    return {"responder_uuid": uuid, "responder_term": term, "status": status}


def status_error(resp: dict[str, Any]) -> str | None:
    """The consensus-level error code of an UpdateConsensus reply (None when OK)."""
    err = resp.get("status", {}).get("error")
    return None if err is None else err["code"]


def entries_of(log: RaftLog) -> list[LogEntry]:
    return [log.get(i) for i in range(log.first_index, log.last_index + 1)]


def assert_log_contiguous(log: RaftLog) -> None:
    es = entries_of(log)
    for prev, cur in itertools.pairwise(es):
        assert cur.index == prev.index + 1, f"gap between {prev.index} and {cur.index}"
        assert cur.term >= prev.term, f"term goes back at {cur.index}"



class ModelFollower:
    """A minimal correct follower (log of OpIds only) that answers the leader's UpdateConsensus requests."""

    def __init__(self, uuid: str, log: Sequence[tuple[int, int]] = ()) -> None:
        self.uuid = uuid
        self.log: list[tuple[int, int]] = list(log)
        self.term = 0
        self.commit = 0

    def last(self) -> tuple[int, int]:
        return self.log[-1] if self.log else (0, 0)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.term = max(self.term, body["caller_term"])
        p_term, p_idx = body["preceding_id"]
        if p_idx > len(self.log) or (p_idx > 0 and self.log[p_idx - 1][0] != p_term):
            return follower_reply(self.uuid, self.term, self.last(), current_leader=(0, 0),
                                  committed=self.commit,
                                  error=("PRECEDING_ENTRY_DIDNT_MATCH", "Log matching property violated"))
        for o in body["ops"]:
            i = o["index"]
            if i <= len(self.log) and self.log[i - 1][0] != o["term"]:
                del self.log[i - 1:]
            if i == len(self.log) + 1:
                self.log.append((o["term"], i))
        last_op = body["ops"][-1] if body["ops"] else {"term": p_term, "index": p_idx}
        last_in_request = (last_op["term"], last_op["index"])
        self.commit = max(self.commit, min(body["committed_index"], last_in_request[1]))
        return follower_reply(self.uuid, self.term, self.last(), current_leader=last_in_request,
                              committed=self.commit)
