"""Fault parameter validation, and inject/heal on a fake cluster: targets, links touched, history events,
whether a fault bit (traffic through the fake proxies), and re-arming flags after a restart."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faults.catalog import build_fault, entry, replay_params
from faults.flags import FlagFault, crash_on_leader_request, follower_reject_updates
from faults.network import CutLink, LinkLatency, link_latency, partition
from faults.process import Kill, Pause, Restart
from harness.backend import Capabilities, LinkId
from harness.errors import FaultError, FaultUnavailable, NodeUnreachable, ToxiproxyError
from harness.history import History, load_history
from harness.systems.topology import MemberAddresses, ProxyShape, Topology, plan_topology, proxy_names
from harness.toxi import ProxyInfo, Stream, Toxic
from harness.waits import WaitStrategy, wait_until

SEED = 99


Traffic = dict[tuple[str, Stream], tuple[int, int]]


class FakeLink:
    """A proxy in memory; ``traffic`` is the whole fake server's byte counters (None: no metrics)."""

    def __init__(self, link: LinkId, traffic: Traffic | None) -> None:
        self.id = link
        self.enabled = True
        self.toxic_list: dict[str, Toxic] = {}
        self.traffic = traffic
        self.ignore_disable = False  # a proxy that silently stays up (the in-place check catches it)

    def info(self) -> ProxyInfo:
        return ProxyInfo(self.id.name, f"fake:{self.id.name}", "fake:0", self.enabled)

    def server_traffic(self) -> Traffic:
        if self.traffic is None:
            raise ToxiproxyError("toxiproxy GET /metrics: no Prometheus text")
        return dict(self.traffic)

    def disable(self) -> None:
        self.enabled = self.ignore_disable

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

    def __init__(self, tmp: Path, n: int = 3, can_pause: bool = True, metrics: bool = True) -> None:
        self.nodes = tuple(f"n{i}" for i in range(1, n + 1))
        self.history = History(tmp / "events.jsonl")
        self.capabilities = Capabilities(can_pause=can_pause)
        self.backend = FakeBackend()
        self._rng = random.Random(SEED)
        self.traffic: Traffic | None = {} if metrics else None
        self.link_map = {f"{a}->{b}": FakeLink(LinkId(a, b), self.traffic)
                         for a in self.nodes for b in self.nodes if a != b}
        self.link_map.update({f"client->{n}": FakeLink(LinkId("client", n), self.traffic) for n in self.nodes})
        self.running = set(self.nodes)
        self.paused: set[str] = set()
        self.flag_values = {n: dict(self.DEFAULT_FLAGS) for n in self.nodes}
        self.start_listeners: list[Callable[[str], None]] = []
        self.leader, self.term = "n2", 5
        self.peer_counters = {n: {"requests_sent": 0, "proxied_sends": 0, "responses_ok": 0, "responses_error": 0}
                              for n in self.nodes}  # the leader's, per peer

    DEFAULT_FLAGS = {"follower_reject_update_consensus_requests": False,
                     "fault_crash_on_leader_request_fraction": 0.0}

    def send(self, link: str, stream: Stream, received: int, sent: int) -> None:
        """``received`` bytes entered the proxy ``link`` on ``stream`` and ``sent`` left it."""
        assert self.traffic is not None
        before = self.traffic.get((link, stream), (0, 0))
        self.traffic[(link, stream)] = (before[0] + received, before[1] + sent)

    def links(self) -> list[FakeLink]:
        return list(self.link_map.values())

    def statuses(self) -> dict[str, Any]:
        return {n: self.status(n) for n in self.nodes}

    def status(self, node: str) -> dict[str, Any]:
        """``/status`` as docs/node-api.md has it: the leader has per-peer counters, the others none."""
        if node not in self.running or node in self.paused:
            raise NodeUnreachable(f"{node} does not answer", "refused")
        leads = node == self.leader
        peers = {p: {"counters": dict(c)} for p, c in self.peer_counters.items() if p != node} if leads else {}
        return {"role": "LEADER" if leads else "FOLLOWER", "term": self.term, "leader": self.leader,
                "peers": peers, "proxy": {"received": 0, "success": 0}}

    def replicate(self, peer: str, requests: int, replies: int) -> None:
        """The leader sent ``requests`` UpdateConsensus to ``peer`` and processed ``replies``."""
        counters = self.peer_counters[peer]
        counters["requests_sent"] += requests
        counters["responses_ok"] += replies

    def rng(self, purpose: str) -> random.Random:
        return self._rng

    def link(self, src: str, dst: str) -> FakeLink:
        return self.link_map[f"{src}->{dst}"]

    topology: Topology | None = None  # None: one proxy per directed link, every cut expressible

    def cut_unavailable(self, pairs: Any) -> str | None:
        """``Cluster.cut_unavailable``: the topology's answer (kuduraft's proxies cut anything)."""
        if self.topology is None:
            return None
        plan = self.topology.cut(pairs)
        return None if plan.available else plan.reason

    def client_link(self, node: str) -> FakeLink:
        return self.link_map[f"client->{node}"]

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
        """A started node runs its spec's flags (the defaults here), as a real restart does."""
        self.running.add(node)
        self.flag_values[node] = dict(self.DEFAULT_FLAGS)
        for listener in list(self.start_listeners):
            listener(node)

    def add_start_listener(self, listener: Callable[[str], None]) -> None:
        self.start_listeners.append(listener)

    def remove_listener(self, listener: Callable[..., None]) -> None:
        if listener in self.start_listeners:
            self.start_listeners.remove(listener)

    def restart(self, node: str, hard: bool = False) -> None:
        self.start(node)

    def pause(self, node: str) -> None:
        self.paused.add(node)

    def resume(self, node: str) -> None:
        self.paused.discard(node)

    def flags(self, node: str) -> dict[str, Any]:
        if node not in self.running:
            raise NodeUnreachable(f"{node} is down", "refused")
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
    ({"isolate": "n2", "mode": "sideways"}, "mode must be one of"),
    ({"isolate": "n2", "mode": "refused", "direction": "requests"}, "direction must be 'both'"),
    ({"isolate": "n2", "mode": "blackhole", "direction": "requests"}, "isolate=... cuts both ways"),
    ({"isolate": "n2", "direction": "up"}, "direction must be one of"),
    ({"isolate": "", "mode": "refused"}, "isolate must be a Target"),
    ({"isolate": "n2", "include_client": "yes"}, "include_client must be a bool"),
])
def test_isolate_rejects_bad_parameters(fake: FakeCluster, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FaultError, match=match), partition(fake, **kwargs):  # type: ignore[arg-type]
        pass
    assert fake.events() == []


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


def _proxy_state(cluster: FakeCluster) -> dict[str, tuple[bool, list[tuple[str, str, str]]]]:
    """Every proxy's enabled flag and toxics (type, stream, attributes), names left out."""
    return {link.id.name: (link.enabled, sorted((t.type, t.stream.value, json.dumps(dict(t.attributes), sort_keys=True))
                                                for t in link.toxics()))
            for link in cluster.links()}


@pytest.mark.parametrize("suite_fault", [
    lambda c: partition(c, isolate="leader", mode="refused"),
    lambda c: partition(c, isolate="n3", mode="blackhole"),
    lambda c: partition(c, isolate="leader", mode="refused", include_client=True),
    lambda c: partition(c, link=("n1", "n2"), mode="refused"),
    lambda c: partition(c, link=("leader", "n3"), mode="blackhole", direction="requests"),
    lambda c: link_latency(c, "leader", "n1", latency_ms=40, jitter_ms=20),
], ids=["isolate-leader-refused", "isolate-blackhole", "isolate-with-clients", "cut-link-refused",
        "cut-link-requests-blackhole", "latency"])
def test_every_network_fault_a_suite_uses_replays_from_its_record(tmp_path: Path, suite_fault: Any) -> None:
    """The suites' network faults are catalog faults: the ``fault`` event alone (name, params with
    the resolved groups / link, targets) rebuilds through the catalog into the same proxy
    operations, on a cluster whose leader is now another node (so nothing is resolved again)."""
    first = FakeCluster(tmp_path / "a")
    with suite_fault(first):
        cut = _proxy_state(first)
    (event, _) = first.events()
    found = entry(event["fault"])
    params = {k: v for k, v in event["params"].items() if k in found.params}
    fault = build_fault(event["fault"], replay_params(event["fault"], params, event["params"], event["targets"]))
    second = FakeCluster(tmp_path / "b")
    second.leader = "n3"
    record = fault.inject(second)  # type: ignore[arg-type]
    assert _proxy_state(second) == cut
    assert (record.fault, list(record.targets)) == (event["fault"], event["targets"])
    fault.heal(second)  # type: ignore[arg-type]


def test_refused_isolate_of_the_leader_records_who_and_term_and_heals(fake: FakeCluster) -> None:
    with partition(fake, isolate="leader", mode="refused") as record:  # type: ignore[arg-type]
        assert record.targets == ("n2",) and record.term == 5
        assert not fake.link("n1", "n2").enabled and not fake.link("n2", "n3").enabled
        assert fake.link("n1", "n3").enabled and fake.client_link("n2").enabled
    assert all(link.enabled for link in fake.links())
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


def _ingress(nodes: tuple[str, ...]) -> Topology:
    """etcd's local-backend topology: one ``peers->n`` proxy per destination, shared by its peers."""
    listen = {n: MemberAddresses(f"127.0.0.1:{8000 + i}", f"127.0.0.1:{7000 + i}") for i, n in enumerate(nodes)}
    names = proxy_names(nodes, ProxyShape.INGRESS_PER_DESTINATION)
    return plan_topology(nodes, ProxyShape.INGRESS_PER_DESTINATION, listen,
                         {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(names)})


def test_link_faults_the_proxies_cannot_express_are_unavailable_before_injection(tmp_path: Path) -> None:
    """On ingress proxies (etcd, local backend) isolating a node or cutting/slowing one directed
    link would cut other peers' traffic too: the availability check says so (the daemon refuses
    the fault with it) instead of the fault being tried and refused at injection. Shapes whose
    every touched proxy is wholly cut stay available, as do all cuts on per-link proxies."""
    cluster = FakeCluster(tmp_path, n=3)
    per_link = [build_fault(name, params) for name, params in (
        ("isolate", {"target": "leader"}), ("cut-link", {"src": "n1", "dst": "n2"}),
        ("latency", {"src": "one", "dst": "leader", "latency_ms": 10}), ("halves", {}))]
    assert [f.available(cluster) for f in per_link] == [None] * 4  # type: ignore[arg-type]
    cluster.topology = _ingress(cluster.nodes)
    before = cluster.rng("nemesis").getstate()
    for fault in (build_fault("isolate", {"target": "one"}), build_fault("isolate", {"target": "n3"}),
                  build_fault("cut-link", {"src": "leader", "dst": "one"}),
                  build_fault("latency", {"src": "n1", "dst": "n2", "latency_ms": 10}),
                  build_fault("majority-minority", {})):
        reason = fault.available(cluster)  # type: ignore[arg-type]
        assert reason is not None and "proxy peers->" in reason and "would also cut" in reason, (fault.name, reason)
    assert cluster.rng("nemesis").getstate() == before  # the check draws nothing from the run's rng
    assert "drawn at injection" in str(build_fault("isolate", {"target": "leader"}).available(cluster))  # type: ignore[arg-type]
    assert "drawn" not in str(build_fault("isolate", {"target": "n3"}).available(cluster))  # type: ignore[arg-type]
    # n3's traffic to n1 crosses peers->n1, which carries n2's too: even one way it is unavailable...
    assert build_fault("one-way", {"src": "n3", "dst": "n1"}).available(cluster) is not None  # type: ignore[arg-type]
    # ...while two nodes cut from each other both ways touch proxies carrying only them.
    two = FakeCluster(tmp_path / "two", n=2)
    two.topology = _ingress(two.nodes)
    assert build_fault("isolate", {"target": "n1"}).available(two) is None  # type: ignore[arg-type]
    assert build_fault("cut-link", {"src": "n1", "dst": "n2"}).available(two) is None  # type: ignore[arg-type]


def test_unavailable_fault_raises_fault_unavailable(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, n=2)
    with pytest.raises(FaultUnavailable, match="minority"), partition(cluster, isolate="minority"):  # type: ignore[arg-type]
        pass


# ---- did the fault bite? (heal events carry vacuous/evidence, from the proxies' byte counters) ----


def _heal(cluster: FakeCluster) -> dict[str, Any]:
    heals = [e for e in cluster.events() if e["kind"] == "heal"]
    assert len(heals) == 1, heals
    return heals[0]


def test_refused_isolate_bites_when_the_leader_sends_across_it(fake: FakeCluster) -> None:
    """B1 heartbeats: the leader keeps sending an isolated follower requests; its own counters say so."""
    with partition(fake, isolate="n1", mode="refused"):  # type: ignore[arg-type]
        fake.replicate("n1", requests=3, replies=0)
    heal = _heal(fake)
    assert heal["vacuous"] is False, heal
    assert "n2 (leader, term 5) sent n1 3 UpdateConsensus request(s) (n2->n1 disabled)" in heal["evidence"]
    assert heal["params"]["target"] == "n1" and heal["params"]["mode"] == "refused"
    assert heal["bite"]["nodes"]["n2"]["heal"]["peers"]["n1"]["sent"] == 3  # the evidence is recorded
    assert all(link.enabled for link in fake.links())


def test_refused_isolate_of_a_node_nobody_talked_to_is_vacuous(fake: FakeCluster) -> None:
    with partition(fake, isolate="n3", mode="refused"):  # type: ignore[arg-type]
        pass
    heal = _heal(fake)
    assert heal["vacuous"] is True and heal["evidence"].startswith("nobody sent across the cut in "), heal
    assert "n2 led term 5 and sent n3 nothing" in heal["evidence"]


def test_blackhole_cut_bites_when_the_source_sends_into_it(fake: FakeCluster) -> None:
    with partition(fake, link=("n2", "n3"), mode="blackhole", direction="requests") as record:  # type: ignore[arg-type]
        assert record.params["links"] == ["n2->n3"] and record.params["direction"] == "requests"
        fake.send("n2->n3", Stream.UPSTREAM, 64, 0)
        fake.replicate("n3", requests=2, replies=0)
    heal = _heal(fake)
    assert heal["vacuous"] is False, heal
    assert heal["evidence"] == "n2 (leader, term 5) sent n3 2 UpdateConsensus request(s) (n2->n3 cut upstream)"
    assert heal["bite"]["links"]["n2->n3"]["bytes"]["upstream"] == [64, 0]
    assert fake.link("n2", "n3").toxics() == []


def test_latency_bites_when_bytes_go_through_the_toxic(fake: FakeCluster) -> None:
    """A connection that closed while the toxic was on: Toxiproxy counted its bytes."""
    with link_latency(fake, "n1", "n3", latency_ms=50, direction="replies") as record:  # type: ignore[arg-type]
        # The old LinkLatency record, still (the catalog's toxic adds ``toxicity``).
        assert {"src", "dst", "links", "latency_ms", "jitter_ms", "direction", "drawn_ms"} <= set(record.params)
        assert record.fault == "latency" and record.params["drawn_ms"] == {"downstream": 50}
        fake.send("n1->n3", Stream.DOWNSTREAM, 10, 10)
    heal = _heal(fake)
    assert heal["vacuous"] is False, heal
    assert heal["evidence"] == "n1->n3 downstream: 10 B in, 10 B out"


def test_latency_on_a_busy_leader_link_bites_by_the_leaders_counters(fake: FakeCluster) -> None:
    """The leader's connection to n1 stays open, so Toxiproxy counts no bytes: the leader's
    per-peer counters show the requests (and the replies) that went through the toxic."""
    fake.replicate("n1", 40, 40)  # before the fault: not counted
    with link_latency(fake, "n2", "n1", latency_ms=50):  # type: ignore[arg-type]
        fake.replicate("n1", 7, 6)
    heal = _heal(fake)
    assert heal["vacuous"] is False, heal
    assert heal["evidence"] == ("n2 sent 7 UpdateConsensus requests to n1 across the toxic; "
                                "n2 got 6 UpdateConsensus replies from n1 across the toxic"), heal


def test_latency_on_the_reply_stream_counts_the_leaders_replies_only(tmp_path: Path) -> None:
    for direction, replies, bit in (("replies", 3, True), ("replies", 0, False), ("requests", 0, True)):
        cluster = FakeCluster(tmp_path / f"{direction}{replies}")
        with link_latency(cluster, "n2", "n3", latency_ms=50, direction=direction):  # type: ignore[arg-type]
            cluster.replicate("n3", 2, replies)
        heal = _heal(cluster)
        assert heal["vacuous"] is (not bit), (direction, replies, heal)
        assert ("3 UpdateConsensus replies from n3" in heal["evidence"]) is (replies == 3), heal


def test_latency_on_a_follower_to_follower_link_without_bytes_cannot_tell(fake: FakeCluster) -> None:
    """n1 is a follower: no per-peer counters, and open connections show no bytes."""
    with link_latency(fake, "n1", "n3", latency_ms=50):  # type: ignore[arg-type]
        fake.replicate("n1", 5, 5)  # the leader's traffic to n1 is another link
    heal = _heal(fake)
    assert heal["vacuous"] is None, heal
    assert heal["evidence"].startswith("cannot tell: Toxiproxy counts bytes when a connection closes "
                                       "and n1 keeps no per-peer counters"), heal
    assert "n1->n3 upstream: 0 B in, 0 B out" in heal["evidence"]


def test_latency_on_a_leader_link_whose_counters_stay_flat_is_vacuous(fake: FakeCluster) -> None:
    fake.replicate("n3", 9, 9)
    with link_latency(fake, "n2", "n3", latency_ms=50):  # type: ignore[arg-type]
        fake.replicate("n1", 5, 5)  # another peer
    heal = _heal(fake)
    assert heal["vacuous"] is True, heal
    assert heal["evidence"] == ("no traffic through the toxic: n2 led term 5 and its counters for n3 did not "
                                "move (9 requests sent, 9 replies); n2->n3 upstream: 0 B in, 0 B out; "
                                "n2->n3 downstream: 0 B in, 0 B out"), heal


def test_a_new_term_during_a_latency_cannot_tell(fake: FakeCluster) -> None:
    """The leader rebuilds its peers every election: counters of two terms are not comparable."""
    with link_latency(fake, "n2", "n3", latency_ms=50):  # type: ignore[arg-type]
        fake.term = 6
    heal = _heal(fake)
    assert heal["vacuous"] is None and "new term (5 -> 6)" in heal["evidence"], heal


def test_without_toxiproxy_metrics_a_cut_is_judged_by_the_nodes(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, metrics=False)
    with partition(cluster, isolate="n1"):  # type: ignore[arg-type]
        cluster.replicate("n1", requests=1, replies=0)
    heal = _heal(cluster)
    assert heal["vacuous"] is False and heal["bite"]["links"]["n2->n1"]["bytes"] is None, heal


def test_a_paused_source_makes_a_cut_cannot_tell(fake: FakeCluster) -> None:
    """n1 cannot be read at heal: whether it called an election across the cut is not known."""
    with partition(fake, link=("n1", "n3"), mode="blackhole"):  # type: ignore[arg-type]
        fake.paused.add("n1")
    fake.paused.clear()
    heal = _heal(fake)
    assert heal["vacuous"] is None and "n1's /status could not be read at heal" in heal["evidence"], heal


def test_a_cut_that_is_not_in_place_fails_injection_and_is_undone(fake: FakeCluster) -> None:
    fake.link("n3", "n1").ignore_disable = True
    with pytest.raises(FaultError, match=r"not in place after injecting: n3->n1 still enabled"), \
            partition(fake, isolate="n1"):  # type: ignore[arg-type]
        pass
    (fault,) = [e for e in fake.events() if e["kind"] == "fault"]
    assert "not in place" in fault["params"]["error"]
    assert all(link.enabled for name, link in fake.link_map.items() if name != "n3->n1")


# ---- flags re-applied after a restart ----------------------------------------------------------

CRASH_FLAG = "fault_crash_on_leader_request_fraction"


def _crash_and_restart(cluster: FakeCluster, node: str) -> None:
    cluster.kill(node)  # as an injected crash: the node is gone ...
    cluster.start(node)  # ... and the supervisor starts it again, with the spec's flags


def test_flag_fault_reapplies_its_flags_to_a_restarted_node(fake: FakeCluster) -> None:
    fault = crash_on_leader_request(0.05, "followers", reapply_on_restart=True)
    record = fault.inject(fake)  # type: ignore[arg-type]
    assert record.params["reapply_on_restart"] is True and record.targets == ("n1", "n3")
    _crash_and_restart(fake, "n1")
    wait_until(lambda: fake.flag_values["n1"][CRASH_FLAG] == 0.05, what="n1 re-armed",
               strategy=WaitStrategy(5.0, 0.005))
    _crash_and_restart(fake, "n2")  # not hit by the fault: left alone
    fault.heal(fake)  # type: ignore[arg-type]
    assert {n: v[CRASH_FLAG] for n, v in fake.flag_values.items()} == {"n1": 0.0, "n2": 0.0, "n3": 0.0}
    heal = _heal(fake)
    assert heal["reapplied"] == ["n1"] and "reapply_errors" not in heal
    assert fake.start_listeners == []
    _crash_and_restart(fake, "n3")  # after the heal: nothing is re-armed
    assert fake.flag_values["n3"][CRASH_FLAG] == 0.0


def test_the_catalogs_crash_flags_re_arm_a_restarted_node_for_their_whole_window(fake: FakeCluster) -> None:
    """A schedule's crash-on-leader-request holds for its window, as kuduraft's crashy-nodes test
    keeps the flag across restarts; a spec can still ask for a single shot."""
    fault = build_fault("crash-on-leader-request", {"fraction": 0.05})
    assert fault.inject(fake).params["reapply_on_restart"] is True  # type: ignore[arg-type]
    _crash_and_restart(fake, "n2")
    wait_until(lambda: fake.flag_values["n2"][CRASH_FLAG] == 0.05, what="n2 re-armed",
               strategy=WaitStrategy(5.0, 0.005))
    fault.heal(fake)  # type: ignore[arg-type]
    assert _heal(fake)["reapplied"] == ["n2"]
    once = build_fault("crash-after-leader-request", {"fraction": 0.05, "reapply_on_restart": False})
    assert "reapply_on_restart" not in once.inject(fake).params  # type: ignore[arg-type]
    once.heal(fake)  # type: ignore[arg-type]


def test_flag_fault_leaves_a_restarted_node_alone_by_default(fake: FakeCluster) -> None:
    fault = crash_on_leader_request(0.05)
    assert "reapply_on_restart" not in fault.inject(fake).params  # type: ignore[arg-type]
    assert fake.start_listeners == []
    _crash_and_restart(fake, "n1")
    assert fake.flag_values["n1"][CRASH_FLAG] == 0.0
    fault.heal(fake)  # type: ignore[arg-type]
    assert "reapplied" not in _heal(fake)
    with pytest.raises(FaultError, match="reapply_on_restart must be a bool"):
        FlagFault({CRASH_FLAG: 0.1}, reapply_on_restart="yes")  # type: ignore[arg-type]


def test_bytes_of_connections_a_cut_closed_are_no_proof_of_an_attempt(fake: FakeCluster) -> None:
    """Toxiproxy counts a connection's bytes when it closes (disabling the proxy closes it), so
    bytes that show up during the cut may all predate it: the followers' counters decide."""
    with partition(fake, link=("n1", "n3")):  # type: ignore[arg-type]
        fake.send("n1->n3", Stream.UPSTREAM, 300, 300)
    heal = _heal(fake)
    assert heal["vacuous"] is True, heal
    assert "n1 followed throughout and started no election (n1->n3 disabled)" in heal["evidence"]
