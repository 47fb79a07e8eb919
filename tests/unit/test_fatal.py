"""Fatal exits of the node (nodes/fatal.py, nodes/faultpoints.py): invariant violations exit 70 with
a record, WAL failures exit 74, injected crashes keep 85; the segment fault points fire."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import NoReturn

import pytest
from consensus_fixture import InjectedExit, Node, follower_reply, op, run_node, status_error

from nodes.fatal import (
    EXIT_FATAL_STORAGE,
    EXIT_INVARIANT,
    FATAL_FILE,
    KIND_INVARIANT,
    KIND_STORAGE,
    parse_log_line,
)
from nodes.faultpoints import INJECTED_CRASH_EXIT, FaultPoints
from nodes.flags import Flags
from nodes.storage import WalWriter
from nodes.wal import LogEntry, Wal

LOG = logging.getLogger("raftchaos.test.fatal")


def fatal_from_log(caplog: pytest.LogCaptureFixture) -> dict | None:
    records = [parse_log_line(r.getMessage()) for r in caplog.records]
    found = [r for r in records if r is not None]
    return found[-1] if found else None


def test_two_leaders_in_one_term_abort_with_a_record(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """raft_consensus.cc, RaftConsensus::CheckLeaderRequestUnlocked: an update from a second leader
    in the term the node already follows a leader in is LOG(FATAL) ("Unexpected new leader in same
    term!"). The node writes its record (log line, fatal.json, /status) and exits 70."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2, ops=[op(2, 1)], caller="n2")) is None
        with pytest.raises(InjectedExit):
            await n.update(term=2, preceding=(2, 1), ops=[op(2, 2)], caller="n3")
        assert n.exits == [EXIT_INVARIANT]
        record = n.c.status()["fatal"]
        assert record["kind"] == KIND_INVARIANT and record["what"] == "two_leaders_in_term"
        assert record["term"] == 2 and record["node"] == "n1"
        assert record["uuids"]["existing_leader"] == "n2" and record["uuids"]["new_leader"] == "n3"
        assert record["op_ids"]["preceding_id"] == [2, 1] and record["op_ids"]["first_op"] == [2, 2]
        assert json.loads((n.data_dir / FATAL_FILE).read_text()) == record
        assert fatal_from_log(caplog) == record
        assert n.c.log.last_index == 1  # nothing of the second leader was accepted
    with caplog.at_level(logging.INFO):
        run_node(tmp_path, body)


def test_a_leader_receiving_an_update_of_its_own_term_aborts(tmp_path: Path) -> None:
    """The same check on the leader: another node claiming its term is a second leader."""
    async def body(n: Node) -> None:
        await n.win_election()
        with pytest.raises(InjectedExit):
            await n.update(term=n.c.term, preceding=(1, 1), caller="n2")
        assert n.exits == [EXIT_INVARIANT]
        assert n.c.faults.fatal_record is not None
        assert n.c.faults.fatal_record["uuids"]["existing_leader"] == "n1"
    run_node(tmp_path, body)


def test_b28_ok_reply_with_a_higher_term_is_an_invariant_violation(tmp_path: Path) -> None:
    """B28 is the error path (INVALID_TERM, step down); a reply *without* error carrying a term above
    the leader's breaks consensus_queue.cc's CHECK_LE(responder_term, current_term) in
    PeerMessageQueue::ResponseFromPeer: exit 70 with a record, not a log line."""
    async def body(n: Node) -> None:
        await n.win_election()
        term = n.c.term
        first = n.transport.take("n2")
        with pytest.raises(InjectedExit):
            first.reply(follower_reply("n2", term + 1, (term, 1), current_leader=(term, 1)))
        assert n.exits == [EXIT_INVARIANT]
        record = n.c.faults.fatal_record
        assert record is not None and record["what"] == "ok_reply_with_higher_term"
        assert record["term"] == term and record["uuids"] == {"leader": "n1", "peer": "n2"}
        assert record["op_ids"]["last_received"] == [term, 1]
    run_node(tmp_path, body)


# ----- the WAL writer's fatal paths -----
class _Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> NoReturn:
        self.codes.append(code)
        raise InjectedExit(code)


async def _write_one(tmp_path: Path, flags: dict, segment_bytes: int = 1 << 20,
                     existing: int = 0) -> tuple[_Exits, FaultPoints, BaseException | None]:
    exits = _Exits()
    f = Flags(flags)
    faults = FaultPoints(f, random.Random(5), LOG, exit_fn=exits, data_dir=tmp_path, uuid="n1")
    wal = Wal(tmp_path / "wal", segment_bytes=segment_bytes, fsync=False)
    wal.recover()
    writer = WalWriter(wal, f, faults, random.Random(5), LOG)
    writer.start()
    error: BaseException | None = None
    try:
        for i in range(1, existing + 1):
            await writer.append([LogEntry(1, i, "NO_OP", None)])
        try:
            # The draws are made as the append is handed to the append thread, here at once.
            await asyncio.wait_for(writer.append([LogEntry(1, existing + 1, "NO_OP", None)]), 5)
        except (InjectedExit, TimeoutError) as e:
            error = e
    finally:
        await writer.stop()
        wal.close()
    return exits, faults, error


def test_injected_wal_append_io_error_exits_74_not_85(tmp_path: Path) -> None:
    """log.cc, Log::DoAppend fails with the injected IOError and a failed local append is fatal:
    exit 74 (fatal storage), distinct from the fault_crash_* status 85."""
    exits, faults, error = asyncio.run(
        _write_one(tmp_path, {"log_inject_io_error_on_append_fraction": 1.0}))
    assert isinstance(error, InjectedExit) and exits.codes == [EXIT_FATAL_STORAGE]
    assert EXIT_FATAL_STORAGE != INJECTED_CRASH_EXIT
    assert faults.fatal_record is not None and faults.fatal_record["kind"] == KIND_STORAGE
    assert faults.fatal_record["what"] == "wal_append_io_error"


def test_injected_preallocate_io_error_is_fatal_when_a_segment_starts(tmp_path: Path) -> None:
    """log.cc, Log::PreAllocateNewSegment: the injected IOError fails the roll-over to the new
    segment, so the append needing it fails: exit 74. Within a segment nothing is drawn."""
    exits, faults, error = asyncio.run(
        _write_one(tmp_path, {"log_inject_io_error_on_preallocate_fraction": 1.0}))
    assert exits.codes == [EXIT_FATAL_STORAGE] and isinstance(error, InjectedExit)
    assert faults.fatal_record is not None
    assert faults.fatal_record["what"] == "wal_preallocate_io_error"


def test_crash_before_writing_a_segment_header_exits_85_at_the_next_segment(tmp_path: Path) -> None:
    """log_util.cc, WritableLogSegment::WriteHeaderAndOpen: MAYBE_FAULT(
    fault_crash_before_write_log_segment_header) fires only when a segment is started: the first
    write of an empty WAL, then each roll-over; nothing of the entry reaches the disk."""
    exits, faults, error = asyncio.run(
        _write_one(tmp_path, {"fault_crash_before_write_log_segment_header": 1.0}))
    assert exits.codes == [INJECTED_CRASH_EXIT]
    assert faults.draws["fault_crash_before_write_log_segment_header"] == 1
    with Wal(tmp_path / "wal", fsync=False) as wal:
        assert wal.recover() == []


def test_segment_header_crash_is_not_drawn_within_a_segment(tmp_path: Path) -> None:
    """Appends inside the current segment draw nothing; the draw comes with the roll-over."""
    async def main() -> tuple[FaultPoints, int]:
        f = Flags()
        faults = FaultPoints(f, random.Random(5), LOG, exit_fn=_Exits())
        wal = Wal(tmp_path / "wal", segment_bytes=150, fsync=False)
        wal.recover()
        writer = WalWriter(wal, f, faults, random.Random(5), LOG)
        writer.start()
        for i in range(1, 6):
            await writer.append([LogEntry(1, i, "NO_OP", None)])
        await writer.stop()
        segments = len(wal.segment_paths())
        wal.close()
        return faults, segments
    faults, segments = asyncio.run(main())
    assert segments >= 2
    assert faults.draws["fault_crash_before_write_log_segment_header"] == segments
    assert faults.draws["log_inject_io_error_on_preallocate_fraction"] == segments
