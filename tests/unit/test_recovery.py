"""Restart from a data directory: log, term and vote come back; a torn WAL tail is repaired; a corrupt
record refuses to start (nodes/wal.py, nodes/meta.py as used by consensus and ``python -m nodes``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from consensus_fixture import (
    InjectedExit,
    ModelFollower,
    Node,
    entries_of,
    op,
    open_node,
    ops,
    pump,
    run_cli,
    status_error,
    write_cluster,
)

from nodes.consensus import Role
from nodes.log import OpId
from nodes.wal import WalCorruption, encode_record, segment_name


def restart(data_dir: Path, first, then, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Run ``first`` on a node, close it cleanly, rebuild from the same directory and run ``then``."""
    async def main() -> None:
        async with open_node(data_dir, **kwargs) as n:
            await asyncio.wait_for(first(n), 20)
        async with open_node(data_dir, **kwargs) as n:
            await asyncio.wait_for(then(n), 20)
    asyncio.run(main())


def test_restart_restores_log_term_and_vote(tmp_path: Path) -> None:
    """Durable state (term, vote, log) survives a restart, and the node keeps following from it."""
    written: list = []

    async def first(n: Node) -> None:
        assert status_error(await n.update(term=3, ops=ops(3, 1, 4), committed=2)) is None
        assert (await n.vote(candidate="n3", term=5, last=(3, 4), forced=True))["vote_granted"] is True
        written.extend(entries_of(n.c.log))

    async def then(n: Node) -> None:
        assert (n.c.term, n.c.voted_for) == (5, "n3")
        assert entries_of(n.c.log) == written and n.c.log.last_opid == OpId(3, 4)
        assert n.c.role is Role.FOLLOWER and n.c.leader_uuid is None
        assert 1.125 <= n.fd_delay() <= 1.875  # term > 0: not the fresh-cluster window
        # Still bound by the vote it gave before the restart.
        resp = await n.vote(candidate="n2", term=5, last=(3, 4), forced=True)
        assert resp["error"]["code"] == "ALREADY_VOTED"
        resp = await n.update(term=5, caller="n3", preceding=(3, 4), ops=[op(5, 5, "NO_OP")], committed=5)
        assert status_error(resp) is None and n.c.commit_index == 5
        assert n.c.kv.data == {f"k{i}": f"v{i}" for i in range(1, 5)}  # re-applied from the log

    restart(tmp_path, first, then)


def test_restart_of_a_leader_keeps_its_writes_and_comes_back_follower(tmp_path: Path) -> None:
    async def first(n: Node) -> None:
        await n.win_election()
        futs = [n.c.replicate({"op": "put", "key": f"x{i}", "value": str(i)}) for i in range(3)]
        await pump(n, {"n2": ModelFollower("n2")})
        assert all(f.done() for f in futs)

    async def then(n: Node) -> None:
        assert n.c.role is Role.FOLLOWER and n.c.term == 1 and n.c.voted_for == "n1"
        assert [(e.term, e.kind) for e in entries_of(n.c.log)] == [(1, "NO_OP")] + [(1, "WRITE")] * 3

    restart(tmp_path, first, then)


def test_restart_after_truncation_replays_the_truncation(tmp_path: Path) -> None:
    async def first(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 4))) is None
        assert status_error(await n.update(term=2, caller="n3", preceding=(1, 1), ops=[op(2, 2)])) is None

    async def then(n: Node) -> None:
        assert [(e.term, e.index) for e in entries_of(n.c.log)] == [(1, 1), (2, 2)]
        assert n.c.term == 2

    restart(tmp_path, first, then)


def test_torn_wal_tail_after_crash_is_repaired_and_node_starts(tmp_path: Path) -> None:
    """A crash mid-append leaves a partial last record: it is cut off on restart and the node carries on."""
    async def main() -> None:
        async with open_node(tmp_path) as n:
            assert status_error(await n.update(term=1, ops=ops(1, 1, 3))) is None
        segment = tmp_path / "wal" / segment_name(1)
        torn = encode_record(op(1, 4))
        with segment.open("ab") as f:
            f.write(torn[: len(torn) - 7])
        async with open_node(tmp_path) as n:
            assert n.wal.stats.torn_tails_repaired == 1
            assert n.c.log.last_opid == OpId(1, 3)
            resp = await n.update(term=1, preceding=(1, 3), ops=ops(1, 4, 5))
            assert status_error(resp) is None
        async with open_node(tmp_path) as n:
            assert n.wal.stats.torn_tails_repaired == 0
            assert [e.index for e in entries_of(n.c.log)] == [1, 2, 3, 4, 5]
    asyncio.run(main())


def _wal_with_corrupt_middle(data_dir: Path) -> None:
    async def main() -> None:
        async with open_node(data_dir) as n:
            assert status_error(await n.update(term=1, ops=ops(1, 1, 3))) is None
    asyncio.run(main())
    segment = data_dir / "wal" / segment_name(1)
    data = bytearray(segment.read_bytes())
    data[20] ^= 0xFF  # inside the first record's payload; good records follow
    segment.write_bytes(bytes(data))


def test_corrupt_middle_record_refuses_to_build_the_node(tmp_path: Path) -> None:
    _wal_with_corrupt_middle(tmp_path)

    async def main() -> None:
        with pytest.raises(WalCorruption, match="offset 0: record checksum mismatch"):
            async with open_node(tmp_path):
                pass
    asyncio.run(main())


def test_corrupt_middle_record_makes_the_node_exit_3_with_one_clear_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _wal_with_corrupt_middle(data_dir)
    before = (data_dir / "wal" / segment_name(1)).read_bytes()
    proc = run_cli(["--config", str(write_cluster(tmp_path / "cluster.json")), "--id", "n1",
                    "--data", str(data_dir)])
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("nodes:")]
    assert len(errors) == 1, proc.stderr
    assert "storage refused to start" in errors[0] and segment_name(1) in errors[0]
    assert "checksum mismatch" in errors[0]
    assert (data_dir / "wal" / segment_name(1)).read_bytes() == before  # a refused log is never modified


def test_corrupt_metadata_makes_the_node_exit_3(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "consensus-meta.json").write_text('{"term": 3, "voted_for": null, "crc32": 1}')
    proc = run_cli(["--config", str(write_cluster(tmp_path / "cluster.json")), "--id", "n1",
                    "--data", str(data_dir)])
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("nodes:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0], proc.stderr


def test_crash_before_metadata_flush_never_acknowledges_the_vote(tmp_path: Path) -> None:
    """fault_crash_before_cmeta_flush: the process dies (exit 85) before the vote is durable or answered;
    after the restart the old term and vote are back and the node can vote again."""
    async def main() -> None:
        async with open_node(tmp_path, flags={"fault_crash_before_cmeta_flush": 1.0}) as n:
            with pytest.raises(InjectedExit):
                await n.vote(candidate="n2", term=4)
            assert n.exits == [85] and n.meta.load() == (0, None)
        async with open_node(tmp_path) as n:
            assert (n.c.term, n.c.voted_for) == (0, None)
            assert (await n.vote(candidate="n3", term=4))["vote_granted"] is True
    asyncio.run(main())


def test_crash_before_applying_a_commit_keeps_the_log(tmp_path: Path) -> None:
    """fault_crash_before_append_commit fires when a committed entry is about to be applied; the entries
    were already durable, so the restarted node has them."""
    async def main() -> None:
        async with open_node(tmp_path, flags={"fault_crash_before_append_commit": 1.0}) as n:
            assert status_error(await n.update(term=1, ops=ops(1, 1, 2))) is None
            with pytest.raises(InjectedExit):
                await n.update(term=1, preceding=(1, 2), committed=2)
            assert n.exits == [85] and n.c.applied_index == 0
        async with open_node(tmp_path) as n:
            assert n.c.log.last_opid == OpId(1, 2) and n.c.term == 1
    asyncio.run(main())
