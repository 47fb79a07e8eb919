"""A bare 3-node launcher for benchmarks: real node processes on loopback, no Toxiproxy in the way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.ports import free_port  # noqa: E402


class LocalNodes:
    """Starts n nodes with their own data dirs; ``kill``/``start`` for failover measurements."""

    def __init__(self, n: int = 3, flags: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="raftchaos-bench-"))
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.http = {i: free_port() for i in self.ids}
        cluster = {"nodes": {i: {"rpc": f"127.0.0.1:{free_port()}", "http": f"127.0.0.1:{self.http[i]}"}
                             for i in self.ids}}
        self.config = self.dir / "cluster.json"
        self.config.write_text(json.dumps(cluster))
        self.flags = flags or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        self.start_with(node, ["-m", "nodes"])

    def start_with(self, node: str, launcher: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``node`` as ``python LAUNCHER --config ...`` (``-m nodes``, or a wrapper script that
        instruments the node in its own process), with ``env`` on top of ours."""
        args = [sys.executable, *launcher, "--config", str(self.config), "--id", node,
                "--data", str(self.dir / node)]
        for k, v in self.flags.items():
            args += ["--flag", f"{k}={v}"]
        log = open(self.dir / f"{node}.log", "ab")  # noqa: SIM115 - handed to the child
        self.procs[node] = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=log,
                                            env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))

    def start_all(self) -> None:
        for n in self.ids:
            self.start(n)

    def kill(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def status(self, node: str, timeout_s: float = 0.5) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http[node]}/status",
                                        timeout=timeout_s) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def leader(self) -> str | None:
        for n in self.ids:
            if n in self.procs and self.procs[n].poll() is None:
                st = self.status(n)
                if st and st["role"] == "LEADER":
                    return n
        return None

    def wait_leader(self, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no leader within {timeout_s}s; logs in {self.dir}")

    def stop(self) -> None:
        stop_processes(self.procs.values(), grace_s=5)


def stop_processes(procs: Iterable[subprocess.Popen[Any]], grace_s: float) -> None:
    """SIGTERM every process still running, then wait for each, killing (and reaping) one that
    outlives ``grace_s``: the benchmarks' clusters stop the same way, whatever runs in them."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
