"""``python -m nodes`` refuses bad flags and cluster files with exit 2 and ONE line on stderr, no traceback.

Each case runs the real entry point as a subprocess; all of them exit before opening any socket.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from consensus_fixture import run_cli, write_cluster

from harness.ports import free_ports
from nodes.flags import FLAG_DEFS, REFUSED_FLAGS

REPO = Path(__file__).resolve().parents[2]

GOOD_NODES = {u: {"rpc": "127.0.0.1:0", "http": "127.0.0.1:0"} for u in ("n1", "n2", "n3")}


def nodes_with(uuid: str, info: dict[str, Any] | None) -> dict[str, Any]:
    nodes = json.loads(json.dumps(GOOD_NODES))
    if info is None:
        del nodes[uuid]
    else:
        nodes[uuid] = info
    return {"nodes": nodes}


def assert_one_line_exit_2(proc: Any, *texts: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nodes: ")
    for text in texts:
        assert text in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("flag,texts", [
    ("bogus_flag=1", ("unknown flag", "bogus_flag")),
    ("raft_heartbeat_interval_ms=fast", ("raft_heartbeat_interval_ms", "expected int")),
    ("leader_failure_exp_backoff_max_delta_ms=1000", ("leader_failure_exp_backoff_max_delta_ms", "1500")),
])
def test_bad_flag_exits_2_with_one_line(tmp_path: Path, flag: str, texts: tuple[str, ...]) -> None:
    """Unknown flag, bad value, broken timing invariant."""
    proc = run_cli(["--config", str(write_cluster(tmp_path / "c.json")), "--id", "n1", "--data",
                    str(tmp_path / "d"), "--flag", flag])
    assert_one_line_exit_2(proc, *texts)
    assert not (tmp_path / "d").exists()  # refused before touching storage


@pytest.mark.parametrize("doc,texts", [
    ({"nodes": {}}, ("'nodes' is empty",)),
    (dict(nodes_with("n2", {"http": "127.0.0.1:0"}), topology={"n3": "n2"}), ("nodes.n2.rpc", "host:port")),
    (nodes_with("n2", {"rpc": "127.0.0.1:port", "http": "127.0.0.1:0"}), ("nodes.n2.rpc", "not a number")),
    (nodes_with("n3", {"rpc": "0.0.0.0:7000", "http": "127.0.0.1:0"}), ("nodes.n3.rpc", "all interfaces")),
    (dict(nodes_with("n1", GOOD_NODES["n1"]), topology={"n2": "n3", "n3": "n2"}), ("topology", "cycle")),
    (dict(nodes_with("n1", GOOD_NODES["n1"]), topology={"n2": "n4"}), ("topology", "unknown node")),
])
def test_bad_cluster_file_exits_2_with_one_line(tmp_path: Path, doc: dict[str, Any],
                                                texts: tuple[str, ...]) -> None:
    """Missing node / address, bad address, all-interfaces listen address, topology cycle or unknown node."""
    proc = run_cli(["--config", str(write_cluster(tmp_path / "c.json", doc)), "--id", "n1", "--data",
                    str(tmp_path / "d")])
    assert_one_line_exit_2(proc, *texts)


def test_cluster_file_not_json_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{nodes: ")
    assert_one_line_exit_2(run_cli(["--config", str(bad), "--id", "n1", "--data", str(tmp_path / "d")]),
                           "is not JSON")
    assert_one_line_exit_2(run_cli(["--config", str(tmp_path / "nope.json"), "--id", "n1", "--data",
                                    str(tmp_path / "d")]), "cannot read cluster file")


def test_id_not_in_cluster_file_exits_2_naming_members(tmp_path: Path) -> None:
    proc = run_cli(["--config", str(write_cluster(tmp_path / "c.json")), "--id", "n9", "--data",
                    str(tmp_path / "d")])
    assert_one_line_exit_2(proc, "--id 'n9' is not in the cluster file", "n1, n2, n3")


def test_missing_required_argument_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = run_cli(["--config", str(write_cluster(tmp_path / "c.json")), "--data", str(tmp_path / "d")])
    assert_one_line_exit_2(proc, "--id")


@pytest.mark.parametrize("name", sorted(REFUSED_FLAGS))
def test_refused_flag_exits_2_naming_it(tmp_path: Path, name: str) -> None:
    """A kuduraft flag whose effect needs machinery the node lacks is refused by name at start, not
    accepted and ignored."""
    defaults = {"raft_enable_tombstoned_voting": "true", "evict_failed_followers": "true",
                "raft_prepare_replacement_before_eviction": "true"}
    proc = run_cli(["--config", str(write_cluster(tmp_path / "c.json")), "--id", "n1", "--data",
                    str(tmp_path / "d"), "--flag", f"{name}={defaults.get(name, '1')}"])
    assert_one_line_exit_2(proc, name, "refused")


def test_every_accepted_flag_passes_through_startup(tmp_path: Path) -> None:
    """Every flag of FLAG_DEFS, given on the command line at its default, is accepted by a node that
    then serves (its 'serving' log line) and stops cleanly on SIGTERM."""
    ports = iter(free_ports(6))
    doc = {"nodes": {u: {"rpc": f"127.0.0.1:{next(ports)}", "http": f"127.0.0.1:{next(ports)}"}
                     for u in ("n1", "n2", "n3")}}
    args = [sys.executable, "-m", "nodes", "--config", str(write_cluster(tmp_path / "c.json", doc)),
            "--id", "n1", "--data", str(tmp_path / "d"), "--seed", "7"]
    for d in FLAG_DEFS:
        args += ["--flag", f"{d.name}={str(d.default).lower() if d.kind is bool else d.default}"]
    proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        for line in proc.stderr:  # ends at EOF if the node exits instead of serving
            seen.append(line)
            if "serving rpc" in line:
                break
        assert any("serving rpc" in line for line in seen), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)  # drains stderr so the node never blocks writing its log
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
