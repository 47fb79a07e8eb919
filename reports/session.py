"""The pytest session's machine-readable summary (``summary.json`` at the run-dir root, schema
``raftchaos.session/1``): one verdict per test, so nightly CI and the stability benchmark can tell
passed from unknown without scraping the terminal.

A run directory's own ``summary.json`` (``reports.summary``, ``raftchaos.summary/1``) describes one
cluster; a test may start several clusters or none (a suite that could not exercise the system
records its UNKNOWN verdict without a cluster), so the test-level answer lives here.

Schema ``raftchaos.session/1`` (one JSON object; a value that is not known is ``null``):

- ``schema``: ``"raftchaos.session/1"``; ``strict`` (bool: ``--raftchaos-strict``);
  ``pytest_exit_status`` (int or null when written before pytest decided it).
- ``overall``: ``valid`` | ``invalid`` | ``unknown`` over every test: invalid when a test failed or
  errored or a verdict is invalid, else unknown when a test's verdict is unknown or when no test
  ran at all (none collected, or every one skipped: nothing was exercised, as ``compose`` of no
  verdicts is unknown), else valid.
  ``exit_code``: the Jepsen-convention code of ``overall`` (0 valid, 1 invalid, 2 unknown).
- ``counts``: {``outcomes`` {passed, failed, error, skipped, unknown}, ``verdicts`` {valid,
  invalid, unknown, none}} (``none``: a test without any raftchaos verdict, e.g. a plain unit test).
- ``tests``: list, in run order, of {``nodeid``, ``outcome`` (passed | failed | error | skipped |
  unknown), ``failed_by_strict`` (bool: failed only because its verdict is unknown and
  ``--raftchaos-strict``), ``failure`` (str | null: the first failing phase and the first line
  of its message; added under ``/1``), ``verdict`` (valid | invalid | unknown | null), ``seed`` (int | null), ``run_dirs``
  [str], ``reasons`` [str] (``checker: summary`` of each unknown or invalid verdict),
  ``verdicts`` [{``checker``, ``validity``, ``summary``}]}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = "raftchaos.session/1"
OUTCOMES = ("passed", "failed", "error", "skipped", "unknown")
VALIDITIES = ("valid", "invalid", "unknown")
EXIT_CODES = {"valid": 0, "invalid": 1, "unknown": 2}
TEST_KEYS = ("nodeid", "outcome", "verdict", "seed", "run_dirs", "reasons", "verdicts")


def reasons(verdicts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why a test is not simply valid: ``checker: summary`` of each unknown or invalid verdict."""
    return [f"{v['checker']}: {v['summary']}" for v in verdicts if v.get("validity") in ("unknown", "invalid")]


def session_overall(tests: Iterable[Mapping[str, Any]]) -> str:
    """Invalid (a failure, an error or an invalid verdict) beats unknown beats valid; a test that
    failed only because ``--raftchaos-strict`` fails unknown is unknown; a session in which no test
    ran (none, or all skipped) is unknown, never valid."""
    found = set()
    ran = False
    for test in tests:
        ran = ran or test["outcome"] != "skipped"
        failed = test["outcome"] in ("failed", "error") and not test.get("failed_by_strict")
        if failed or test["verdict"] == "invalid":
            found.add("invalid")
        elif test["outcome"] == "unknown" or test["verdict"] == "unknown":
            found.add("unknown")
    if not ran:
        found.add("unknown")
    return next((v for v in ("invalid", "unknown") if v in found), "valid")


def build_session(tests: list[dict[str, Any]], strict: bool, exit_status: int | None) -> dict[str, Any]:
    """The session document (schema in the module docstring) from per-test entries (``TEST_KEYS``)."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    verdicts = dict.fromkeys((*VALIDITIES, "none"), 0)
    for test in tests:
        outcomes[test["outcome"]] = outcomes.get(test["outcome"], 0) + 1
        verdicts[test["verdict"] or "none"] += 1
    overall = session_overall(tests)
    return {"schema": SCHEMA, "strict": strict, "pytest_exit_status": exit_status, "overall": overall,
            "exit_code": EXIT_CODES[overall], "counts": {"outcomes": outcomes, "verdicts": verdicts},
            "tests": tests}


def validate_session(doc: Any) -> list[str]:
    """Problems with a session document against ``raftchaos.session/1`` (empty: valid)."""
    if not isinstance(doc, dict):
        return ["session summary is not a JSON object"]
    problems = [] if doc.get("schema") == SCHEMA else [f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}"]
    if doc.get("overall") not in VALIDITIES:
        problems.append(f"overall is {doc.get('overall')!r}")
    tests = doc.get("tests")
    if not isinstance(tests, list):
        return [*problems, "'tests' must be a list"]
    for i, test in enumerate(tests):
        missing = [k for k in TEST_KEYS if not isinstance(test, dict) or k not in test]
        if missing:
            problems.append(f"tests[{i}] misses {', '.join(missing)}")
        elif test["outcome"] not in OUTCOMES or test["verdict"] not in (*VALIDITIES, None):
            problems.append(f"tests[{i}] has outcome {test['outcome']!r} / verdict {test['verdict']!r}")
    return problems


def write_session(path: Path, doc: dict[str, Any]) -> Path:
    """Write the document atomically (a reader never sees half a file); creates the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_session(path: Path) -> dict[str, Any]:
    """Read and check a session summary; ValueError with one line naming the file and the problem."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    problems = validate_session(doc)
    if problems:
        raise ValueError(f"{path}: not a raftchaos session summary: {problems[0]}")
    return doc
