"""Storage: a record that fails its checksum in the middle of the last WAL segment is corruption,
not a torn tail.

A torn tail (a crash during the last write) can only be at the very end of the last segment, with
nothing but zeros after it; kuduraft's ``ReadableLogSegment`` repairs that and refuses anything
else (``Corruption``), because cutting the log at a damaged record in the middle would silently
drop every good record after it, entries this node acknowledged. The node refuses to start
(exit 3) instead.

The choreography stays outside the cluster's own history (a deliberately corrupted node would be
judged by the crashes checker as a real storage refusal): a follower is stopped, a copy of its
data directory gets one byte flipped inside a record in the middle of its last segment, and the
node program is started on the copy alone (its own ports, nobody dials it), as an operator would
after a disk error. The follower itself restarts on its intact data afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from faults.process import stopped
from harness.cluster import Cluster
from harness.ports import HOST, free_ports
from suites._helpers import Markers
from suites._safety import valid

pytestmark = [pytest.mark.chaos, pytest.mark.safety,
              pytest.mark.kuduraft_only(reason="kuduraft's WAL segment format and its refusal to start on corruption (exit 3)")]

REFUSED_STORAGE_EXIT = 3
_HEADER = struct.Struct(">III")  # payload length, crc32(payload), crc32(first 8 bytes): docs/node-api.md


def _records(segment: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of each record of a segment."""
    out, pos = [], 0
    while pos + _HEADER.size <= len(segment):
        length = _HEADER.unpack_from(segment, pos)[0]
        out.append((pos, length))
        pos += _HEADER.size + length
    return out


def _corrupt_middle_record(wal_dir: Path) -> tuple[Path, int, int]:
    """Flip one payload byte of a record in the middle of the last segment; returns (segment,
    record offset, records after it)."""
    segment = sorted(wal_dir.glob("wal-*.log"))[-1]
    data = bytearray(segment.read_bytes())
    records = _records(bytes(data))
    assert len(records) >= 3, f"{segment} holds only {len(records)} records"
    offset, length = records[len(records) // 2]
    data[offset + _HEADER.size + length // 2] ^= 0x5A
    segment.write_bytes(bytes(data))
    return segment, offset, len(records) - len(records) // 2 - 1


def _private_config(cluster: Cluster, node: str, path: Path) -> None:
    """The cluster file with ``node`` on fresh loopback ports, so the copy never meets the cluster."""
    config = json.loads(cluster.run.cluster_file.read_text())
    rpc, http = free_ports(2)
    config["nodes"][node] = {**config["nodes"][node], "rpc": f"{HOST}:{rpc}", "http": f"{HOST}:{http}"}
    config.get("dial", {}).pop(node, None)
    path.write_text(json.dumps(config))


def test_mid_segment_checksum_mismatch_is_refused(make_cluster: Any, record_verdict: Any,
                                                  tmp_path: Path) -> None:
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    leader = cluster.wait_for_leader()
    victim = cluster.rng("suite/storage").choice(sorted(n for n in cluster.nodes if n != leader))
    markers = Markers(cluster, "storage")
    markers.write(6)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    with stopped(cluster, victim):
        copy = tmp_path / "data"
        shutil.copytree(cluster.run.node_data(victim), copy)
        segment, offset, after = _corrupt_middle_record(copy / "wal")
        config = tmp_path / "cluster.json"
        _private_config(cluster, victim, config)
        http = json.loads(config.read_text())["nodes"][victim]["http"]
        proc = subprocess.Popen([sys.executable, "-m", "nodes", "--config", str(config), "--id", victim,
                                 "--data", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "RAFTCHAOS_RUN": cluster.run_id})
        try:
            served: dict[str, Any] = {}

            def settled() -> bool:
                if proc.poll() is not None:
                    return True
                try:
                    served.update(requests.get(f"http://{http}/status", timeout=1.0).json())
                    return True
                except requests.RequestException:
                    return False

            cluster.wait_until(settled, what="the node on the corrupted copy to exit or serve",
                               timeout_s=timing.new_leader_within_s())
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=10)
        line = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        print(f"corrupted {segment.name} at record offset {offset} ({after} good records after it); "
              f"exit {proc.returncode}: {line[0]}; served: {bool(served)}")
        assert not served, (
            f"{victim} started on a WAL with a bad record in the middle of its last segment "
            f"(last_index {served.get('last_index')}): it cut the log there as a torn tail, "
            f"dropping {after} good records")
        assert proc.returncode == REFUSED_STORAGE_EXIT, (
            f"expected exit {REFUSED_STORAGE_EXIT} (refused corrupt storage), got {proc.returncode}: {line[0]}")
        assert str(segment.name) in line[0], f"the refusal does not name the segment: {line[0]}"
    valid(record_verdict, "wal-mid-corruption", f"refused with exit 3 naming {segment.name}")
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()
