"""Runs ``python -m nodes`` with a per-write step trace, for benchmarks/node_write_timeline.py.

Wraps the write path's steps (HTTP bytes in, append, WAL thread start/end, local vote, request
queued / written, frames read, follower Update start/end, reply written, Peer reply, commit,
HTTP answer written) and stamps each with ``time.monotonic_ns()``: CLOCK_MONOTONIC is one
clock for every process on the machine, so the three nodes' stamps line up. On SIGUSR1 the node
appends its stamps so far (JSON lines ``[t_ns, step, attrs]``) to ``$RAFTCHAOS_TRACE`` and
starts over. Not for production: every wrapper costs a little.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

STAMPS: list[tuple[int, str, dict[str, Any]]] = []
now_ns = time.monotonic_ns


def _stamp(step: str, **attrs: Any) -> None:
    STAMPS.append((now_ns(), step, attrs))


def _wrap(owner: Any, name: str, before: Callable[..., None] | None = None,
          after: Callable[..., None] | None = None) -> None:
    orig = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args, **kwargs)
        out = orig(*args, **kwargs)
        if after is not None:
            after(out, *args, **kwargs)
        return out

    setattr(owner, name, wrapped)


def _install() -> None:
    import nodes.consensus as consensus
    import nodes.http as http
    import nodes.peer as peer
    import nodes.rpc_client as rpc_client
    import nodes.rpc_server as rpc_server
    import nodes.service as service
    import nodes.update as update
    import nodes.wal as wal
    import nodes.wire as wire

    _wrap(http._Connection, "data_received", lambda self, data: _stamp("http_rx"))
    _wrap(http._Connection, "_write", lambda self, data: _stamp("http_tx"))

    def before_replicate(self: Any, op: Any, waiter: Any) -> None:
        _stamp("replicate_in", peers={u: [p.request_pending, p.last_request_kind]
                                      for u, p in self.peers.items()})

    _wrap(consensus.RaftConsensus, "_replicate", before_replicate,
          lambda out, self, *a: _stamp("appended", index=self.log.last_index))
    _wrap(consensus.RaftConsensus, "_local_durable",
          lambda self, entry, term, fut: _stamp("local_durable", index=entry.index))
    _wrap(consensus.RaftConsensus, "advance_commit",
          lambda self, index: _stamp("commit", index=min(index, self.log.last_index),
                                     before=self.commit_index))

    def wal_before(self: Any, entries: Any, before_sync: Any = None) -> None:
        _stamp("wal_start", first=entries[0].index if entries else None,
               last=entries[-1].index if entries else None)

    _wrap(wal.Wal, "append", wal_before, lambda out, self, *a, **k: _stamp("wal_end"))

    def send_update(self: Any, hop: str, body: dict[str, Any], timeout_s: float, done: Any) -> None:
        ops = body.get("ops") or []
        _stamp("send_queued", peer=hop, first=ops[0]["index"] if ops else None,
               last=ops[-1]["index"] if ops else None, committed=body.get("committed_index"))

    _wrap(service.PoolPeerTransport, "send_update", send_update)
    if hasattr(rpc_client._ClientConn, "write_now"):
        _wrap(rpc_client._ClientConn, "write_now", lambda self, frame: _stamp("send_flush", peer=self.uuid))
    else:  # the code before issue #14's third round wrote frames at the end of the loop turn
        _wrap(rpc_client._ClientConn, "_flush", lambda self: _stamp("send_flush", peer=self.uuid))

    def process_response(self: Any, outcome: Any) -> None:
        status = (outcome.body or {}).get("status") or {}
        _stamp("reply_in", peer=self.uuid, last=(status.get("last_received") or [0, 0])[1])

    _wrap(peer.Peer, "_process_response", process_response)
    _wrap(peer.Peer, "_send_next_request",
          lambda self, even, trigger: _stamp("send_next", peer=self.uuid, trigger=trigger.value,
                                             pending=self.request_pending))

    class ClientDecoder(wire.FrameDecoder):
        def feed(self, data: bytes) -> list[dict[str, Any]]:
            _stamp("client_rx", n=len(data))
            return super().feed(data)

    class ServerDecoder(wire.FrameDecoder):
        def feed(self, data: bytes) -> list[dict[str, Any]]:
            _stamp("server_rx", n=len(data))
            frames = super().feed(data)
            _stamp("server_decoded", n=len(frames))
            return frames

    rpc_client.FrameDecoder = ClientDecoder  # type: ignore[misc]
    rpc_server.FrameDecoder = ServerDecoder  # type: ignore[misc]

    orig_handle = service.handle_update

    async def handle_update(c: Any, body: dict[str, Any]) -> dict[str, Any]:
        ops = body.get("ops") or []
        _stamp("update_start", first=ops[0]["index"] if ops else None,
               last=ops[-1]["index"] if ops else None, committed=body.get("committed_index"))
        out = await orig_handle(c, body)
        _stamp("update_end")
        return out

    service.handle_update = handle_update
    orig_wait = update._wait_durable

    async def wait_durable(c: Any, fut: Any) -> None:
        await orig_wait(c, fut)
        _stamp("follower_durable")

    update._wait_durable = wait_durable
    _wrap(rpc_server._ServerConn, "send", lambda self, data: _stamp("reply_tx"))


def _dump(path: str) -> None:
    stamps = STAMPS[:]
    del STAMPS[:len(stamps)]
    with open(path, "a") as f:
        for s in stamps:
            f.write(json.dumps(s) + "\n")
        f.write(json.dumps([now_ns(), "dump", {}]) + "\n")


def main() -> int:
    path = os.environ["RAFTCHAOS_TRACE"]
    _install()
    signal.signal(signal.SIGUSR1, lambda *_: _dump(path))
    from nodes.__main__ import main as node_main
    return node_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
