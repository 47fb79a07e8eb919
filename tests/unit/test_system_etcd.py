"""harness/systems/etcd: the member's flags, the gateway's answers mapped to observations and outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, HarnessError, NodeUnreachable
from harness.nodeclient import Outcome
from harness.systems.base import (
    AppendKvClient,
    Capability,
    Image,
    KvClient,
    LaunchContext,
    Observer,
    Role,
    System,
    SystemUnavailable,
)
from harness.systems.etcd import EtcdSystem, cluster_token
from harness.systems.etcd.gateway import EtcdKv, EtcdObserver, decode_value, encode_value, observation
from harness.systems.topology import (
    MemberAddresses,
    ProxyShape,
    by_name_proxy_listen,
    plan_topology,
    proxy_names,
)

NODES = ("n1", "n2", "n3")
FAKE_BINARY = Path("/bin/true")


def _ctx(node_id: str = "n2", shape: ProxyShape = ProxyShape.INGRESS_PER_DESTINATION) -> LaunchContext:
    listen = {n: MemberAddresses(api=f"127.0.0.1:2{i}00", peer=f"127.0.0.1:2{i}01") for i, n in enumerate(NODES, 1)}
    proxies = {name: f"127.0.0.1:{30000 + i}" for i, name in enumerate(proxy_names(NODES, shape))}
    topo = plan_topology(NODES, shape, listen, proxies)
    return LaunchContext("20261207T174400-test_x-7", node_id, 1, Path("/run/data") / node_id, Path("/run"),
                         listen, topo)


def _docker_ctx(node_id: str = "n2", nodes: tuple[str, ...] = NODES) -> LaunchContext:
    """The Docker backend's layout: members on their container IPs, proxies by name."""
    listen = {n: MemberAddresses(api=f"10.1.0.{i}:8000", peer=f"10.1.0.{i}:7000") for i, n in enumerate(nodes, 10)}
    hosts = {n: f"10.2.{i}.2" for i, n in enumerate(nodes, 1)}
    topo = plan_topology(nodes, ProxyShape.PER_DIRECTED_LINK_BY_NAME, listen,
                         by_name_proxy_listen(nodes, hosts, "10.1.0.2", 20001))
    return LaunchContext("run-7", node_id, 1, Path("/run/data") / node_id, Path("/run"), listen, topo,
                         backend="docker")


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1, 2)}


def test_launch_spec_listens_on_its_own_ports_and_advertises_its_ingress_proxy() -> None:
    launch = EtcdSystem(heartbeat_ms=50, election_ms=500, binary=FAKE_BINARY).launch_spec(_ctx("n2"))
    assert launch.argv[0] == str(FAKE_BINARY)
    flags = _flags(launch.argv)
    assert flags["--name"] == "n2" and flags["--data-dir"] == "/run/data/n2"
    assert flags["--listen-client-urls"] == flags["--advertise-client-urls"] == "http://127.0.0.1:2200"
    assert flags["--listen-peer-urls"] == "http://127.0.0.1:2201"
    assert flags["--initial-advertise-peer-urls"] == "http://127.0.0.1:30001"  # peers->n2
    assert flags["--initial-cluster"] == ("n1=http://127.0.0.1:30000,n2=http://127.0.0.1:30001,"
                                          "n3=http://127.0.0.1:30002")
    assert flags["--initial-cluster-state"] == "new"
    assert flags["--initial-cluster-token"] == "raftchaos-20261207T174400-test_x-7"
    assert (flags["--heartbeat-interval"], flags["--election-timeout"]) == ("50", "500")
    assert launch.listen.peer == "127.0.0.1:2201" and launch.files == {}
    assert all(":" in u and "0.0.0.0" not in u for u in (flags["--listen-client-urls"], flags["--listen-peer-urls"]))


def test_cluster_token_is_safe_and_differs_per_run() -> None:
    assert cluster_token("a b/c") == "raftchaos-a_b_c"
    assert cluster_token("run-1") != cluster_token("run-2")


def test_etcd_refuses_the_per_link_shape_it_cannot_name_with_a_reason() -> None:
    """kuduraft's per-link layout gives each source a different address for one peer; etcd
    advertises one URL per member, so it runs only where that URL can name every proxy."""
    system = EtcdSystem(binary=FAKE_BINARY)
    with pytest.raises(SystemUnavailable, match="ingress or by-name"):
        system.launch_spec(_ctx(shape=ProxyShape.PER_DIRECTED_LINK))
    with pytest.raises(SystemUnavailable, match="no proxy layout for the k8s backend"):
        system.proxy_shape("k8s")
    assert system.proxy_shape("local") is ProxyShape.INGRESS_PER_DESTINATION
    assert system.proxy_shape("docker") is ProxyShape.PER_DIRECTED_LINK_BY_NAME


def test_on_docker_every_member_advertises_its_name_which_each_resolver_maps_to_its_own_proxy() -> None:
    ctx = _docker_ctx("n2")
    launch = EtcdSystem(binary=FAKE_BINARY).launch_spec(ctx)
    flags = _flags(launch.argv)
    assert flags["--listen-peer-urls"] == "http://10.1.0.11:7000"
    assert flags["--listen-client-urls"] == "http://10.1.0.11:8000"
    assert flags["--initial-advertise-peer-urls"] == "http://n2:20002"
    assert flags["--initial-cluster"] == "n1=http://n1:20001,n2=http://n2:20002,n3=http://n3:20003"
    assert launch.image is Image.HOST_BINARY and launch.argv[0] == str(FAKE_BINARY)
    hosts = ctx.topology.peer_hosts
    assert hosts is not None
    assert f"{hosts['n2']['n1']}:20001" == ctx.topology.carrier("n2", "n1").listen  # n2 -> n1 only
    assert f"{hosts['n3']['n1']}:20001" == ctx.topology.carrier("n3", "n1").listen  # n3 -> n1 only


def test_a_one_member_cluster_on_docker_advertises_its_own_peer_address() -> None:
    flags = _flags(EtcdSystem(binary=FAKE_BINARY).launch_spec(_docker_ctx("n1", ("n1",))).argv)
    assert flags["--initial-advertise-peer-urls"] == "http://10.1.0.10:7000"


def test_a_missing_binary_is_one_line_naming_the_package(tmp_path: Path) -> None:
    with pytest.raises(SystemUnavailable, match="etcd-server") as err:
        EtcdSystem(binary=tmp_path / "etcd").launch_spec(_ctx())
    assert "\n" not in str(err.value)


def test_timeouts_etcd_rejects_are_refused_before_start() -> None:
    with pytest.raises(ConfigError, match="5 x heartbeat"):
        EtcdSystem(heartbeat_ms=100, election_ms=400)


def test_capabilities_are_what_etcd_has() -> None:
    system = EtcdSystem(binary=FAKE_BINARY)
    assert isinstance(system, System)
    assert system.capabilities("local") == {Capability.INGRESS_PROXIES, Capability.PAUSE, Capability.KILL,
                                            Capability.KV_APPEND}
    for lacking in (Capability.RUNTIME_FLAGS, Capability.PER_PEER_EVIDENCE, Capability.TIMING_PROFILE,
                    Capability.FAULT_EXIT_STATUSES, Capability.PER_DIRECTED_LINK_PROXIES):
        assert lacking not in system.capabilities("local")
    assert system.capabilities("docker") == {Capability.PER_DIRECTED_LINK_PROXIES, Capability.PAUSE,
                                             Capability.KILL, Capability.KV_APPEND}
    assert system.fault_exit_statuses() == {}


# Answers recorded from etcd 3.4.23's gateway (one member, then edited to three).
STATUS = {"header": {"cluster_id": "151", "member_id": "222", "revision": "1", "raft_term": "2"},
          "version": "3.4.23", "leader": "111", "raftIndex": "9", "raftTerm": "3", "raftAppliedIndex": "8"}
MEMBERS = {"members": [{"ID": "111", "name": "n1"}, {"ID": "222", "name": "n2"}, {"ID": "333", "name": "n3"}]}
NAMES = {m["ID"]: m["name"] for m in MEMBERS["members"]}


def test_status_maps_to_an_observation() -> None:
    obs = observation("n2", STATUS, NAMES)
    assert (obs.role, obs.term, obs.leader, obs.commit_index, obs.applied_index) == (Role.FOLLOWER, 3, "n1", 9, 8)
    assert obs.members == NODES and obs.peers is None
    leader = observation("n1", {**STATUS, "header": {"member_id": "111"}}, NAMES)
    assert leader.is_leader and leader.leader == "n1"
    alone = observation("n2", {**STATUS, "leader": "0"}, NAMES)
    assert alone.role is Role.UNKNOWN and alone.leader is None


def test_unreadable_status_is_one_line() -> None:
    with pytest.raises(HarnessError, match="n2 /v3/maintenance/status: unreadable") as err:
        observation("n2", {"leader": "1"}, NAMES)
    assert "\n" not in str(err.value)


class FakeGateway:
    """Answers by path (a list: one per call, in order); an exception instance is raised instead."""

    node_id = "n1"

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, Any]] = []

    def post(self, path: str, body: Mapping[str, Any], timeout_s: float | None = None) -> tuple[int, Any]:
        self.calls.append((path, body))
        answer = self.answers[path]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        status, doc = self.post(path, body)
        if status != 200:
            raise HarnessError(f"{path}: {status}")
        return dict(doc)


def test_observer_reads_the_member_list_once_and_again_for_an_unknown_leader() -> None:
    gw = FakeGateway({"/v3/maintenance/status": (200, STATUS), "/v3/cluster/member/list": (200, MEMBERS)})
    observer = EtcdObserver(gw)  # type: ignore[arg-type]
    assert isinstance(observer, Observer)
    assert observer.observe().leader == "n1"
    assert observer.observe().leader == "n1"
    assert [p for p, _ in gw.calls].count("/v3/cluster/member/list") == 1
    gw.answers["/v3/maintenance/status"] = (200, {**STATUS, "leader": "444"})
    assert observer.observe().leader is None  # still unknown after a re-read: said, not guessed
    assert [p for p, _ in gw.calls].count("/v3/cluster/member/list") == 2


def _kv(path: str, answer: Any) -> tuple[EtcdKv, FakeGateway]:
    gw = FakeGateway({path: answer})
    return EtcdKv(gw), gw  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 17, "x", None, [1, "a"], {"k": 1}])
def test_values_round_trip_through_the_stored_json_text(value: Any) -> None:
    assert decode_value(encode_value(value)) == value


def test_get_put_and_cas_bodies_and_answers() -> None:
    kv, gw = _kv("/v3/kv/put", (200, {"header": {"revision": "5"}}))
    assert isinstance(kv, KvClient)
    result = kv.put("k", 3)
    assert result.outcome is Outcome.OK and result.body == {"value": 3, "revision": 5}
    assert gw.calls[0][1] == {"key": "aw==", "value": encode_value(3)}

    kv, gw = _kv("/v3/kv/range", (200, {"header": {"revision": "5"}, "kvs": [{"value": encode_value(3)}]}))
    assert kv.get("k").body["value"] == 3
    kv, gw = _kv("/v3/kv/range", (200, {"header": {"revision": "5"}}))
    assert kv.get("k").body["value"] is None

    kv, gw = _kv("/v3/kv/txn", (200, {"header": {"revision": "6"}, "succeeded": True}))
    swapped = kv.cas("k", 3, 4)
    assert swapped.outcome is Outcome.OK and swapped.body["swapped"] is True and swapped.body["value"] == 4
    compare = gw.calls[0][1]["compare"][0]
    assert compare == {"key": "aw==", "target": "VALUE", "result": "EQUAL", "value": encode_value(3)}

    lost = {"header": {"revision": "6"}, "responses": [{"response_range": {"kvs": [{"value": encode_value(9)}]}}]}
    kv, gw = _kv("/v3/kv/txn", (200, lost))
    missed = kv.cas("k", None, 4)
    assert missed.outcome is Outcome.OK and missed.body["swapped"] is False and missed.body["value"] == 9
    assert gw.calls[0][1]["compare"][0]["target"] == "VERSION"  # None: the key must be absent


@pytest.mark.parametrize(("answer", "outcome", "error"), [
    (NodeUnreachable("t", "timeout"), Outcome.INFO, "timeout"),
    (NodeUnreachable("r", "reset"), Outcome.INFO, "connection_reset"),
    (NodeUnreachable("c", "refused"), Outcome.FAIL, "connection_refused"),
    ((503, {"error": "etcdserver: request timed out", "code": 14}), Outcome.INFO, "etcdserver: request timed out"),
    ((503, {"error": "etcdserver: leader changed", "code": 14}), Outcome.INFO, "etcdserver: leader changed"),
    ((429, {"error": "etcdserver: too many requests", "code": 8}), Outcome.FAIL, "etcdserver: too many requests"),
    ((400, {"error": "bad", "message": "invalid character", "code": 3}), Outcome.FAIL, "invalid character"),
    ((200, {"header": {}}), Outcome.INFO, None),  # executed, answer unreadable: outcome unknown
])
def test_errors_map_to_the_harness_outcomes(answer: Any, outcome: Outcome, error: str | None) -> None:
    kv, _ = _kv("/v3/kv/put", answer)
    result = kv.put("k", 1)
    assert result.outcome is outcome
    if error is not None:
        assert result.error == error


def _range(value: Any, mod: str) -> tuple[int, dict[str, Any]]:
    return 200, {"header": {"revision": mod}, "kvs": [{"value": encode_value(value), "mod_revision": mod}]}


def test_append_is_a_txn_on_the_mod_revision_retried_when_another_writer_got_in() -> None:
    gw = FakeGateway({"/v3/kv/range": [_range("a", "4"), _range("ab", "5")],
                      "/v3/kv/txn": [(200, {"header": {"revision": "5"}}), (200, {"header": {"revision": "6"},
                                                                                   "succeeded": True})]})
    kv = EtcdKv(gw)  # type: ignore[arg-type]
    assert isinstance(kv, AppendKvClient)
    result = kv.append("k", "c")
    assert result.outcome is Outcome.OK and result.body == {"value": "abc"}
    txns = [body for path, body in gw.calls if path == "/v3/kv/txn"]
    assert [t["compare"][0]["mod_revision"] for t in txns] == ["4", "5"]
    assert decode_value(txns[1]["success"][0]["request_put"]["value"]) == "abc"


def test_append_to_an_absent_key_requires_it_still_absent() -> None:
    gw = FakeGateway({"/v3/kv/range": (200, {"header": {"revision": "1"}}),
                      "/v3/kv/txn": (200, {"header": {"revision": "2"}, "succeeded": True})})
    result = EtcdKv(gw).append("k", "x")  # type: ignore[arg-type]
    assert result.outcome is Outcome.OK and result.body == {"value": "x"}
    assert gw.calls[1][1]["compare"][0] == {"key": "aw==", "target": "VERSION", "result": "EQUAL", "version": "0"}


@pytest.mark.parametrize(("ranges", "txn", "outcome", "error"), [
    (NodeUnreachable("t", "timeout"), None, Outcome.FAIL, "timeout"),  # nothing of ours was written
    (_range(7, "3"), None, Outcome.FAIL, "apply_error"),  # not a string, as the node's 409
    (_range("a", "3"), NodeUnreachable("t", "timeout"), Outcome.INFO, "timeout"),
    (_range("a", "3"), (200, {"header": {"revision": "4"}}), Outcome.FAIL, "append_contended"),
])
def test_append_outcomes(ranges: Any, txn: Any, outcome: Outcome, error: str) -> None:
    gw = FakeGateway({"/v3/kv/range": ranges, "/v3/kv/txn": txn})
    result = EtcdKv(gw).append("k", "x")  # type: ignore[arg-type]
    assert (result.outcome, result.error) == (outcome, error)
