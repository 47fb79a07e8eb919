"""Command line: ``python -m nodes --config CLUSTER.json --id n1 --data DIR [--flag k=v ...]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from nodes.config import ConfigError, load_cluster
from nodes.durable import SyncLedger, install_ledger
from nodes.flags import FlagError, Flags, parse_flag_args
from nodes.meta import MetadataError, MetadataStore
from nodes.server import EXIT_CONFIG, EXIT_STORAGE, NodeServer
from nodes.wal import Wal, WalCorruption


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"nodes: {message}\n")
        sys.exit(EXIT_CONFIG)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m nodes", description="a kuduraft-style Raft node")
    p.add_argument("--config", required=True, type=Path, help="cluster file (JSON)")
    p.add_argument("--id", required=True, help="this node's uuid")
    p.add_argument("--data", required=True, type=Path, help="data directory")
    p.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--seed", type=int, default=None, help="seed for timers and fault draws")
    p.add_argument("--sync-ledger", action="store_true",
                   help="test facility: record each fsync in DATA/.sync-ledger (power-loss simulation)")
    args = p.parse_args(argv)
    try:
        config = load_cluster(args.config)
        if args.id not in config.nodes:
            raise ConfigError(f"--id {args.id!r} is not in the cluster file (members: "
                              f"{', '.join(sorted(config.nodes))})")
        flags = Flags(parse_flag_args(args.flag))
    except (ConfigError, FlagError) as e:
        sys.stderr.write(f"nodes: {e}\n")
        return EXIT_CONFIG
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s {args.id} %(levelname)s %(message)s")
    logger = logging.getLogger(f"raftchaos.node.{args.id}")
    logger.info("starting node %s (seed %d)", args.id, seed)
    try:
        args.data.mkdir(parents=True, exist_ok=True)
        if args.sync_ledger:
            install_ledger(SyncLedger(args.data))
        wal = Wal(args.data / "wal")
        entries = wal.recover()
        meta = MetadataStore(args.data)
        meta.load()
    except (WalCorruption, MetadataError, OSError) as e:
        sys.stderr.write(f"nodes: storage refused to start: {e}\n")
        return EXIT_STORAGE
    server = NodeServer(config, args.id, args.data, flags, seed, logger)
    try:
        return asyncio.run(server.run((wal, entries, meta)))
    except OSError as e:
        sys.stderr.write(f"nodes: cannot serve: {e}\n")
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
