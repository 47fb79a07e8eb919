"""Wires one node together (storage, consensus, RPC and HTTP servers) and runs it until stopped."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import signal
import sys
from pathlib import Path
from typing import Any

from nodes.api import NodeApi
from nodes.clock import LoopClock
from nodes.config import ClusterConfig
from nodes.consensus import RaftConsensus
from nodes.election import Elections
from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.http import HttpServer
from nodes.log import RaftLog
from nodes.meta import MetadataStore
from nodes.rpc import RpcClientPool, RpcServer
from nodes.service import ConsensusService, PoolPeerTransport
from nodes.storage import WalWriter
from nodes.wal import Wal

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_STORAGE = 3


GC_THRESHOLDS = (20_000, 50, 100)
"""Every message allocates a few dicts; the default (700, 10, 10) ran a collection every few
writes. Nothing the node keeps forms reference cycles that must be freed promptly."""

GIL_SWITCH_INTERVAL_S = 0.0005
"""The WAL writer thread must hand each fsync result back to the loop; with the default 5 ms it
could wait that long for the GIL while the loop is busy (issue #14, 16 clients)."""


def tune_runtime() -> None:
    """Process-wide interpreter settings for the node's hot path (measured in issue #14).

    ``gc.freeze`` moves everything loaded at start-up out of the collector's sight, so the
    occasional full collection no longer walks the modules and the recovered log.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class NodeServer:
    """Owns the node's long-lived tasks; ``run`` returns the process exit code."""

    def __init__(self, config: ClusterConfig, uuid: str, data_dir: Path, flags: Flags,
                 seed: int, logger: logging.Logger) -> None:
        self.config = config
        self.uuid = uuid
        self.data_dir = data_dir
        self.flags = flags
        self.seed = seed
        self.logger = logger
        self.consensus: RaftConsensus | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, stored: tuple[Wal, list[Any], MetadataStore]) -> int:
        wal, entries, meta = stored
        tune_runtime()
        loop = asyncio.get_running_loop()
        rng = random.Random(self.seed)
        clock = LoopClock(loop)
        faults = FaultPoints(self.flags, rng, self.logger)
        writer = WalWriter(wal, self.flags, faults, rng, self.logger)
        writer.start()
        me = self.config.nodes[self.uuid]
        pool = RpcClientPool({u: str(self.config.dial_address(self.uuid, u))
                              for u in self.config.nodes if u != self.uuid})
        tasks: set[asyncio.Task[Any]] = set()
        c = RaftConsensus(self.uuid, self.config, self.flags, clock, rng, meta, writer,
                          RaftLog(entries), PoolPeerTransport(pool, tasks), pool, faults, self.logger)
        self.consensus = c
        elections = Elections(c)
        service = ConsensusService(c, elections)
        rpc_server = RpcServer(me.rpc.host, me.rpc.port, service.handle, self.logger,
                               eager=service.runs_eagerly)
        http_server = HttpServer(me.http.host, me.http.port, NodeApi(c, service).dispatch, self.logger)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await rpc_server.start()
            await http_server.start()
            self.logger.info("node %s serving rpc %s http %s; term %d, log %s", self.uuid, me.rpc,
                             me.http, c.term, tuple(c.log.last_opid))
            if c.voters == [self.uuid]:
                elections.start(pre=False)
            else:
                c.start_failure_detector()
            await self._stop.wait()
            self.logger.info("stopping")
        finally:
            c.fd.stop()
            for peer in list(c.peers.values()):
                peer.close()
            await elections.close()
            for t in list(tasks):
                t.cancel()
            await http_server.close()
            await rpc_server.close()
            await pool.close()
            await c.meta_writer.close()
            await writer.stop()
            wal.close()
        return EXIT_OK
