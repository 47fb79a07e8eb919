"""Toxics on one directed link: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data.

Every parameter is validated here with a FaultError naming it. Latency jitter is drawn by the
harness from the run's seeded nemesis rng (once per stream, uniformly in ``[-jitter, +jitter]``)
and recorded as ``drawn_ms``, because Toxiproxy's own jitter cannot be seeded; a replay passes
the recorded draw back (``drawn_ms``) and adds exactly the same delays. ``toxicity`` < 1 leaves
the per-connection choice to Toxiproxy (not seedable: recorded, but not replayed exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faults.base import as_enum, check_number
from faults.links import Direction, Endpoints
from faults.proxyops import ProxyEditFault
from faults.shapes import ProxyOp
from faults.verify import (
    UNVERIFIED,
    SourceCounters,
    SourceEvidence,
    Verification,
    flow_verification,
    source_counters,
    traffic,
)
from harness.errors import FaultError
from harness.fault import FaultRecord, Target, nemesis_rng

if TYPE_CHECKING:
    from harness.cluster import Cluster

MAX_MS = 600_000
MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class ToxicType:
    """One Toxiproxy toxic: our parameter names (with units) → its attribute names, and checks."""

    name: str
    params: Mapping[str, tuple[str, float, float, Any]]  # ours -> (theirs, low, high, default)
    check: Callable[[dict[str, int]], None] | None = None


def _latency_check(values: dict[str, int]) -> None:
    if values["jitter_ms"] > values["latency_ms"]:
        raise FaultError(f"jitter_ms ({values['jitter_ms']}) must not exceed latency_ms "
                         f"({values['latency_ms']}): a delay cannot be negative")


def _slicer_check(values: dict[str, int]) -> None:
    if values["size_variation_bytes"] >= values["average_size_bytes"]:
        raise FaultError(f"size_variation_bytes ({values['size_variation_bytes']}) must be below "
                         f"average_size_bytes ({values['average_size_bytes']})")


TOXICS: Mapping[str, ToxicType] = {t.name: t for t in (
    ToxicType("latency", {"latency_ms": ("latency", 0, MAX_MS, None), "jitter_ms": ("jitter", 0, MAX_MS, 0)},
              _latency_check),
    ToxicType("bandwidth", {"rate_kbps": ("rate", 0, 10**7, None)}),
    ToxicType("slow_close", {"delay_ms": ("delay", 0, MAX_MS, None)}),
    ToxicType("timeout", {"timeout_ms": ("timeout", 0, MAX_MS, 0)}),
    ToxicType("reset_peer", {"timeout_ms": ("timeout", 0, MAX_MS, 0)}),
    ToxicType("slicer", {"average_size_bytes": ("average_size", 1, MAX_BYTES, None),
                         "size_variation_bytes": ("size_variation", 0, MAX_BYTES, 0),
                         "delay_us": ("delay", 0, MAX_MS * 1000, 0)}, _slicer_check),
    ToxicType("limit_data", {"bytes": ("bytes", 0, MAX_BYTES, None)}),
)}


def check_toxic_params(toxic: str, params: Mapping[str, Any]) -> dict[str, int]:
    """Our parameters of ``toxic`` validated (ints in range, required ones present)."""
    if toxic not in TOXICS:
        raise FaultError(f"unknown toxic {toxic!r} (known: {', '.join(TOXICS)})")
    kind = TOXICS[toxic]
    unknown = sorted(set(params) - set(kind.params))
    if unknown:
        raise FaultError(f"{toxic}: unknown parameter(s) {', '.join(unknown)} "
                         f"(takes {', '.join(kind.params)})")
    values: dict[str, int] = {}
    for ours, (_, low, high, default) in kind.params.items():
        if ours not in params and default is None:
            raise FaultError(f"{toxic} needs {ours}")
        values[ours] = int(check_number(ours, params.get(ours, default), low, high, integer=True))
    if kind.check is not None:
        kind.check(values)
    return values


class LinkToxic(ProxyEditFault):
    """Add one toxic to the directed link ``src->dst`` (each a node id or a single-node target such
    as ``leader``), on ``direction`` (``requests`` = upstream, ``replies`` = downstream, ``both``)."""

    def __init__(self, toxic: str, src: Target | str, dst: Target | str, direction: Direction | str = Direction.BOTH,
                 toxicity: float = 1.0, drawn_ms: Mapping[str, int] | None = None, **params: Any) -> None:
        self.toxic = toxic
        self.values = check_toxic_params(toxic, params)
        self.ends = Endpoints(src, dst)
        self.direction: Direction = as_enum(Direction, direction, "direction")
        self.toxicity = float(check_number("toxicity", toxicity, 0.0, 1.0))
        self.drawn_ms = dict(drawn_ms) if drawn_ms is not None else None
        if self.drawn_ms is not None and toxic != "latency":
            raise FaultError("drawn_ms applies to latency only")
        self.name = toxic.replace("_", "-")
        self._drawn: dict[str, int] = {}
        self._link: tuple[str, str] | None = None
        self._source_before: SourceCounters | None = None
        super().__init__()

    def available(self, cluster: Cluster) -> str | None:
        if len(cluster.nodes) < 2:
            return f"{self.name} on a link needs at least 2 nodes"
        return self.ends.check(cluster)

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare (faults on other links stay as they are)."""

    def params(self) -> dict[str, Any]:
        return {"src": str(self.ends.src), "dst": str(self.ends.dst), "direction": self.direction.value,
                "toxicity": self.toxicity, **self.values}

    def _attributes(self, stream: str, cluster: Cluster) -> dict[str, int]:
        theirs = {TOXICS[self.toxic].params[k][0]: v for k, v in self.values.items()}
        if self.toxic == "latency":
            theirs["jitter"] = 0  # drawn by the harness instead (seeded, recorded)
            theirs["latency"] = self._drawn[stream]
        return theirs

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        link_id, hit, term = self.ends.resolve(cluster)
        streams = [s.value for s in self.direction.streams]
        if self.toxic == "latency":
            if self.drawn_ms is not None:
                self._drawn = {s: int(self.drawn_ms[s]) for s in streams}
            else:
                rng, jitter = nemesis_rng(cluster), self.values["jitter_ms"]
                self._drawn = {s: self.values["latency_ms"] + rng.randint(-jitter, jitter) for s in streams}
        ops = [ProxyOp(link_id.name, "toxic", self.toxic, s, tuple(sorted(self._attributes(s.value, cluster).items())))
               for s in self.direction.streams]
        params = {**self.params(), "links": [link_id.name]}
        if self.toxic == "latency":
            params["drawn_ms"] = dict(self._drawn)
        record = self._apply(cluster, ops, f"{self.name} on {link_id}", params, hit, term, self.toxicity)
        # Read once the toxic is in place: whatever the source counts from now on went through it.
        self._link = (link_id.src, link_id.dst)
        self._source_before = source_counters(cluster, link_id.src, link_id.dst)
        return record

    def verify(self, cluster: Cluster) -> Verification:
        """Whether traffic went through the toxic since injection: bytes Toxiproxy counted (closed
        connections only) or the source node's counters for the destination (``flow_verification``)."""
        edits = self._edits
        if edits is None:
            return UNVERIFIED
        streams = edits.dropped_streams()
        node = None
        if self._link is not None:
            src, dst = self._link
            node = SourceEvidence(src, dst, self._source_before, source_counters(cluster, src, dst))
        return flow_verification(edits.baseline, traffic(cluster, sorted({lk for lk, _ in streams})), streams, node)
