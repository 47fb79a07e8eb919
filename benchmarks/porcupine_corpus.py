"""Porcupine's public test histories as data for the checker benchmark, and porcupine's own timings.

Porcupine (github.com/anishathalye/porcupine) ships Jepsen etcd register logs and kv (get / put /
append) histories with known verdicts in its ``test_data``. This module reads them into our event
schema (untimed: positions order events) and, when Go is on the machine, runs porcupine's own Go
benchmarks from a copy of the mirror in a temporary directory (porcupine has no module
dependencies), so that both checkers are measured in one run. The data is read from a fetched
mirror at benchmark time and never committed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_JEPSEN = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(\w+)\s+:(\w+)\s+(.*?)\s*$")
_KV = re.compile(r'^\{:process (\d+), :type :(\w+), :f :(\w+), :key "(.*?)", :value (nil|"(.*)")\}$')
_EXPECT_ETCD = re.compile(r"checkJepsen\(t, (\d+), (true|false)\)")
_BENCH = re.compile(r"^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op")


@dataclass(frozen=True)
class Corpus:
    """One history: its set ("etcd" or "kv"), name, our events, and porcupine's expected verdict."""

    set: str
    name: str
    events: list[dict[str, Any]]
    valid: bool
    bench: str  # the name of porcupine's Go benchmark for it


def _jepsen_events(text: str) -> list[dict[str, Any]]:
    """A Jepsen etcd log as register events on key "r". A read that timed out is a read with no
    effect (dropped by the checker); a write or cas that timed out is indeterminate (info)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _JEPSEN.match(line)
        if m is None:
            continue
        process, kind, f, rest = int(m[1]), m[2], m[3], m[4]
        ev: dict[str, Any] = {"process": process, "type": kind, "f": f, "key": "r"}
        if rest.startswith("["):
            a, b = rest[1:-1].split()
            ev["value"] = [int(a), int(b)]
        elif rest.isdigit():
            ev["value"] = int(rest)
        else:
            ev["value"] = None
        if kind == "fail" and f == "read":
            ev["type"], ev["error"] = "info", "timed-out"
        elif kind == "info":
            ev["error"] = "timed-out"
        out.append(ev)
    return out


def _kv_events(text: str) -> list[dict[str, Any]]:
    """A porcupine kv log: get -> read (the empty string reads as null), put -> write, append."""
    fs = {"get": "read", "put": "write", "append": "append"}
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _KV.match(line)
        if m is None:
            continue
        value = None if m[5] == "nil" else m[6]
        out.append({"process": int(m[1]), "type": m[2], "f": fs[m[3]], "key": m[4], "value": value})
    return out


def load(root: Path) -> list[Corpus]:
    """Every history of porcupine's test_data under ``root`` (a checkout or a git mirror's export)
    whose verdict its tests state."""
    tests = (root / "porcupine_test.go").read_text()
    out: list[Corpus] = []
    for m in _EXPECT_ETCD.finditer(tests):
        n = int(m[1])
        text = (root / "test_data" / "jepsen" / f"etcd_{n:03d}.log").read_text()
        out.append(Corpus("etcd", f"etcd_{n:03d}", _jepsen_events(text), m[2] == "true", f"EtcdJepsen{n:03d}"))
    benches = {"c01": "Kv1Client", "c10": "Kv10Clients", "c50": "Kv50Clients"}
    for path in sorted((root / "test_data" / "kv").glob("c*-*.txt")):
        clients, verdict = path.stem.split("-")
        valid = verdict == "ok"
        out.append(Corpus("kv", path.stem, _kv_events(path.read_text()), valid,
                          f"{benches[clients]}{'Ok' if valid else 'Bad'}"))
    return out


def checkout(mirror: Path, into: Path) -> Path:
    """A work tree of ``mirror``: itself when it is one, else ``git archive`` of HEAD into ``into``."""
    if (mirror / "porcupine_test.go").is_file():
        return mirror
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(mirror), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def go_timings(root: Path, timeout_s: float = 600.0) -> tuple[dict[str, float], str]:
    """Seconds per check of each porcupine Go benchmark (one iteration each, as our checker gets
    one run), and a note saying how they were measured (or why not)."""
    go = shutil.which("go")
    if go is None:
        return {}, "go not found: porcupine not measured"
    with tempfile.TemporaryDirectory(prefix="porcupine-") as tmp:
        work = Path(tmp) / "porcupine"
        shutil.copytree(root, work, ignore=shutil.ignore_patterns(".git"))
        proc = subprocess.run([go, "test", "-run", "^$", "-bench", "EtcdJepsen|Kv[0-9]", "-benchtime", "1x", "-count", "1"],
                              cwd=work, capture_output=True, text=True, timeout=timeout_s,
                              env={**_env(), "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    times: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        m = _BENCH.match(line)
        if m:
            times[m[1]] = float(m[2]) / 1e9
    if not times:
        return {}, f"porcupine's go benchmarks failed: {(proc.stderr or proc.stdout).strip()[-200:]}"
    return times, "porcupine's own Go benchmarks (go test -bench . -benchtime 1x) from the mirror, in a temp dir"


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
