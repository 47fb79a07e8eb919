"""What a leader sent each peer: its per-peer counters from the observer's samples, carried over resets.

The node restarts a Peer's counters whenever a new leadership rebuilds its peers (kuduraft B5) and
when its process restarts, so a raw counter is only comparable within one term of one process. A
series here is cumulative since the run started: at a reset (a new term, or any counter going down)
the value before it is carried as an offset and the new raw value is all increment. A sample that
is missing or not a leader's in between (the node did not answer, or stepped down and came back in
a later term) is no reset by itself. The degradation and windows checkers and the report's
per-link plots and tables all count requests from these series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.history_views.nodes import NodeSample

# A leader's counters towards one peer (docs/node-api.md, ``/status`` ``peers.<id>.counters``).
PEER_COUNTERS = ("requests_sent", "requests_with_ops", "status_only_requests", "heartbeat_sends",
                 "signals_dropped_pending", "signals_suppressed_failed", "ops_read")
# The ones that say what kind of request a leader sent.
REQUEST_KINDS = ("requests_with_ops", "status_only_requests", "heartbeat_sends")


@dataclass(frozen=True)
class PeerPoint:
    """One sample of a leader's view of one peer: ``counts`` cumulative since the run started
    (``PEER_COUNTERS``, carried over resets), ``failed_attempts`` as sampled (a gauge)."""

    t: float
    term: int | None
    counts: Mapping[str, int]
    failed_attempts: int = 0


def _int(value: object) -> int:
    return value if type(value) is int else 0


def peer_series(samples: Mapping[str, Sequence[NodeSample]]) -> tuple[dict[str, list[PeerPoint]], dict[str, int]]:
    """Per directed link ``leader->peer``, a point per sample of that node as LEADER with the peer's
    counters; and how many resets each link saw (module docstring)."""
    series: dict[str, list[PeerPoint]] = {}
    resets: dict[str, int] = {}
    last: dict[str, tuple[int | None, tuple[int, ...], tuple[int, ...]]] = {}  # link -> term, raw, offset
    zeros = tuple(0 for _ in PEER_COUNTERS)
    for node, node_series in sorted(samples.items()):
        for s in node_series:
            peers = s.status.get("peers") if s.status is not None and s.role == "LEADER" else None
            if not isinstance(peers, Mapping):
                continue
            for peer, info in sorted(peers.items()):
                counters = info.get("counters") if isinstance(info, Mapping) else None
                if not isinstance(counters, Mapping):
                    continue
                raw = tuple(_int(counters.get(k)) for k in PEER_COUNTERS)
                link = f"{node}->{peer}"
                offset = zeros
                if link in last:
                    term, before, offset = last[link]
                    if term != s.term or any(a < b for a, b in zip(raw, before, strict=True)):
                        offset = tuple(o + b for o, b in zip(offset, before, strict=True))
                        resets[link] = resets.get(link, 0) + 1
                last[link] = (s.term, raw, offset)
                counts = {k: o + r for k, o, r in zip(PEER_COUNTERS, offset, raw, strict=True)}
                series.setdefault(link, []).append(PeerPoint(s.t, s.term, counts, _int(info.get("failed_attempts"))))
                resets.setdefault(link, 0)
    return series, resets


def counts_at(points: Sequence[PeerPoint], t: float) -> Mapping[str, int]:
    """The cumulative counts at ``t``: the last point at or before it (zeros before the first)."""
    best: Mapping[str, int] = dict.fromkeys(PEER_COUNTERS, 0)
    for p in points:
        if p.t > t:
            break
        best = p.counts
    return best


def counts_between(points: Sequence[PeerPoint], start: float, end: float) -> dict[str, int]:
    """What the samples in (start, end] added: each increment counts in the window holding the
    later of its two samples."""
    a, b = counts_at(points, start), counts_at(points, end)
    return {k: b[k] - a[k] for k in PEER_COUNTERS}
