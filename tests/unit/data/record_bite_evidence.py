"""Record the ``bite`` evidence of real cuts for tests/unit/test_bite.py (bite_matrix.json).

Starts local clusters (3 and 5 nodes), and for each partition shape x mode x leader position
cuts the cluster around its current leader for a few heartbeat periods, heals, and keeps the heal
event's ``bite`` object with what the case was. Run from the repository root:

    .venv/bin/python tests/unit/data/record_bite_evidence.py [--seed N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from faults.partition import Partition  # noqa: E402
from harness.cluster import Cluster  # noqa: E402
from harness.spec import BackendName, ClusterSpec  # noqa: E402

OUT = Path(__file__).with_name("bite_matrix.json")


def cases(nodes: list[str], leader: str) -> list[tuple[str, str, list[list[str]]]]:
    """(shape, where the leader is, groups) around ``leader``."""
    o = [n for n in nodes if n != leader]
    if len(nodes) == 3:
        return [("isolate", "isolated", [[leader], o]), ("isolate", "majority side", [[o[0]], [leader, o[1]]]),
                ("bridge", "a side", [[leader], [o[0]], [o[1]]]), ("bridge", "the bridge", [[o[0]], [leader], [o[1]]]),
                ("one-way", "sender", [[leader], o]), ("one-way", "receiver", [[o[0]], [leader]])]
    return [("majority-minority", "cut minority", [[leader, o[0]], o[1:]]),
            ("majority-minority", "majority side", [o[:2], [leader, *o[2:]]]),
            ("halves", "smaller half", [[leader, o[0]], o[1:]]), ("halves", "larger half", [o[:2], [leader, *o[2:]]]),
            ("majorities-ring", "on the ring", [[leader, *o]])]


def record(size: int, seed: int, root: Path, out: dict[str, Any]) -> None:
    spec = ClusterSpec(node_count=size, backend=BackendName.LOCAL, seed=seed, test_name=f"bite-evidence-{size}")
    cluster = Cluster(spec, runs_root=root)
    cluster.start_cluster()
    try:
        window_s = 4 * cluster.timing.heartbeat_s
        leader = cluster.wait_for_leader()
        for shape, where, _ in cases(list(cluster.nodes), leader):
            for mode in ("refused", "blackhole"):
                leader = cluster.wait_for_leader()
                groups = next(g for s, w, g in cases(list(cluster.nodes), leader) if (s, w) == (shape, where))
                fault = Partition(shape, mode, groups=groups)
                fault.inject(cluster)
                until = cluster.history.now() + window_s

                def window_over(u: float = until) -> bool:
                    return cluster.history.now() >= u
                cluster.wait_until(window_over, what="the cut window", timeout_s=window_s + 5.0, poll_s=0.02)
                fault.heal(cluster)
                heal = [e for e in cluster.history.events() if e["kind"] == "heal"][-1]
                key = f"{size} nodes: {shape} {mode}, leader {leader} ({where}), groups {groups}"
                print(key, "->", heal["vacuous"], heal["evidence"][:120])
                out[key] = {"leader": leader, "where": where, "bite": heal["bite"]}
    finally:
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**31))
    args = parser.parse_args()
    print(f"seed {args.seed}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raftchaos-bite-") as tmp:
        for size in (3, 5):
            record(size, args.seed, Path(tmp), out)
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} cases -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
