"""Proxy node side (nodes/proxy.py handle_proxy_request) and the service's destination checks,
against a stub consensus: proxy-side parts of B44, B46, B47, B48, B49."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from fakes import make_entries, server_error_reply, update_reply

import nodes.proxy as proxy_mod
from nodes.flags import Flags
from nodes.log import RaftLog
from nodes.proxy import ProxyCounters, handle_proxy_request
from nodes.routing import RoutingTable
from nodes.rpc import RemoteRpcError, RpcLayerError
from nodes.service import ConsensusService
from nodes.wal import LogEntry

T = TypeVar("T")
Downstream = Callable[[str, dict[str, Any]], dict[str, Any]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5.0))


@dataclass
class StubRpc:
    """rpc.call: records each downstream call and answers with ``answer`` (or raises it)."""

    answer: Downstream | Exception = field(default_factory=lambda: lambda hop, body: update_reply(
        1, (1, 5), (1, 5), 5, uuid=hop))
    calls: list[tuple[str, str, dict[str, Any], float]] = field(default_factory=list)

    async def call(self, uuid: str, rpc: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.calls.append((uuid, rpc, body, timeout_s))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(uuid, body)


@dataclass
class StubConsensus:
    """What proxy.py (and the service's checks) use of RaftConsensus."""

    uuid: str = "B"
    term: int = 1
    log: RaftLog = field(default_factory=lambda: RaftLog(make_entries(5)))
    flags: Flags = field(default_factory=Flags)
    rpc: StubRpc = field(default_factory=StubRpc)
    members: tuple[str, ...] = ("A", "B", "C", "D")
    topology: dict[str, str] = field(default_factory=dict)
    leader: str = "A"

    @property
    def config(self) -> SimpleNamespace:
        return SimpleNamespace(nodes={u: object() for u in self.members})

    def routing_table(self) -> RoutingTable:
        return RoutingTable(self.members, self.topology, self.leader)

    async def meta_durable(self, version: int | None = None) -> None:
        """The service holds every reply until term and vote are durable; a proxy has none pending."""


def stubs(*indexes: int, term: int = 1) -> list[dict[str, Any]]:
    return [{"kind": "PROXY_OP", "term": term, "index": i} for i in indexes]


def proxied_body(ops: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tablet_id": "raftchaos", "dest_uuid": "C", "caller_uuid": "A", "caller_term": 1,
        "preceding_id": [1, 2], "committed_index": 2, "all_replicated_index": 1,
        "region_durable_index": 2, "last_idx_appended_to_leader": 5, "safe_timestamp": 12.5,
        "proxy_dest_uuid": "B", "proxy_hops_remaining": 16, "ops": ops,
    }
    body.update(over)
    return body


def handle(c: StubConsensus, body: dict[str, Any], counters: ProxyCounters | None = None
           ) -> dict[str, Any]:
    return run(handle_proxy_request(c, counters or ProxyCounters(), body))  # type: ignore[arg-type]


# ----- B44 -----

def test_b44_proxy_rebuilds_full_ops_and_relays_the_destination_reply() -> None:
    """B44. A proxied request carries PROXY_OP stubs and proxy_hops_remaining = 16; the
    destination receives full ops and the leader attributes the reply to the destination."""
    c = StubConsensus()
    counters = ProxyCounters()
    reply = handle(c, proxied_body(stubs(3, 4, 5)), counters)
    [(hop, rpc, down, timeout_s)] = c.rpc.calls
    assert (hop, rpc, timeout_s) == ("C", "UpdateConsensus", 30.0)
    assert down["ops"] == [c.log.get(i).to_json() for i in (3, 4, 5)]
    assert down["proxy_caller_uuid"] == "B" and down["proxy_hops_remaining"] == 15
    assert "proxy_dest_uuid" not in down
    for k in ("tablet_id", "dest_uuid", "caller_uuid", "caller_term", "preceding_id",
              "committed_index", "all_replicated_index", "region_durable_index",
              "last_idx_appended_to_leader", "safe_timestamp"):
        assert down[k] == proxied_body([])[k], k
    assert reply == update_reply(1, (1, 5), (1, 5), 5, uuid="C")  # relayed verbatim
    assert (counters.received, counters.success) == (1, 1)


def test_b44_multi_hop_forwards_stubs_to_the_next_proxy() -> None:
    """Spec 3.5. Multi-hop: forward the stubs with proxy_dest_uuid = next hop (own routing)."""
    c = StubConsensus(topology={"C": "B", "D": "C"},
                      flags=Flags({"raft_enable_multi_hop_proxy_routing": True}))
    handle(c, proxied_body(stubs(3), dest_uuid="D"))
    [(hop, _, down, _)] = c.rpc.calls
    assert hop == "C" and down["proxy_dest_uuid"] == "C" and down["ops"] == stubs(3)
    assert down["proxy_hops_remaining"] == 15


def test_b44_without_multi_hop_goes_straight_to_destination() -> None:
    """Spec 3.5. If multi-hop routing is off, a proxy always forwards to the final destination."""
    c = StubConsensus(topology={"C": "B", "D": "C"})
    handle(c, proxied_body(stubs(3), dest_uuid="D"))
    assert c.rpc.calls[0][0] == "D"


def test_b44_stub_mismatch_and_bad_stubs_are_errors() -> None:
    """Spec 3.5. OpIds must match the stubs (else IllegalState); non-PROXY_OP or
    non-consecutive ops are rejected. Nothing is forwarded."""
    c = StubConsensus()
    for ops in (stubs(3, term=2), stubs(3, 5), [c.log.get(3).to_json()]):
        reply = handle(c, proxied_body(ops))
        assert reply["error"]["code"] == "UNKNOWN_ERROR"
    assert c.rpc.calls == []


def test_b44_unknown_destination_is_an_error() -> None:
    """Spec 3.5. Next hop must be in the proxy's active config; routing errors count unknown_dest."""
    counters = ProxyCounters()
    c = StubConsensus()
    assert handle(c, proxied_body(stubs(3), dest_uuid="Z"), counters)["error"]["code"] == "UNKNOWN_ERROR"
    c = StubConsensus(flags=Flags({"raft_enable_multi_hop_proxy_routing": True}), topology={"C": "B"})
    assert handle(c, proxied_body(stubs(3), dest_uuid="Z"), counters)["error"]["code"] == "UNKNOWN_ERROR"
    assert counters.unknown_dest == 2 and c.rpc.calls == []


def test_b44_dest_equal_to_proxy_is_invalid_argument() -> None:
    """Spec 3.5. dest_uuid equal to the proxy => RPC failure (InvalidArgument)."""
    with pytest.raises(RemoteRpcError) as e:
        handle(StubConsensus(), proxied_body(stubs(3), dest_uuid="B"))
    assert e.value.code == "INVALID_ARGUMENT"


# ----- B46 -----

def test_b46_missing_ops_forward_a_heartbeat_after_500ms(monkeypatch: pytest.MonkeyPatch) -> None:
    """B46. A proxy lacking the requested ops for 500 ms forwards a heartbeat instead and
    increments raft_proxy_num_requests_log_read_timeout."""
    waited: list[tuple[int, float]] = []

    async def never(c: Any, index: int, timeout_s: float) -> bool:
        waited.append((index, timeout_s))
        return False
    monkeypatch.setattr(proxy_mod, "_wait_for_index", never)
    c = StubConsensus()
    counters = ProxyCounters()
    handle(c, proxied_body(stubs(6, 7), preceding_id=[1, 5]), counters)
    assert waited == [(6, 0.5)]
    [(_, _, down, _)] = c.rpc.calls
    assert down["ops"] == [] and down["preceding_id"] == [1, 5]
    assert (counters.log_read_timeout, counters.success, counters.received) == (1, 0, 1)


def test_b46_wait_ends_as_soon_as_the_op_is_appended() -> None:
    """B46 (spec 3.5). The proxy waits for the first op to appear in its own log, then reads."""
    c = StubConsensus()

    async def scenario() -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(c.log.append, LogEntry(1, 6, "WRITE", {"k": 6}))
        return await handle_proxy_request(c, ProxyCounters(), proxied_body(stubs(6), preceding_id=[1, 5]))  # type: ignore[arg-type]
    run(scenario())
    assert c.rpc.calls[0][2]["ops"] == [c.log.get(6).to_json()]


def test_b46_zero_wait_times_out_at_once() -> None:
    """B46. With the wait flag at 0 a missing op degrades the request immediately."""
    c = StubConsensus(flags=Flags({"raft_log_cache_proxy_wait_time_ms": 0}))
    counters = ProxyCounters()
    handle(c, proxied_body(stubs(9), preceding_id=[1, 5]), counters)
    assert c.rpc.calls[0][2]["ops"] == [] and counters.log_read_timeout == 1


def test_b46_partial_ops_are_forwarded_without_degrading() -> None:
    """Spec 3.5. Read as many as are available (subset tolerated)."""
    c = StubConsensus()
    counters = ProxyCounters()
    handle(c, proxied_body(stubs(4, 5, 6, 7), preceding_id=[1, 3]), counters)
    assert [op["index"] for op in c.rpc.calls[0][2]["ops"]] == [4, 5]
    assert (counters.log_read_timeout, counters.success) == (0, 1)


def test_b46_empty_stub_list_is_a_plain_heartbeat() -> None:
    """Spec 3.5. A proxied heartbeat (no stubs) is forwarded as is and is not 'degraded'."""
    c = StubConsensus()
    counters = ProxyCounters()
    handle(c, proxied_body([]), counters)
    assert c.rpc.calls[0][2]["ops"] == []
    assert (counters.log_read_timeout, counters.success) == (0, 1)


# ----- B47 -----

@pytest.mark.parametrize("hops", [0, -1, None])
def test_b47_no_hops_left_fails_at_rpc_level(hops: int | None) -> None:
    """B47. A request arriving at a proxy with no hops left fails at the RPC level (Incomplete,
    counted in raft_proxy_num_requests_hops_remaining_exhausted); nothing is forwarded."""
    c = StubConsensus()
    counters = ProxyCounters()
    body = proxied_body(stubs(3))
    if hops is None:
        del body["proxy_hops_remaining"]
    else:
        body["proxy_hops_remaining"] = hops
    with pytest.raises(RemoteRpcError) as e:
        handle(c, body, counters)
    assert e.value.code == "INCOMPLETE" and "hops" in e.value.message
    assert counters.hops_exhausted == 1 and c.rpc.calls == []


def test_b47_last_hop_with_one_hop_left_is_forwarded() -> None:
    """B47 (boundary). One hop left is enough: forwarded with 0 remaining."""
    c = StubConsensus()
    handle(c, proxied_body(stubs(3), proxy_hops_remaining=1))
    assert c.rpc.calls[0][2]["proxy_hops_remaining"] == 0


# ----- B48 -----

def test_b48_refused_destination_becomes_server_level_error() -> None:
    """B48. A destination that refuses connections behind a live proxy shows up at the leader as
    REMOTE_ERROR: the proxy answers a server-level UNKNOWN_ERROR "Error proxying request"."""
    c = StubConsensus(rpc=StubRpc(answer=RpcLayerError("connection refused")))
    counters = ProxyCounters()
    reply = handle(c, proxied_body(stubs(3)), counters)
    assert reply["error"]["code"] == "UNKNOWN_ERROR"
    assert reply["error"]["message"].startswith("Error proxying request")
    assert "status" not in reply and counters.success == 0


def test_b48_busy_destination_becomes_rpc_level_too_busy() -> None:
    """Spec 3.5 (B48/B50 via proxy). A downstream ServiceUnavailable becomes an RPC-level
    "too busy" failure."""
    c = StubConsensus(rpc=StubRpc(answer=RemoteRpcError("SERVICE_UNAVAILABLE", "soft memory limit")))
    with pytest.raises(RemoteRpcError) as e:
        handle(c, proxied_body(stubs(3)))
    assert e.value.code == "SERVICE_UNAVAILABLE" and "too busy" in e.value.message


def test_b48_other_downstream_rpc_failures_become_server_errors() -> None:
    """Spec 3.5. Any other downstream RPC failure becomes a server-level UNKNOWN_ERROR reply."""
    c = StubConsensus(rpc=StubRpc(answer=RemoteRpcError("INCOMPLETE", "hops exhausted")))
    assert handle(c, proxied_body(stubs(3)))["error"]["code"] == "UNKNOWN_ERROR"


# ----- B49 -----

def service(c: StubConsensus) -> ConsensusService:
    return ConsensusService(c, None)  # type: ignore[arg-type]


def test_b49_proxy_dest_naming_another_node_gets_wrong_server_uuid() -> None:
    """B49. A request addressed to the wrong node (proxy uuid) gets WRONG_SERVER_UUID."""
    c = StubConsensus()
    reply = run(service(c).handle("UpdateConsensus", proxied_body(stubs(3), proxy_dest_uuid="D")))
    assert reply["error"]["code"] == "WRONG_SERVER_UUID" and reply["responder_uuid"] == "B"
    assert c.rpc.calls == []


def test_b49_dest_naming_another_node_gets_wrong_server_uuid() -> None:
    """B49. A request addressed to the wrong node (dest uuid) gets WRONG_SERVER_UUID."""
    c = StubConsensus()
    body = proxied_body(stubs(3))
    del body["proxy_dest_uuid"]
    reply = run(service(c).handle("UpdateConsensus", body))
    assert reply["error"]["code"] == "WRONG_SERVER_UUID"


def test_b49_proxy_path_taken_when_proxy_dest_names_us() -> None:
    """B49 / spec 3.5. A non-empty proxy_dest_uuid naming the receiver routes to the proxy path."""
    c = StubConsensus()
    run(service(c).handle("UpdateConsensus", proxied_body(stubs(3))))
    assert c.rpc.calls[0][0] == "C"


def test_b49_destination_wrong_uuid_is_relayed_to_the_leader() -> None:
    """B49. The destination's WRONG_SERVER_UUID reply is relayed unchanged by the proxy."""
    wrong = server_error_reply("WRONG_SERVER_UUID", "not me", uuid="C")
    c = StubConsensus(rpc=StubRpc(answer=lambda hop, body: wrong))
    assert handle(c, proxied_body(stubs(3))) == wrong
