"""A real RaftConsensus for node "n1" of a 3-node cluster on a fake clock, fake RPCs and a real WAL.

Tests drive it deterministically: timers fire only when the test advances the FakeClock, every
RequestVote the node sends waits until the test answers it, every UpdateConsensus its Peers send
is recorded until the test replies. Durability is real (a WAL and metadata file in tmp_path,
WAL fsync off); tests await the write futures instead of sleeping.

Usage::

    def test_something(tmp_path: Path) -> None:
        async def body(n: Node) -> None:
            resp = await n.update(term=1, ops=[op(1, 1)])
            ...
        run_node(tmp_path, body)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from consensus_fakes import (
    FakeClock,
    FakePeerTransport,
    FakeRpc,
    GatedWalWriter,
    InjectedExit,
    ModelFollower,
    RpcCall,
    SentUpdate,
    assert_log_contiguous,
    entries_of,
    follower_reply,
    op,
    ops,
    status_error,
    update_body,
    vote_body,
)

from nodes.config import ClusterConfig, parse_cluster
from nodes.consensus import RaftConsensus, Role
from nodes.election import Elections
from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.log import OpId, RaftLog
from nodes.meta import MetadataStore
from nodes.service import ConsensusService
from nodes.wal import Wal

__all__ = [
    "CLUSTER3", "CLUSTER_DOC", "LOGGER", "SINGLE", "FakeClock", "FakePeerTransport", "FakeRpc",
    "GatedWalWriter",
    "InjectedExit", "ModelFollower", "Node", "RpcCall", "SentUpdate", "assert_log_contiguous", "entries_of",
    "follower_reply", "op", "open_node", "ops", "pump", "run_cli", "run_node", "seeded", "status_error",
    "update_body", "vote_body", "write_cluster",
]

SEED_ENV = "RAFTCHAOS_TEST_SEED"
LOGGER = logging.getLogger("raftchaos.test.consensus")

CLUSTER_DOC: dict[str, Any] = {
    "nodes": {
        u: {"rpc": f"127.0.0.1:{7100 + i}", "http": f"127.0.0.1:{7200 + i}"}
        for i, u in enumerate(("n1", "n2", "n3"), start=1)
    }
}
CLUSTER3: ClusterConfig = parse_cluster(CLUSTER_DOC)
SINGLE: ClusterConfig = parse_cluster({"nodes": {"n1": CLUSTER_DOC["nodes"]["n1"]}})


def seeded(default: int) -> int:
    """The seed for a test's Random: ``$RAFTCHAOS_TEST_SEED`` if set, else ``default``; printed."""
    raw = os.environ.get(SEED_ENV)
    seed = int(raw) if raw else default
    print(f"seed={seed} (override with {SEED_ENV})")
    return seed


# ----- the node under test -----
@dataclass
class Node:
    uuid: str
    data_dir: Path
    seed: int
    c: RaftConsensus
    elections: Elections
    service: ConsensusService
    clock: FakeClock
    rpc: FakeRpc
    transport: FakePeerTransport
    writer: GatedWalWriter
    wal: Wal
    meta: MetadataStore
    flags: Flags
    exits: list[int] = field(default_factory=list)

    async def update(self, **fields: Any) -> dict[str, Any]:
        """Send an UpdateConsensus built by ``update_body`` through the service."""
        return await self.service.handle("UpdateConsensus", update_body(**fields))

    async def vote(self, **fields: Any) -> dict[str, Any]:
        return await self.service.handle("RequestVote", vote_body(**fields))

    async def settle(self, rounds: int = 10) -> None:
        """Let ready tasks (vote askers, done callbacks) run; no time passes on the fake clock.

        Term/vote flushes run on a thread (real time): until none is pending, wait for them and
        let the tasks they release run too."""
        for _ in range(rounds):
            await asyncio.sleep(0)
        while self.c.meta_writer.durable < self.c.meta_writer.requested:
            await self.c.meta_durable()
            for _ in range(rounds):
                await asyncio.sleep(0)

    async def drain(self) -> None:
        """Wait until every WAL write queued so far is on disk (a no-op truncation as a barrier),
        and every term/vote flush (which may let a single voter win and append its NO_OP)."""
        await self.settle(2)
        await self.writer.truncate_after(2**62)
        await self.settle(2)

    def start(self) -> None:
        """What NodeServer.run does once serving: a single voter elects itself, others arm the FD."""
        if self.c.voters == [self.uuid]:
            self.elections.start(pre=False)
        else:
            self.c.start_failure_detector()

    def fd_delay(self) -> float:
        """Seconds until the failure detector fires."""
        assert self.c.fd.due_at is not None, "failure detector not running"
        return self.c.fd.due_at - self.clock.now()

    def vote_requests(self) -> list[RpcCall]:
        return self.rpc.pending("RequestVote")

    async def win_election(self, pre: bool = False, first_requests: bool = True) -> None:
        """Run an election and grant every vote; n1 ends LEADER with a NO_OP appended.

        A new leader does not signal its peers (kuduraft's BecomeLeaderUnlocked): each first
        request leaves on the peer's heartbeater. With ``first_requests`` the clock advances to
        the last of those first beats, so every peer has its first request pending on return."""
        self.elections.start(pre=pre)
        await self.settle()
        for call in self.vote_requests():
            call.reply({"responder_uuid": call.uuid, "responder_term": call.body["candidate_term"],
                        "vote_granted": True})
        await self.settle()
        if pre:  # a won pre-election starts the real one
            for call in self.vote_requests():
                call.reply({"responder_uuid": call.uuid, "responder_term": call.body["candidate_term"],
                            "vote_granted": True})
            await self.settle()
        assert self.c.role is Role.LEADER, f"election not won: {self.c.status()}"
        if first_requests:
            await self.first_beats()

    async def first_beats(self) -> None:
        """Advance the clock to the last peer heartbeater's due time (each peer's first request)."""
        due = [p.heartbeater.due_at for p in self.c.peers.values() if p.heartbeater.due_at is not None]
        if due:
            self.clock.advance_to(max(due))
            await self.settle()

    def last_opid(self) -> OpId:
        return self.c.log.last_opid


def _exit_recorder(exits: list[int]) -> Callable[[int], NoReturn]:
    def exit_fn(code: int) -> NoReturn:
        exits.append(code)
        raise InjectedExit(code)
    return exit_fn


@asynccontextmanager
async def open_node(data_dir: Path, *, uuid: str = "n1", config: ClusterConfig = CLUSTER3,
                    flags: dict[str, Any] | None = None, seed: int | None = None, start: bool = True,
                    drain_on_close: bool = True) -> AsyncIterator[Node]:
    """Build the node from ``data_dir`` (recovering whatever a previous run left there)."""
    seed = seeded(1) if seed is None else seed
    flags_obj = Flags(flags or {})
    rng = random.Random(seed)
    clock = FakeClock()
    exits: list[int] = []
    faults = FaultPoints(flags_obj, rng, LOGGER, exit_fn=_exit_recorder(exits))
    wal = Wal(data_dir / "wal", fsync=False)
    entries = wal.recover()
    meta = MetadataStore(data_dir)
    writer = GatedWalWriter(wal, flags_obj, faults, rng, LOGGER)
    writer.start()
    rpc = FakeRpc()
    transport = FakePeerTransport(u for u in config.nodes if u != uuid)
    c = RaftConsensus(uuid, config, flags_obj, clock, rng, meta, writer, RaftLog(entries), transport,
                      rpc, faults, LOGGER)
    elections = Elections(c)
    service = ConsensusService(c, elections)
    node = Node(uuid, data_dir, seed, c, elections, service, clock, rpc, transport, writer, wal, meta,
                flags_obj, exits)
    if start:
        node.start()
    try:
        yield node
        if drain_on_close:
            writer.release()
            await node.drain()
    finally:
        c.fd.stop()
        for peer in list(c.peers.values()):
            peer.close()
        await elections.close()
        await c.meta_writer.close()
        await writer.stop()
        wal.close()


GUARD_TIMEOUT_S = 20.0
"""Real-time guard so a test that waits on something that never happens fails instead of hanging."""


def run_node(data_dir: Path, body: Callable[[Node], Awaitable[None]], **kwargs: Any) -> None:
    """``asyncio.run`` one test body against a fresh node built in ``data_dir``."""

    async def main() -> None:
        async with open_node(data_dir, **kwargs) as node:
            await asyncio.wait_for(body(node), GUARD_TIMEOUT_S)

    asyncio.run(main())


# ----- the node as a process (command-line behaviour only: these runs exit before serving) -----
REPO = Path(__file__).resolve().parents[2]


def write_cluster(path: Path, doc: dict[str, Any] | None = None) -> Path:
    """A cluster file; the default one listens on port 0 so a run that does start binds nothing fixed."""
    if doc is None:
        doc = {"nodes": {u: {"rpc": "127.0.0.1:0", "http": "127.0.0.1:0"} for u in ("n1", "n2", "n3")}}
    path.write_text(json.dumps(doc))
    return path


def run_cli(args: Sequence[str], timeout_s: float = 15.0) -> subprocess.CompletedProcess[str]:
    """``python -m nodes ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "nodes", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


async def pump(n: Node, followers: dict[str, ModelFollower], max_rounds: int = 50) -> int:
    """Answer the leader's requests to ``followers`` until none is pending; returns rounds used."""
    for rounds in range(max_rounds):
        await n.drain()
        n.clock.run_due()
        await n.settle()
        pending = [s for s in n.transport.pending() if s.hop in followers]
        if not pending:
            return rounds
        for s in pending:
            s.reply(followers[s.hop].answer(s.body))
    raise AssertionError("replication did not settle")


async def expire_fd(n: Node) -> None:
    """Move the node's clock to its failure detector's deadline and let what that starts run."""
    n.clock.advance_to(n.c.fd.due_at or 0.0)
    await n.settle()


async def rearm_in_term(n: Node, term: int) -> int:
    """Put the node in ``term`` with its failure detector restarted from now, once the term is on
    disk (flushes run off the loop); returns the metadata flush count at that point."""
    n.c.fd.stop()
    n.c.term = term
    n.c.persist()
    await n.c.meta_durable()
    flushes = n.meta.flush_count
    n.c.start_failure_detector()
    return flushes
