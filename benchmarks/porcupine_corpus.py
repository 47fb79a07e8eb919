"""Porcupine's public test histories as data for the checker benchmark, and porcupine's own timings.

Porcupine (github.com/anishathalye/porcupine) ships Jepsen etcd register logs and kv (get / put /
append) histories with known verdicts in its ``test_data``. This module reads them into our event
schema (untimed: positions order events) and, when Go is on the machine, runs porcupine's own Go
benchmarks from a copy of the mirror in a temporary directory (porcupine has no module
dependencies), so that both checkers are measured in one run. The data is read from a fetched
mirror at benchmark time and never committed.
"""

from __future__ import annotations

import os
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
    """One history: its set (e.g. "porcupine etcd"), name, our events, and its expected verdict."""

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
        out.append(Corpus("porcupine etcd", f"etcd_{n:03d}", _jepsen_events(text), m[2] == "true", f"EtcdJepsen{n:03d}"))
    benches = {"c01": "Kv1Client", "c10": "Kv10Clients", "c50": "Kv50Clients"}
    for path in sorted((root / "test_data" / "kv").glob("c*-*.txt")):
        clients, verdict = path.stem.split("-")
        valid = verdict == "ok"
        out.append(Corpus("porcupine kv", path.stem, _kv_events(path.read_text()), valid,
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


def etcd_log(events: list[dict[str, Any]]) -> str:
    """Register events (one key, int values) as a Jepsen etcd log porcupine's parser reads."""
    lines = []
    for ev in events:
        kind, f = ev["type"], ev["f"]
        value: Any = ev.get("value")
        if kind == "info" and f == "read":
            kind, shown = "fail", ":timed-out"
        elif kind == "info":
            shown = ":timed-out"
        elif f == "cas":
            shown = f"[{value[0]} {value[1]}]"
        else:
            shown = "nil" if value is None else str(value)
        lines.append(f"INFO  jepsen.util - {ev['process']}\t:{kind}\t:{f}\t{shown}")
    return "\n".join(lines) + "\n"


def kv_log(events: list[dict[str, Any]]) -> str:
    """KV events (ok ops only) in porcupine's kv format; a read of null is a get of ""."""
    fs = {"read": "get", "write": "put", "append": "append"}
    lines = []
    for ev in events:
        value = ev.get("value")
        shown = "nil" if ev["type"] == "invoke" and ev["f"] == "read" else f'"{value or ""}"'
        lines.append(f'{{:process {ev["process"]}, :type :{ev["type"]}, :f :{fs[ev["f"]]}, '
                     f':key "{ev["key"]}", :value {shown}}}')
    return "\n".join(lines) + "\n"


_DRIVER_HEAD = """package porcupine

import (
	"testing"
	"time"
)

func benchRaftchaos(b *testing.B, model Model, events []Event) {
	res := Unknown
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res = CheckEventsTimeout(model, events, TIMEOUT*time.Millisecond)
	}
	switch res {
	case Ok:
		b.ReportMetric(1, "linearizable")
	case Illegal:
		b.ReportMetric(0, "linearizable")
	default:
		b.ReportMetric(-1, "linearizable")
	}
}
"""


def go_timings(root: Path, extra: dict[str, tuple[str, str]] | None = None, time_limit_s: float = 10.0,
               timeout_s: float = 900.0) -> tuple[dict[str, tuple[float, str | None]], str]:
    """Seconds per check of porcupine's own Go benchmarks (one iteration each, as our checker gets
    one run) and of ``extra`` histories ({name: ("etcd" | "kv", log text)}), which a small driver
    (written here, in the temp copy only) checks with porcupine's own test models and parsers; with
    porcupine's verdict for those ("valid", "invalid" or "unknown" past ``time_limit_s``, which
    porcupine's CheckEventsTimeout enforces; None for its own benchmarks, which assert theirs).
    Also a note on how (or why not)."""
    go = shutil.which("go")
    if go is None:
        return {}, "go not found: porcupine not measured"
    extra = extra or {}
    with tempfile.TemporaryDirectory(prefix="porcupine-") as tmp:
        work = Path(tmp) / "porcupine"
        shutil.copytree(root, work, ignore=shutil.ignore_patterns(".git"))
        data = work / "test_data" / "raftchaos"
        data.mkdir()
        driver = [_DRIVER_HEAD.replace("TIMEOUT", str(int(time_limit_s * 1000)))]
        for name, (kind, text) in extra.items():
            ident = re.sub(r"\W", "_", name)
            (data / f"{ident}.txt").write_text(text)
            parse, model = ("parseJepsenLog", "etcdModel") if kind == "etcd" else ("parseKvLog", "kvModel")
            driver.append(f"func BenchmarkRaftchaos_{ident}(b *testing.B) {{\n"
                          f"\tbenchRaftchaos(b, {model}, {parse}(\"test_data/raftchaos/{ident}.txt\"))\n}}\n")
        (work / "zz_raftchaos_driver_test.go").write_text("\n".join(driver))
        proc = subprocess.run([go, "test", "-run", "^$", "-bench", "EtcdJepsen|Kv[0-9]|Raftchaos_",
                               "-benchtime", "1x", "-count", "1"],
                              cwd=work, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    times: dict[str, tuple[float, str | None]] = {}
    names = {1.0: "valid", 0.0: "invalid", -1.0: "unknown"}
    for line in proc.stdout.splitlines():
        m = _BENCH.match(line)
        if m:
            verdict = re.search(r"(-?[\d.]+) linearizable", line)  # Go prints the metric as 1.000
            times[m[1]] = (float(m[2]) / 1e9, None if verdict is None else names.get(float(verdict[1]), verdict[1]))
    if not times:
        return {}, f"porcupine's go benchmarks failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return times, ("porcupine's own Go benchmarks (go test -bench -benchtime 1x) from the mirror in a temp "
                   "dir, plus a generated driver there for our corpus")
