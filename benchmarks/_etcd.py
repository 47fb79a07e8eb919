"""A 3-member etcd cluster on loopback for benchmarks: Debian's etcd-server binary, run directly.

No systemd and no Debian service: every member is our child process with its data dir under a
temporary directory that ``stop`` removes. fsync stays on (etcd's default; no --unsafe-no-fsync).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._localnodes import stop_processes  # noqa: E402
from harness.ports import free_ports  # noqa: E402

ETCD_CANDIDATES = ("/usr/bin/etcd", "/usr/local/bin/etcd")


def find_etcd() -> str | None:
    """The etcd binary, or None (setup installs it with `make etcd-setup`)."""
    for path in ETCD_CANDIDATES:
        if Path(path).is_file():
            return path
    return shutil.which("etcd")


class EtcdCluster:
    """``n`` members; ``client_port[name]`` serves the v3 JSON gateway (``POST /v3/kv/put``)."""

    def __init__(self, binary: str, n: int = 3) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="raftchaos-etcd-"))
        self.names = [f"e{i}" for i in range(1, n + 1)]
        ports = free_ports(2 * n)
        self.client_port = {m: ports[i] for i, m in enumerate(self.names)}
        self.peer_port = {m: ports[n + i] for i, m in enumerate(self.names)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_all(self) -> None:
        initial = ",".join(f"{m}=http://127.0.0.1:{self.peer_port[m]}" for m in self.names)
        for m in self.names:
            client = f"http://127.0.0.1:{self.client_port[m]}"
            peer = f"http://127.0.0.1:{self.peer_port[m]}"
            args = [self.binary, "--name", m, "--data-dir", str(self.dir / m),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"raftchaos-bench-{self.dir.name}",
                    "--log-level", "warn"]
            log = open(self.dir / f"{m}.log", "ab")  # noqa: SIM115 - handed to the child
            self.procs[m] = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def _post(self, member: str, path: str, body: dict, timeout_s: float = 1.0) -> dict | None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.client_port[member]}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def leader(self) -> str | None:
        """The member whose own status names itself leader (ids are decimal strings in JSON)."""
        for m in self.names:
            if self.procs[m].poll() is not None:
                continue
            st = self._post(m, "/v3/maintenance/status", {})
            if st and st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                return m
        return None

    def wait_leader(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"etcd member {m} exited with {p.returncode}; log in {self.dir}")
            leader = self.leader()
            if leader:
                return leader
            time.sleep(0.1)
        raise RuntimeError(f"etcd elected no leader within {timeout_s}s; logs in {self.dir}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def stop(self) -> None:
        stop_processes(self.procs.values(), grace_s=10)
        shutil.rmtree(self.dir, ignore_errors=True)
