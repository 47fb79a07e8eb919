"""Where the injected WAL sync latency sits: after the batch is written, before its fsync.

kuduraft (log.cc) sleeps for ``log_inject_latency`` inside ``Log::Sync``, which
``Log::AppendThread::HandleGroup`` calls after writing the group. During the sleep the records
are in the page cache, not on disk: a SIGKILL then keeps them and only a power cut loses them,
which is what the power-loss suites rely on to tell the two apart.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.storage import WalWriter
from nodes.wal import LogEntry, Wal, segment_name

LOG = logging.getLogger("raftchaos.test.wal_sync_latency")


def _segment_bytes(directory: Path) -> int:
    path = directory / segment_name(1)
    return path.stat().st_size if path.exists() else 0


def test_before_sync_runs_after_the_write_and_before_the_fsync(tmp_path: Path) -> None:
    wal = Wal(tmp_path)
    wal.recover()
    wal.append([LogEntry(1, 1, "NO_OP", None)])
    size, fsyncs = _segment_bytes(tmp_path), wal.stats.fsyncs
    seen: dict[str, int] = {}

    def look() -> None:
        seen.update(size=_segment_bytes(tmp_path), fsyncs=wal.stats.fsyncs)

    wal.append([LogEntry(1, 2, "WRITE", {"key": "k", "value": "v"})], before_sync=look)
    assert seen["size"] > size, "the batch was not written before the injected latency"
    assert seen["fsyncs"] == fsyncs, "the batch was already fsynced before the injected latency"
    assert wal.stats.fsyncs == fsyncs + 1
    wal.close()


def test_injected_sync_latency_sleeps_with_the_batch_written_but_not_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's ``log_inject_latency`` sleep happens with the records already in the file."""
    flags = Flags({"log_inject_latency": True, "log_inject_latency_ms_mean": 30,
                   "log_inject_latency_ms_stddev": 0})
    faults = FaultPoints(flags, random.Random(5), LOG, data_dir=tmp_path, uuid="n1")
    wal = Wal(tmp_path / "wal")
    wal.recover()
    sleeps: list[dict[str, Any]] = []
    import nodes.storage as storage

    real_sleep = storage.time.sleep

    def recording_sleep(seconds: float) -> None:
        sleeps.append({"s": seconds, "size": _segment_bytes(tmp_path / "wal"), "fsyncs": wal.stats.fsyncs})
        real_sleep(seconds)

    monkeypatch.setattr(storage.time, "sleep", recording_sleep)

    async def go() -> None:
        writer = WalWriter(wal, flags, faults, random.Random(5), LOG)
        writer.start()
        try:
            await asyncio.wait_for(writer.append([LogEntry(1, 1, "NO_OP", None)]), 5)
        finally:
            await writer.stop()

    asyncio.run(go())
    assert [round(s["s"], 3) for s in sleeps] == [0.03]
    assert sleeps[0]["size"] == _segment_bytes(tmp_path / "wal"), "slept before writing the batch"
    assert sleeps[0]["fsyncs"] == wal.stats.fsyncs - 1, "slept after the fsync"
    wal.close()
