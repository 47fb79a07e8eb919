"""A real pytest session over a tiny file whose test records an UNKNOWN verdict (no cluster): unknown
is visible in the terminal line, JUnit and summary.json, --raftchaos-strict fails it, bad options are
one usage error, and the stability benchmark counts it as unknown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = '''
from harness.checkers.verdict import Validity, Verdict


def test_valid(record_verdict):
    record_verdict(Verdict("probe", Validity.VALID, "saw it"))


def test_unknown(record_verdict):
    record_verdict(Verdict("bite", Validity.UNKNOWN, "the fault did not bite", {"reason": "no traffic"}))


def test_plain():
    assert True
'''


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tiny.py").write_text(TINY)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--run-dir",
                           str(tmp_path / "runs"), "--junitxml", str(tmp_path / "junit.xml"), *args, "test_tiny.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    print(proc.stdout, proc.stderr)
    return proc


def _junit(tmp_path: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    """name -> (properties, child tags other than properties)."""
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    return {c.get("name", ""): ({p.get("name", ""): p.get("value", "") for p in c.iter("property")},
                                [child.tag for child in c if child.tag != "properties"]) for c in cases}


def test_unknown_is_reported_as_unknown_everywhere(tmp_path: Path) -> None:
    proc = _pytest(tmp_path)
    assert proc.returncode == 0
    assert "2 passed, 1 unknown" in proc.stdout  # not counted as passed
    assert "UNKNOWN test_tiny.py::test_unknown [unknown] seed=None: bite: the fault did not bite" in proc.stdout
    cases = _junit(tmp_path)
    assert cases["test_unknown"] == ({"raftchaos_verdict": "unknown", "raftchaos_outcome": "unknown",
                                      "raftchaos_reasons": "bite: the fault did not bite"}, ["skipped"])
    assert cases["test_valid"] == ({"raftchaos_verdict": "valid", "raftchaos_outcome": "passed"}, [])
    assert cases["test_plain"] == ({}, [])
    doc = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert (doc["overall"], doc["exit_code"]) == ("unknown", 2)
    assert doc["counts"]["outcomes"]["unknown"] == 1 and doc["counts"]["outcomes"]["passed"] == 2
    assert [(t["nodeid"].split("::")[1], t["outcome"], t["verdict"]) for t in doc["tests"]] == [
        ("test_valid", "passed", "valid"), ("test_unknown", "unknown", "unknown"), ("test_plain", "passed", None)]


def test_strict_fails_an_unknown_test_with_its_reasons(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--raftchaos-strict")
    assert proc.returncode == 1
    assert "1 failed, 2 passed" in proc.stdout
    assert "raftchaos verdict unknown (--raftchaos-strict): bite: the fault did not bite" in proc.stdout
    props, tags = _junit(tmp_path)["test_unknown"]
    assert props["raftchaos_verdict"] == "unknown" and tags == ["failure"]
    doc = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert doc["strict"] and doc["overall"] == "unknown" and doc["pytest_exit_status"] == 1
    unknown = doc["tests"][1]
    assert unknown["failed_by_strict"] and unknown["failure"].startswith("call: raftchaos verdict unknown")


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-1"], "ERROR: --seed must be an integer in [0, 2**63), got -1"),
    (["--seed", str(2**80)], f"ERROR: --seed must be an integer in [0, 2**63), got {2**80}"),
    (["--seed", "2**80"], "--seed: invalid int value: '2**80'"),
    (["--run-dir", str(REPO / "README.md")], f"ERROR: --run-dir {REPO / 'README.md'}: is an existing file"),
])
def test_bad_options_are_one_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "test_tiny.py").write_text(TINY)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, "test_tiny.py"],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error, before any test
    assert message in proc.stderr
    assert "passed" not in proc.stdout and "failed" not in proc.stdout


def test_stability_benchmark_counts_a_tiny_run(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(TINY)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "suite_stability.py"), "--runs", "1",
                           "--target", "test_tiny.py", "--out", str(tmp_path / "out")],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=180)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0  # an unknown is not a failure
    assert "run 1: " in proc.stdout and "2 passed, 0 failed, 1 unknown, 0 skipped" in proc.stdout
    assert "run 1: seed None: bite: the fault did not bite" in proc.stdout
    assert (tmp_path / "out" / "run-01" / "summary.json").is_file()
