"""Power loss and disk corruption: the node's sync ledger (nodes/durable.py), the power cut it
drives (faults/ledger.py), seeded corruption (faults/corruption.py), the faults' parameters and
the crashes checker's reading of an injected refusal. Pure, over temporary directories."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nodes.meta
from faults.catalog import build_fault, replay_params
from faults.corruption import CorruptionPlan, Mode, StorageFile, Where, apply_corruption, plan_corruption
from faults.ledger import LEDGER_FILE, LedgerError, parse_ledger, power_cut, read_ledger
from harness.checkers.crashes import check_crashes
from harness.checkers.verdict import Validity
from harness.errors import FaultError
from nodes.durable import SyncLedger, install_ledger
from nodes.meta import MetadataError, MetadataStore
from nodes.wal import LogEntry, Wal, WalCorruption

SEED = 20261207


def entries(first: int, last: int, term: int = 1) -> list[LogEntry]:
    return [LogEntry(term, i, "WRITE", {"key": f"k{i}", "value": f"v{i}"}) for i in range(first, last + 1)]


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    """A node data directory with the ledger installed, as ``python -m nodes --sync-ledger`` does."""
    ledger = SyncLedger(tmp_path)
    install_ledger(ledger)
    try:
        yield tmp_path
    finally:
        install_ledger(None)
        ledger.close()


def open_wal(data: Path, **kwargs: Any) -> tuple[Wal, list[LogEntry]]:
    wal = Wal(data / "wal", **kwargs)
    return wal, wal.recover()


def test_the_ledger_records_each_fsync_as_it_completed(data: Path) -> None:
    meta = MetadataStore(data)
    wal, _ = open_wal(data)
    meta.save(1, "n2")
    wal.append(entries(1, 3))
    wal.close()
    lines = [json.loads(x) for x in (data / LEDGER_FILE).read_text().splitlines()]
    segment = data / "wal" / "wal-000001.log"
    assert {"f": "wal/wal-000001.log", "ino": segment.stat().st_ino, "size": segment.stat().st_size} in lines
    top = [x for x in lines if x.get("d") == "."][-1]
    assert set(top["names"]) == {"wal", "consensus-meta.json"}  # the ledger itself is never listed
    assert json.loads(top["contents"]["consensus-meta.json"])["voted_for"] == "n2"
    assert [x for x in lines if x.get("d") == "wal"][-1]["names"] == {"wal-000001.log": segment.stat().st_ino}
    parsed = read_ledger(data)
    assert parsed.files["wal/wal-000001.log"][1] == segment.stat().st_size


def test_without_a_ledger_nothing_is_recorded(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(entries(1, 2))
    wal.close()
    assert not (tmp_path / LEDGER_FILE).exists()
    with pytest.raises(LedgerError, match="no sync ledger"):
        power_cut(tmp_path)


def test_a_power_cut_drops_the_unsynced_tail_and_keeps_the_synced_log(data: Path) -> None:
    wal, _ = open_wal(data)  # the node recovers its WAL (creating wal/) before it saves metadata
    MetadataStore(data).save(1, None)
    wal.append(entries(1, 3))
    wal.close()
    segment = data / "wal" / "wal-000001.log"
    synced = segment.stat().st_size
    with segment.open("ab") as fh:  # written, never fsynced (still in the page cache at a SIGKILL)
        fh.write(b"x" * 100)
    report = power_cut(data)
    assert report.dropped_bytes == {"wal/wal-000001.log": 100} and report.bit
    assert segment.stat().st_size == synced
    install_ledger(None)
    _, got = open_wal(data)
    assert got == entries(1, 3)
    again = power_cut(data)  # the ledger restarted from what the cut left: nothing more to lose
    assert not again.bit and again.total_dropped == 0


def test_a_wal_that_never_fsyncs_loses_everything_it_wrote(data: Path) -> None:
    wal, _ = open_wal(data, fsync=False)
    MetadataStore(data).save(1, None)
    wal.append(entries(1, 5))
    wal.close()
    report = power_cut(data)
    # the segment's directory entry was never synced either: the file itself is gone
    assert report.removed == ["wal/wal-000001.log"] and report.total_dropped > 0
    install_ledger(None)
    assert open_wal(data)[1] == []


def test_a_vote_renamed_in_but_not_dir_synced_reverts_to_the_old_vote(data: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    meta = MetadataStore(data)
    meta.save(3, "n1")
    monkeypatch.setattr(nodes.meta, "fsync_dir", lambda directory: None)  # planted: no directory fsync
    meta.save(4, "n3")
    report = power_cut(data)
    assert report.reverted == ["consensus-meta.json"]
    assert MetadataStore(data).load() == (3, "n1")


def test_a_vote_never_made_durable_is_lost_with_its_file(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes.meta, "fsync_dir", lambda directory: None)
    MetadataStore(data).save(2, "n2")
    report = power_cut(data)
    assert "consensus-meta.json" in report.removed
    assert MetadataStore(data).load() == (0, None)


def test_other_files_are_left_alone(data: Path) -> None:
    (data / "fatal.json").write_text("{}")
    power_cut(data)
    assert (data / "fatal.json").read_text() == "{}"


@pytest.mark.parametrize("text,problem", [
    ("nope\n", "not JSON"), ("[1]\n", "not an object"), ('{"x": 1}\n', "neither a file"),
    ('{"f": "wal/a", "ino": 1, "size": -1}\n', "bad size"), ('{"d": ".", "names": 3}\n', "bad directory"),
])
def test_a_bad_ledger_line_is_named(text: str, problem: str) -> None:
    with pytest.raises(LedgerError, match=f"L:1: .*{problem}"):
        parse_ledger(text, "L")


def _wal_with(data: Path, count: int) -> None:
    wal, _ = open_wal(data)
    wal.append(entries(1, count))
    wal.close()


def test_corruption_plans_are_seeded_and_replay_exactly(tmp_path: Path) -> None:
    _wal_with(tmp_path, 10)
    print(f"seed {SEED}")
    plans = [plan_corruption(tmp_path, StorageFile.WAL, Where.MID, Mode.FLIP, 2, random.Random(SEED))
             for _ in range(2)]
    assert plans[0] == plans[1] and plans[0] is not None
    assert CorruptionPlan.from_json(plans[0].to_json()) == plans[0]


@pytest.mark.parametrize("mode", list(Mode))
def test_tail_corruption_is_a_torn_tail_the_wal_cuts(tmp_path: Path, mode: Mode) -> None:
    _wal_with(tmp_path, 6)
    plan = plan_corruption(tmp_path, StorageFile.WAL, Where.TAIL, mode, 3, random.Random(SEED))
    assert plan is not None and plan.expect == "repair"
    apply_corruption(tmp_path, plan)
    wal, got = open_wal(tmp_path)
    assert got == entries(1, 5) and wal.stats.torn_tails_repaired == 1


@pytest.mark.parametrize("seed", range(8))
def test_mid_log_corruption_is_refused(tmp_path: Path, seed: int) -> None:
    _wal_with(tmp_path, 6)
    plan = plan_corruption(tmp_path, StorageFile.WAL, Where.MID, Mode.FLIP if seed % 2 else Mode.ZERO, 1,
                           random.Random(seed))
    assert plan is not None and plan.expect == "refuse"
    apply_corruption(tmp_path, plan)
    with pytest.raises(WalCorruption):
        open_wal(tmp_path)


@pytest.mark.parametrize("where", list(Where))
@pytest.mark.parametrize("mode", list(Mode))
def test_meta_corruption_is_refused(tmp_path: Path, where: Where, mode: Mode) -> None:
    MetadataStore(tmp_path).save(7, "n2")
    plan = plan_corruption(tmp_path, StorageFile.META, where, mode, 1, random.Random(SEED))
    assert plan is not None and plan.expect == "refuse"
    apply_corruption(tmp_path, plan)
    with pytest.raises(MetadataError):
        MetadataStore(tmp_path).load()


def test_nothing_to_corrupt_is_none(tmp_path: Path) -> None:
    _wal_with(tmp_path, 1)
    rng = random.Random(SEED)
    assert plan_corruption(tmp_path, StorageFile.WAL, Where.MID, Mode.FLIP, 1, rng) is None
    assert plan_corruption(tmp_path, StorageFile.META, Where.TAIL, Mode.FLIP, 1, rng) is None


@pytest.mark.parametrize("name,params,problem", [
    ("corrupt", {"file": "disk"}, "file must be one of"),
    ("corrupt", {"where": "head"}, "where must be one of"),
    ("corrupt", {"mode": "shred"}, "mode must be one of"),
    ("corrupt", {"nbytes": 0}, "nbytes must be within"),
    ("corrupt", {"plans": {"n1": {"path": "/etc/x", "offset": 0, "length": 1, "mask": 1,
                                  "expect": "refuse"}}}, "bad path"),
    ("corrupt", {"plans": {"n1": {"path": "wal/a", "offset": 0, "length": 1, "mask": 1}}}, "expect"),
    ("power-loss", {"where": "tail"}, "unknown parameter"),
])
def test_bad_parameters_are_one_line_errors(name: str, params: dict[str, Any], problem: str) -> None:
    with pytest.raises(FaultError, match=problem) as info:
        build_fault(name, params)
    assert "\n" not in str(info.value)


def test_a_replay_corrupts_the_recorded_bytes() -> None:
    plan = {"path": "wal/wal-000001.log", "offset": 40, "length": 1, "mask": 3, "expect": "refuse"}
    out = replay_params("corrupt", {"target": "one", "where": "mid"}, {"plans": {"n2": plan}}, ["n2"])
    assert out == {"target": "n2", "where": "mid", "plans": {"n2": plan}}
    assert build_fault("corrupt", out).plans["n2"].offset == 40  # type: ignore[attr-defined]


def _events(expect: str) -> list[dict[str, Any]]:
    plan = {"path": "wal/wal-000001.log", "offset": 40, "length": 1, "mask": 3, "expect": expect}
    return [{"t": 1.0, "kind": "fault", "fault": "corrupt", "params": {"plans": {"n2": plan}}, "targets": ["n2"]},
            {"t": 2.0, "kind": "node", "node": "n2", "event": "exit", "code": 3}]


def test_refusing_an_injected_mid_log_corruption_is_not_a_crash() -> None:
    verdict = check_crashes(_events("refuse"))
    assert verdict.validity is Validity.VALID
    assert verdict.details["refused_injected_corruption"][0]["node"] == "n2"


def test_refusing_a_torn_tail_it_should_repair_is_a_crash() -> None:
    assert check_crashes(_events("repair")).validity is Validity.INVALID


def test_storage_faults_are_scheduled_from_a_scenario_and_bad_ones_named() -> None:
    from faults.scenario import ScenarioError, parse_scenario
    from harness.schedule import StepOp, plan

    text = """
seed = 5
[cluster]
nodes = 3
[[timeline]]
at_s = 1.0
for_s = 2.0
fault = "power-loss"
params = { target = "leader" }
[[timeline]]
at_s = 4.0
for_s = 1.0
fault = "corrupt"
params = { target = "n2", file = "wal", where = "tail", mode = "zero", nbytes = 4 }
"""
    steps = plan(parse_scenario(text, "s.toml").schedule(), 5)
    assert [(x.offset_s, x.op) for x in steps] == [(1.0, StepOp.INJECT), (3.0, StepOp.HEAL),
                                                   (4.0, StepOp.INJECT), (5.0, StepOp.HEAL)]
    with pytest.raises(ScenarioError, match="s.toml.*where must be one of") as info:
        parse_scenario(text.replace('where = "tail"', 'where = "head"'), "s.toml")
    assert "\n" not in str(info.value)


def test_a_compacted_ledger_keeps_every_claim_also_of_an_earlier_incarnation(tmp_path: Path) -> None:
    first = SyncLedger(tmp_path)
    install_ledger(first)
    try:
        wal, _ = open_wal(tmp_path, segment_bytes=200)
        MetadataStore(tmp_path).save(1, None)
        wal.append(entries(1, 4))  # rolls: several segments, each with its own claim
        wal.close()
    finally:
        install_ledger(None)
        first.close()
    before = read_ledger(tmp_path)
    second = SyncLedger(tmp_path, compact_bytes=1)  # the next incarnation compacts on every line
    install_ledger(second)
    try:
        wal, got = open_wal(tmp_path, segment_bytes=200)
        wal.append(entries(5, 6))
        wal.close()
    finally:
        install_ledger(None)
        second.close()
    assert got == entries(1, 4) and second.compactions > 0
    after = read_ledger(tmp_path)
    assert after.lines == len(after.files) + len(after.dirs)  # one line per file and directory
    assert {k: v for k, v in after.files.items() if k in before.files and k != max(before.files)} == {
        k: v for k, v in before.files.items() if k != max(before.files)}
    assert not power_cut(tmp_path).bit  # everything written was synced and still claimed


class _FakeRun:
    def __init__(self, root: Path) -> None:
        self.root = root

    def node_data(self, node_id: str) -> Path:
        return self.root / node_id


class _FakeCluster:
    """Just what PowerLoss needs to act on one node: its data dir, kill and start."""

    def __init__(self, root: Path) -> None:
        self.run = _FakeRun(root)
        self.calls: list[tuple[str, str]] = []

    def kill(self, node_id: str) -> None:
        self.calls.append(("kill", node_id))

    def start(self, node_id: str) -> None:
        self.calls.append(("start", node_id))


def test_a_power_loss_that_cannot_cut_restarts_the_node_and_says_why(tmp_path: Path) -> None:
    from faults.storage_faults import PowerLoss

    cluster = _FakeCluster(tmp_path)
    fault = PowerLoss("n1")
    with pytest.raises(FaultError, match="missing"):  # no ledger: refused before the kill
        fault._act(cluster, "n1")  # type: ignore[arg-type]
    assert cluster.calls == []
    (tmp_path / "n1").mkdir()
    (tmp_path / "n1" / LEDGER_FILE).write_text("torn{\n")
    with pytest.raises(FaultError, match="not JSON.*restarted") as info:
        fault._act(cluster, "n1")  # type: ignore[arg-type]
    assert cluster.calls == [("kill", "n1"), ("start", "n1")] and "\n" not in str(info.value)
