"""Cluster startup and fault-injection latency, on the local and/or Docker backend, side by side.

Startup: ``Cluster.start_cluster()`` (Toxiproxy and every proxy up, 3 nodes answering /health) to an
agreed leader, N repetitions, each a fresh cluster. Docker's first repetition is reported apart: it
pays for image checks (and, with ``--cold``, for building every image from the cached base rootfs).

Fault latency, on each repetition's running cluster, through the ``client->n1`` link: from calling
``link.add_toxic`` (a ``reset_peer`` toxic, upstream) or ``link.disable`` until (a) Toxiproxy's API
shows it and (b) traffic on that link changed: a fresh probe connection through the proxy fails.
Each is then healed and the probe must succeed again before the next sample.

Targets (issue 3 and the Docker issue): local startup median <= 2 s, Docker (images built) <= 5 s,
fault latency median <= 10 ms. A measurement, not a test: nothing here asserts. Seeded: the seed
(printed) sets every cluster's seed, so a run can be replayed.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.cluster import Cluster  # noqa: E402
from harness.link import Link  # noqa: E402
from harness.spec import BackendName, ClusterSpec  # noqa: E402

SAMPLES_PER_REP = 10
PROBE_TIMEOUT_S = 0.5
CHANGE_DEADLINE_S = 2.0
TARGETS_S = {"local": 2.0, "docker": 5.0}
FAULT_TARGET_MS = 10.0


@dataclass
class Figures:
    """Every sample of one backend, in seconds."""

    backend: str
    first_s: float | None = None  # Docker: the first repetition (image checks or build)
    healthy_s: list[float] = field(default_factory=list)
    leader_s: list[float] = field(default_factory=list)
    toxic_api_s: list[float] = field(default_factory=list)
    toxic_traffic_s: list[float] = field(default_factory=list)
    disable_api_s: list[float] = field(default_factory=list)
    disable_traffic_s: list[float] = field(default_factory=list)


def probe(url: str) -> bool:
    """One fresh connection through the proxy: True when ``GET /health`` answers 200."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def until(predicate: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Seconds until ``predicate()`` first holds (polled back to back); raises after ``deadline_s``."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > deadline_s:
            raise RuntimeError(f"no change within {deadline_s} s: {what}")
    return time.perf_counter() - started


def timed(inject: Callable[[], object], changed: Callable[[], bool], what: str) -> float:
    """Seconds from calling ``inject()`` until ``changed()`` holds (polled back to back)."""
    started = time.perf_counter()
    inject()
    until(changed, CHANGE_DEADLINE_S, what)
    return time.perf_counter() - started


def measure_faults(cluster: Cluster, figures: Figures) -> None:
    """SAMPLES_PER_REP of each measurement on ``client->n1``; every injection is healed (and the probe
    passes again) before the next, and API and traffic are timed on separate injections."""
    link: Link = cluster.client_link(cluster.nodes[0])
    url = cluster.backend.client_url(cluster.nodes[0])
    healthy = lambda: probe(url)  # noqa: E731
    toxic = "bench_reset_peer"

    def add() -> None:
        link.add_toxic("reset_peer", "upstream", attributes={"timeout": 0}, name=toxic)

    def heal() -> None:
        link.remove_toxic(toxic)
        link.enable()
        until(healthy, CHANGE_DEADLINE_S, "probe through the healed link")

    heal()
    for _ in range(SAMPLES_PER_REP):
        figures.toxic_api_s.append(timed(add, lambda: any(t.name == toxic for t in link.toxics()), "toxic listed"))
        heal()
        figures.toxic_traffic_s.append(timed(add, lambda: not healthy(), "toxic resets the probe"))
        heal()
        figures.disable_api_s.append(timed(link.disable, lambda: not link.enabled, "proxy shown disabled"))
        heal()
        figures.disable_traffic_s.append(timed(link.disable, lambda: not healthy(), "disable cuts the probe"))
        heal()


def one_cluster(backend: BackendName, seed: int, root: Path, figures: Figures, record_startup: bool,
                system: str = "kuduraft") -> float:
    """Start a 3-node cluster of ``system`` to a leader (the seconds it took), measure faults on it, stop it."""
    spec = ClusterSpec(node_count=3, backend=backend, seed=seed, test_name=f"bench-startup-{backend.value}",
                       system=system)
    cluster = Cluster(spec, runs_root=root)
    started = time.perf_counter()
    cluster.start_cluster()
    try:
        healthy_s = time.perf_counter() - started
        cluster.wait_for_leader()
        leader_s = time.perf_counter() - started
        if record_startup:
            figures.healthy_s.append(healthy_s)
            figures.leader_s.append(leader_s)
        measure_faults(cluster, figures)
    finally:
        cluster.close()
    return leader_s


def remove_images(console: Console) -> None:
    """For ``--cold``: drop the raftchaos images (the debootstrapped rootfs tarball stays cached)."""
    from harness.docker.daemon import ensure_daemon
    from harness.docker.resources import LABEL_RUN

    client = ensure_daemon(None)
    if client.containers.list(filters={"label": LABEL_RUN}):
        console.print("[yellow]--cold skipped: raftchaos containers are running (another run uses the images)")
        return
    for image in client.images.list():
        if any(tag.startswith("raftchaos/") for tag in image.tags):
            for tag in image.tags:
                client.images.remove(tag, force=True, noprune=False)
    console.print("removed the raftchaos images: the first Docker start rebuilds them")


def run_backend(backend: BackendName, reps: int, seed: int, cold: bool, console: Console,
                system: str = "kuduraft") -> Figures:
    figures = Figures(backend.value)
    with tempfile.TemporaryDirectory(prefix=f"raftchaos-bench-{backend.value}-") as tmp:
        root = Path(tmp)
        if backend is BackendName.DOCKER:
            if cold:
                remove_images(console)
            figures.first_s = one_cluster(backend, seed, root, figures, record_startup=False, system=system)
            console.print(f"docker first start (to leader): {figures.first_s:.2f} s")
        for rep in range(reps):
            leader_s = one_cluster(backend, seed + rep, root, figures, record_startup=True, system=system)
            console.print(f"{backend.value} rep {rep + 1}/{reps}: leader after {leader_s:.2f} s")
    return figures


def _median(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * scale:.{digits}f} (min {min(values) * scale:.{digits}f}, " \
           f"max {max(values) * scale:.{digits}f})"


def render(results: list[Figures], reps: int, seed: int) -> Table:
    table = Table(title=f"cluster startup and fault latency — 3 nodes + Toxiproxy, {reps} reps, seed {seed}")
    table.add_column("median (min, max)")
    for figures in results:
        table.add_column(figures.backend, justify="right")
    table.add_column("target", justify="right")
    rows: list[tuple[str, Callable[[Figures], str], str]] = [
        ("first start to leader, s", lambda f: f"{f.first_s:.2f}" if f.first_s is not None else "-",
         "report"),
        ("start to all healthy, s", lambda f: _median(f.healthy_s), ""),
        ("start to leader elected, s", lambda f: _median(f.leader_s),
         " / ".join(f"{k} <= {v:g}" for k, v in TARGETS_S.items())),
        ("add_toxic -> visible in API, ms", lambda f: _median(f.toxic_api_s, 1000, 1), f"<= {FAULT_TARGET_MS:g}"),
        ("add_toxic -> traffic changed, ms", lambda f: _median(f.toxic_traffic_s, 1000, 1),
         f"<= {FAULT_TARGET_MS:g}"),
        ("disable -> visible in API, ms", lambda f: _median(f.disable_api_s, 1000, 1), f"<= {FAULT_TARGET_MS:g}"),
        ("disable -> traffic changed, ms", lambda f: _median(f.disable_traffic_s, 1000, 1),
         f"<= {FAULT_TARGET_MS:g}"),
    ]
    for label, cell, target in rows:
        table.add_row(label, *(cell(f) for f in results), target)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["local", "docker", "both"], default="local")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per backend (default 5)")
    parser.add_argument("--system", choices=["kuduraft", "etcd"], default="kuduraft",
                        help="the system under test (etcd: Debian's etcd-server, `make etcd-setup`)")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--cold", action="store_true",
                        help="Docker: remove the raftchaos images first, so the first start builds them")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    console = Console(width=max(Console().width, 120))
    console.print(f"seed {seed} (replay with --seed {seed}); system {args.system}")
    backends = [BackendName.LOCAL, BackendName.DOCKER] if args.backend == "both" else [BackendName(args.backend)]
    results = [run_backend(b, args.reps, seed, args.cold, console, args.system) for b in backends]
    console.print(render(results, args.reps, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
