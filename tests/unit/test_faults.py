"""Fault parameter validation, and inject/heal on a fake cluster: targets, links touched, history events."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from faults.flags import FlagFault, crash_on_leader_request, follower_reject_updates
from faults.network import CutLink, Isolate, LinkLatency, isolation_links, link_latency, partition
from faults.process import Kill, Pause, Restart
from harness.backend import Capabilities, LinkId
from harness.errors import FaultError, FaultUnavailable
from harness.history import History, load_history
from harness.toxi import Stream, Toxic

SEED = 99


class FakeLink:
    def __init__(self, link: LinkId) -> None:
        self.id = link
        self.enabled = True
        self.toxic_list: dict[str, Toxic] = {}

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def add_toxic(self, type: str, stream: Stream | str, toxicity: float = 1.0,
                  attributes: dict[str, Any] | None = None, name: str | None = None) -> str:
        assert name and name not in self.toxic_list
        self.toxic_list[name] = Toxic(name, type, Stream(stream), toxicity, dict(attributes or {}))
        return name

    def remove_toxic(self, name: str, missing_ok: bool = True) -> None:
        self.toxic_list.pop(name, None)

    def toxics(self) -> list[Toxic]:
        return list(self.toxic_list.values())


class FakeBackend:
    name = "fake"


class FakeCluster:
    """The Cluster verbs the faults use, in memory; n2 leads in term 5."""

    def __init__(self, tmp: Path, n: int = 3, can_pause: bool = True) -> None:
        self.nodes = tuple(f"n{i}" for i in range(1, n + 1))
        self.history = History(tmp / "events.jsonl")
        self.capabilities = Capabilities(can_pause=can_pause)
        self.backend = FakeBackend()
        self._rng = random.Random(SEED)
        self.links = {f"{a}->{b}": FakeLink(LinkId(a, b)) for a in self.nodes for b in self.nodes if a != b}
        self.links.update({f"client->{n}": FakeLink(LinkId("client", n)) for n in self.nodes})
        self.running = set(self.nodes)
        self.paused: set[str] = set()
        self.flag_values = {n: {"follower_reject_update_consensus_requests": False,
                                "fault_crash_on_leader_request_fraction": 0.0} for n in self.nodes}

    def statuses(self) -> dict[str, Any]:
        return {n: {"role": "LEADER" if n == "n2" else "FOLLOWER", "term": 5, "leader": "n2"}
                for n in self.nodes}

    def rng(self, purpose: str) -> random.Random:
        return self._rng

    def link(self, src: str, dst: str) -> FakeLink:
        return self.links[f"{src}->{dst}"]

    def client_link(self, node: str) -> FakeLink:
        return self.links[f"client->{node}"]

    def is_running(self, node: str) -> bool:
        return node in self.running

    def is_paused(self, node: str) -> bool:
        return node in self.paused

    def kill(self, node: str) -> int:
        self.running.discard(node)
        return -9

    def terminate(self, node: str, timeout_s: float = 5.0) -> int:
        self.running.discard(node)
        return 0

    def start(self, node: str) -> None:
        self.running.add(node)

    def restart(self, node: str, hard: bool = False) -> None:
        self.start(node)

    def pause(self, node: str) -> None:
        self.paused.add(node)

    def resume(self, node: str) -> None:
        self.paused.discard(node)

    def flags(self, node: str) -> dict[str, Any]:
        return dict(self.flag_values[node])

    def set_flag(self, node: str, name: str, value: Any) -> Any:
        self.flag_values[node][name] = value
        return value

    def events(self) -> list[dict[str, Any]]:
        return [e for e in load_history(self.history.path) if e["kind"] in ("fault", "heal")]


@pytest.fixture
def fake(tmp_path: Path) -> FakeCluster:
    print(f"seed={SEED}")
    return FakeCluster(tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "n2", "mode": "sideways"}, "mode must be one of"),
    ({"target": "n2", "mode": "refused", "direction": "requests"}, "direction must be 'both'"),
    ({"target": "n2", "direction": "up"}, "direction must be one of"),
    ({"target": "", "mode": "refused"}, "isolate must be a Target"),
    ({"target": "n2", "include_client": "yes"}, "include_client must be a bool"),
])
def test_isolate_rejects_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FaultError, match=match):
        Isolate(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"latency_ms": -1}, r"latency_ms must be within"),
    ({"latency_ms": 1.5}, "latency_ms must be an int"),
    ({"latency_ms": True}, "latency_ms must be an int"),
    ({"latency_ms": 100, "jitter_ms": 200}, "must not exceed"),
    ({"latency_ms": 100, "direction": "sideways"}, "direction must be one of"),
    ({"latency_ms": 10**6}, "latency_ms must be within"),
])
def test_latency_rejects_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FaultError, match=match):
        LinkLatency("n1", "n2", **kwargs)


def test_links_and_flags_reject_bad_parameters(fake: FakeCluster) -> None:
    with pytest.raises(FaultError, match="two different nodes"):
        CutLink("n1", "n1")
    with pytest.raises(FaultError, match="exactly one of"), partition(fake, isolate="n1", link=("n1", "n2")):  # type: ignore[arg-type]
        pass
    with pytest.raises(FaultError, match="exactly one of"), partition(fake):  # type: ignore[arg-type]
        pass
    with pytest.raises(FaultError, match="unknown node"), partition(fake, isolate="n9"):  # type: ignore[arg-type]
        pass
    with pytest.raises(FaultError, match="for_s"), link_latency(fake, "n1", "n2", 5, for_s=-1):  # type: ignore[arg-type]
        pass
    with pytest.raises(FaultError, match=r"within \[0, 1\]"):
        crash_on_leader_request(1.5)
    with pytest.raises(FaultError, match="is a bool"):
        FlagFault({"follower_fail_all_prepare": 1})
    with pytest.raises(FaultError, match="not a flag name"):
        FlagFault({"Bad-Name": 1})
    with pytest.raises(FaultError, match="non-empty mapping"):
        FlagFault({})
    with pytest.raises(FaultError, match="hard must be a bool"):
        Kill("leader", hard="yes")  # type: ignore[arg-type]


def test_isolation_links_cover_both_directions_and_keep_the_minority_connected() -> None:
    names = {link.name for link in isolation_links(["n2"], ["n1", "n2", "n3"], include_client=True)}
    assert names == {"n1->n2", "n2->n1", "n3->n2", "n2->n3", "client->n2"}
    names = {link.name for link in isolation_links(["n1", "n2"], ["n1", "n2", "n3", "n4", "n5"], False)}
    assert "n1->n2" not in names and {"n1->n5", "n5->n2"} <= names and len(names) == 12


def test_refused_isolate_of_the_leader_records_who_and_term_and_heals(fake: FakeCluster) -> None:
    with partition(fake, isolate="leader", mode="refused") as record:  # type: ignore[arg-type]
        assert record.targets == ("n2",) and record.term == 5
        assert not fake.link("n1", "n2").enabled and not fake.link("n2", "n3").enabled
        assert fake.link("n1", "n3").enabled and fake.client_link("n2").enabled
    assert all(link.enabled for link in fake.links.values())
    fault, heal = fake.events()
    assert fault["kind"] == "fault" and fault["targets"] == ["n2"] and fault["term"] == 5
    assert fault["params"]["mode"] == "refused" and fault["params"]["target"] == "leader"
    assert sorted(fault["params"]["links"]) == ["n1->n2", "n2->n1", "n2->n3", "n3->n2"]
    assert heal["kind"] == "heal" and heal["targets"] == ["n2"]


def test_blackhole_cut_uses_timeout_zero_on_the_chosen_stream_and_heal_is_idempotent(fake: FakeCluster) -> None:
    fault = CutLink("leader", "n3", mode="blackhole", direction="replies")
    assert fault.available(fake) is None  # type: ignore[arg-type]
    record = fault.inject(fake)  # type: ignore[arg-type]
    assert record.targets == ("n2", "n3")
    (toxic,) = fake.link("n2", "n3").toxics()
    assert (toxic.type, toxic.stream, toxic.attributes) == ("timeout", Stream.DOWNSTREAM, {"timeout": 0})
    fault.heal(fake)  # type: ignore[arg-type]
    fault.heal(fake)  # type: ignore[arg-type]
    fault.teardown(fake)  # type: ignore[arg-type]
    assert fake.link("n2", "n3").toxics() == []
    assert [e["kind"] for e in fake.events()] == ["fault", "heal"]


def test_latency_jitter_is_drawn_from_the_seeded_rng(tmp_path: Path) -> None:
    drawn = []
    for run in range(2):
        cluster = FakeCluster(tmp_path / str(run))
        with link_latency(cluster, "n1", "n3", latency_ms=100, jitter_ms=30) as record:  # type: ignore[arg-type]
            toxics = cluster.link("n1", "n3").toxics()
            assert {t.attributes["jitter"] for t in toxics} == {0}
            assert {t.attributes["latency"] for t in toxics} == set(record.params["drawn_ms"].values())
            drawn.append(record.params["drawn_ms"])
        assert cluster.link("n1", "n3").toxics() == []
    assert drawn[0] == drawn[1] and all(70 <= v <= 130 for v in drawn[0].values())


def test_process_faults_hit_targets_and_heal(fake: FakeCluster) -> None:
    kill = Kill("followers")
    record = kill.inject(fake)  # type: ignore[arg-type]
    assert record.targets == ("n1", "n3") and fake.running == {"n2"}
    kill.heal(fake)  # type: ignore[arg-type]
    assert fake.running == {"n1", "n2", "n3"}
    assert Pause("n1").available(FakeCluster(fake.history.path.parent / "x", can_pause=False)) is not None  # type: ignore[arg-type]
    pause = Pause("leader")
    pause.inject(fake)  # type: ignore[arg-type]
    assert fake.paused == {"n2"}
    pause.heal(fake)  # type: ignore[arg-type]
    assert fake.paused == set()
    assert Restart("n3").inject(fake).params["hard"] is False  # type: ignore[arg-type]


def test_flag_fault_restores_previous_values(fake: FakeCluster) -> None:
    fault = follower_reject_updates()
    assert fault.available(fake) is None  # type: ignore[arg-type]
    record = fault.inject(fake)  # type: ignore[arg-type]
    assert record.targets == ("n1", "n3") and record.term == 5
    assert fake.flag_values["n1"]["follower_reject_update_consensus_requests"] is True
    assert fake.flag_values["n2"]["follower_reject_update_consensus_requests"] is False
    fault.heal(fake)
    assert all(v["follower_reject_update_consensus_requests"] is False for v in fake.flag_values.values())
    assert FlagFault({"no_such_flag": 1}).available(fake) == "the node does not have flag(s) no_such_flag"


def test_unavailable_fault_raises_fault_unavailable(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, n=2)
    with pytest.raises(FaultUnavailable, match="minority"), partition(cluster, isolate="minority"):  # type: ignore[arg-type]
        pass
