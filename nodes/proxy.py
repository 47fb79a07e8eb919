"""Proxy node side of a proxied UpdateConsensus (kuduraft HandleProxyRequest): rebuild ops, forward, relay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nodes.consensus import RaftConsensus
from nodes.log import OpId
from nodes.rpc import RemoteRpcError, RpcError
from nodes.update import server_error

COPIED_FIELDS = ("tablet_id", "dest_uuid", "caller_uuid", "caller_term", "preceding_id",
                 "committed_index", "all_replicated_index", "region_durable_index",
                 "last_idx_appended_to_leader", "safe_timestamp")


@dataclass
class ProxyCounters:
    received: int = 0
    success: int = 0
    log_read_timeout: int = 0
    hops_exhausted: int = 0
    unknown_dest: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


async def _wait_for_index(c: RaftConsensus, index: int, timeout_s: float) -> bool:
    """Wait (bounded) until our own log holds ``index``; woken by appends, not by polling."""
    if c.log.last_index >= index:
        return True
    appended = asyncio.Event()
    unregister = c.log.on_append(lambda: appended.set() if c.log.last_index >= index else None)
    try:
        await asyncio.wait_for(appended.wait(), timeout=timeout_s)
        return True
    except TimeoutError:
        return c.log.last_index >= index
    finally:
        unregister()


async def handle_proxy_request(c: RaftConsensus, counters: ProxyCounters,
                               body: dict[str, Any]) -> dict[str, Any]:
    """Forward one proxied request toward its destination and relay the destination's answer."""
    counters.received += 1
    dest = body.get("dest_uuid")
    hops = body.get("proxy_hops_remaining")
    if not isinstance(dest, str):
        raise RemoteRpcError("INVALID_ARGUMENT", "proxied request lacks dest_uuid")
    if dest == c.uuid:
        raise RemoteRpcError("INVALID_ARGUMENT", "Invalid argument: proxy is the destination")
    if not isinstance(hops, int) or hops < 1:
        counters.hops_exhausted += 1
        raise RemoteRpcError("INCOMPLETE", "Incomplete: proxy hops exhausted")
    down: dict[str, Any] = {k: body[k] for k in COPIED_FIELDS if k in body}
    down["proxy_caller_uuid"] = c.uuid
    down["proxy_hops_remaining"] = hops - 1
    if c.flags["raft_enable_multi_hop_proxy_routing"]:
        try:
            next_hop = c.routing_table().next_hop(c.uuid, dest)
        except LookupError as e:
            counters.unknown_dest += 1
            return server_error("UNKNOWN_ERROR", f"Not found: cannot route to {dest}: {e}", c)
    else:
        next_hop = dest
    if next_hop not in c.config.nodes:
        counters.unknown_dest += 1
        return server_error("UNKNOWN_ERROR", f"Not found: {next_hop} is not in the config", c)
    stubs = body.get("ops", [])
    if not isinstance(stubs, list):
        return server_error("UNKNOWN_ERROR", "Invalid argument: ops must be a list", c)
    degraded = False
    if next_hop != dest:
        down["ops"] = stubs
        down["proxy_dest_uuid"] = next_hop
    else:
        ops, err = await _rebuild_ops(c, stubs)
        if err is not None:
            return server_error("UNKNOWN_ERROR", err, c)
        if stubs and not ops:
            counters.log_read_timeout += 1
            degraded = True
        down["ops"] = ops
    try:
        resp = await c.rpc.call(next_hop, "UpdateConsensus", down, c.flags.rpc_timeout_s)
    except RemoteRpcError as e:
        if e.code == "SERVICE_UNAVAILABLE":
            raise RemoteRpcError("SERVICE_UNAVAILABLE", f"too busy: {e.message}") from None
        return server_error("UNKNOWN_ERROR", f"Error proxying request to {next_hop}: {e}", c)
    except RpcError as e:
        return server_error("UNKNOWN_ERROR", f"Error proxying request to {next_hop}: {e}", c)
    if not degraded:
        counters.success += 1
    return resp


async def _rebuild_ops(c: RaftConsensus, stubs: list[Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Replace PROXY_OP stubs with the real ops from our own log (a subset is tolerated)."""
    if not stubs:
        return [], None
    ids: list[OpId] = []
    for i, s in enumerate(stubs):
        if not isinstance(s, dict) or s.get("kind") != "PROXY_OP":
            return [], f"Invalid argument: op #{i} is not a PROXY_OP stub"
        try:
            ids.append(OpId.of([s.get("term"), s.get("index")]))
        except ValueError as e:
            return [], f"Invalid argument: op #{i}: {e}"
        if i and ids[i].index != ids[i - 1].index + 1:
            return [], "Invalid argument: proxied ops are not consecutive"
    wait_s = float(c.flags["raft_log_cache_proxy_wait_time_ms"]) / 1000.0
    if not await _wait_for_index(c, ids[0].index, wait_s):
        return [], None
    budget = int(c.flags["consensus_max_batch_size_bytes"])
    try:
        entries = c.log.read(ids[0].index, budget)
    except LookupError:
        return [], None
    out: list[dict[str, Any]] = []
    for stub, entry in zip(ids, entries, strict=False):
        if stub != OpId(entry.term, entry.index):
            return [], (f"Illegal state: proxied op {stub.term}.{stub.index} does not match ours "
                        f"{entry.term}.{entry.index}")
        out.append(entry.to_json())
    return out, None
