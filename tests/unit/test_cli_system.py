"""``--system`` on the commands that build a cluster (``run``, ``reproduce``, ``up``): checked before
anything starts, recorded in the spec so ``replay`` runs the same system (issue #13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import harness.entry.cli.runs
from harness.entry.cli import main
from harness.errors import HarnessError
from harness.spec import ClusterSpec

SCENARIO = b"name = 'sys'\nduration_s = 1\n[workload]\nenabled = false\n"
FLAGGED = SCENARIO + b"[cluster.flags]\nfollower_fail_all_prepare = true\n"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAFTCHAOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _scenario(tmp_path: Path, content: bytes = SCENARIO) -> Path:
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    return path


def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a cluster was started for bad input")
    monkeypatch.setattr(harness.entry.cli.runs, "execute", boom)


def _one_line(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("raftchaos: ")
    return err


@pytest.mark.parametrize("command", ["run", "reproduce", "up"])
def test_an_unknown_system_is_one_line_listing_the_systems(command: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _no_cluster(monkeypatch)
    argv = [command, "--system", "zookeeper"] + ([str(_scenario(tmp_path))] if command != "up" else [])
    _one_line(argv, 254, "--system zookeeper: unknown system (choose from etcd, kuduraft)", capsys)


def test_node_flags_for_a_system_without_them_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _no_cluster(monkeypatch)
    path = _scenario(tmp_path, FLAGGED)
    _one_line(["run", "--system", "etcd", str(path)], 254,
              "--system etcd: node flags (follower_fail_all_prepare) are not available for system etcd", capsys)
    _one_line(["up", "--system", "etcd", "--flag", "follower_fail_all_prepare=true"], 254,
              "are not available for system etcd", capsys)


@pytest.mark.parametrize("system", [None, "etcd"])
def test_run_hands_the_chosen_system_to_the_run(system: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[ClusterSpec] = []

    def stop(spec: ClusterSpec, *_args: Any, **_kwargs: Any) -> Any:
        seen.append(spec)
        raise HarnessError("stopped before starting (test)")
    monkeypatch.setattr(harness.entry.cli.runs, "execute", stop)
    argv = ["run", str(_scenario(tmp_path)), "--seed", "7"] + (["--system", system] if system else [])
    assert main(argv) == 2  # nothing was exercised: unknown, never a verdict on the system
    assert [s.system for s in seen] == [system or "kuduraft"] and seen[0].seed == 7
    assert "stopped before starting" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "hook"), [([], True), (["--no-report"], False)])
def test_run_renders_the_report_through_the_run_s_hook(flag: list[str], hook: bool, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[Any] = []

    def stop(spec: ClusterSpec, *_args: Any, report: Any = None, **_kwargs: Any) -> Any:
        given.append(report)
        raise HarnessError("stopped before starting (test)")
    monkeypatch.setattr(harness.entry.cli.runs, "execute", stop)
    assert main(["run", str(_scenario(tmp_path)), *flag]) == 2
    assert (given[0] is not None) is hook
