"""CLI usage errors: one line on stderr, exit code 254, no traceback, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.entry.cli import main


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAFTCHAOS_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("argv,message", [
    (["run", "missing.toml"], "cannot read"),
    (["reproduce", "missing.toml"], "cannot read"),
    (["replay", "missing-dir"], "is not a directory"),
    (["up", "--flag", "oops"], "name=value"),
    (["up", "--profile", "slow"], "--profile: must be one of"),
    (["up", "--nodes", "9"], "Invalid value for '--nodes'"),
    (["status"], "no cluster is up"),
    (["down"], "no cluster is up"),
    (["fault", "add", "nope"], "unknown fault"),
    (["fault", "add", "latency", "-p", "latency_ms=-3"], "latency_ms"),
    (["fault", "heal"], "give a slot or --all"),
    (["fault", "add", "pause"], "no cluster is up"),
    (["up", "--backend", "podman"], "Invalid value for '--backend'"),
    (["run", "--backend", "vm", "missing.toml"], "Invalid value for '--backend'"),
    (["reproduce", "missing.toml", "--backend", ""], "Invalid value for '--backend'"),
    (["replay", "missing-dir", "--backend", "k8s"], "Invalid value for '--backend'"),
])
def test_bad_input_is_one_line_and_exit_254(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 254
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_reproduce_needs_symptoms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("[[timeline]]\nat_s = 1\nfault = 'pause'\n")
    assert main(["reproduce", str(path), "--times", "1"]) == 254
    assert "no [[expect]] symptom" in capsys.readouterr().err


def test_fault_list_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fault", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("isolate", "majorities-ring", "slow-close", "limit-data", "wal-latency", "flag"):
        assert name in out


def test_replay_without_spec_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path)]) == 254
    err = capsys.readouterr().err.strip()
    assert "not a run directory" in err and len(err.splitlines()) == 1


def test_docker_without_a_daemon_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--backend docker`` when no daemon can answer: the daemon's reason on one line, exit 3, nothing started."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing listens: ensure_daemon gives up at once
    path = tmp_path / "s.toml"
    path.write_text("[cluster]\nbackend = 'docker'\n[[timeline]]\nat_s = 1\nfault = 'pause'\n")
    for argv in (["up", "--backend", "docker"], ["run", str(path)], ["run", "--backend", "DOCKER", str(path)]):
        assert main(argv) == 3, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("raftchaos: no Docker daemon: DOCKER_HOST=tcp://127.0.0.1:9 does not answer"), err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "home" / "up" / "state.json").exists()
