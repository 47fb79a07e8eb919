"""What the sync ledger (``python -m nodes --sync-ledger``, the power-loss fault's record) costs
the WAL: appends of one small entry, each fsynced, with and without the ledger, side by side.

Printed, never asserted (fsync time is the disk's and the machine's load's). Run:
``nice -n 19 .venv/bin/python benchmarks/sync_ledger.py [--appends 2000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nodes.durable import SyncLedger, install_ledger
from nodes.wal import LogEntry, Wal


def _run(appends: int, ledger: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        data = Path(tmp)
        book = SyncLedger(data) if ledger else None
        install_ledger(book)
        try:
            wal = Wal(data / "wal")
            wal.recover()
            start = time.perf_counter()
            for i in range(1, appends + 1):
                wal.append([LogEntry(1, i, "WRITE", {"key": f"k{i}", "value": "v" * 32})])
            elapsed = time.perf_counter() - start
            wal.close()
        finally:
            install_ledger(None)
            if book is not None:
                book.close()
    return elapsed / appends * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--appends", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.appends < 1 or args.rounds < 1:
        p.error("--appends and --rounds must be >= 1")
    results: dict[str, list[float]] = {"without ledger": [], "with ledger": []}
    for _ in range(args.rounds):  # interleaved, so load drifts hit both alike
        results["without ledger"].append(_run(args.appends, False))
        results["with ledger"].append(_run(args.appends, True))
    for name, values in results.items():
        print(f"{name:15s} median {statistics.median(values):8.1f} us/append (fsynced), "
              f"rounds {', '.join(f'{v:.1f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
