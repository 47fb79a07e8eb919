"""Network faults on Toxiproxy links: isolate nodes or cut a directed link (refused / blackhole), add latency.

Stream semantics: on the proxy ``a->b`` (node a's outbound RPC connection to b) ``upstream``
carries a's requests and ``downstream`` b's replies. Isolating n2 therefore touches every link
into n2 (``n*->n2``: others' requests to n2 and n2's replies) and out of n2 (``n2->n*``), and
optionally ``client->n2``.

Modes: ``refused`` disables the proxies (Toxiproxy stops listening and drops connections, so
dials fail fast: the leader counts an RPC-layer error at once); ``blackhole`` adds a ``timeout``
toxic with ``timeout=0`` (bytes vanish and nothing is closed, so an RPC hangs until
``consensus_rpc_timeout_ms``, B20). A fault only undoes what it did itself (its own toxics by
name, the proxies it disabled), so faults on different links nest.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from faults.base import as_enum, as_target, bounded, check_known, check_number
from faults.shapes import Mode
from harness.backend import CLIENT, LinkId
from harness.errors import FaultError, HarnessError
from harness.fault import (
    FaultRecord,
    Target,
    TargetKind,
    nemesis_rng,
    record_fault,
    record_heal,
    resolve_target,
)
from harness.toxi import Stream

if TYPE_CHECKING:
    from harness.cluster import Cluster

MAX_LATENCY_MS = 60_000
_SEQ = itertools.count(1)  # distinguishes toxic names of fault instances within one process


class Direction(StrEnum):
    """Which streams of a link a toxic acts on: ``requests`` = upstream, ``replies`` = downstream."""

    BOTH = "both"
    REQUESTS = "requests"
    REPLIES = "replies"

    @property
    def streams(self) -> tuple[Stream, ...]:
        if self is Direction.REQUESTS:
            return (Stream.UPSTREAM,)
        if self is Direction.REPLIES:
            return (Stream.DOWNSTREAM,)
        return (Stream.UPSTREAM, Stream.DOWNSTREAM)


def _check_mode(mode: Mode | str, direction: Direction | str) -> tuple[Mode, Direction]:
    checked_mode: Mode = as_enum(Mode, mode, "mode")
    checked_direction: Direction = as_enum(Direction, direction, "direction")
    if checked_mode is Mode.REFUSED and checked_direction is not Direction.BOTH:
        raise FaultError("mode 'refused' disables the whole proxy, so direction must be 'both' "
                         "(use mode 'blackhole' to drop only requests or only replies)")
    return checked_mode, checked_direction


def isolation_links(isolated: Sequence[str], nodes: Sequence[str], include_client: bool) -> list[LinkId]:
    """Every link between the isolated nodes and the rest (both ways), plus their client links.
    Links among the isolated nodes stay up, so isolating a minority partitions it from the majority."""
    rest = [n for n in nodes if n not in isolated]
    links = [LinkId(a, b) for x in isolated for y in rest for a, b in ((y, x), (x, y))]
    if include_client:
        links += [LinkId(CLIENT, x) for x in isolated]
    return links


class _LinkFault:
    """Cuts a set of links, resolved at injection; heals exactly what it did. Thread-safe heal."""

    name = "link"

    def __init__(self, mode: Mode | str, direction: Direction | str) -> None:
        self.mode, self.direction = _check_mode(mode, direction)
        self._lock = threading.Lock()
        self._disabled: list[LinkId] = []
        self._toxics: list[tuple[LinkId, str]] = []
        self._record: FaultRecord | None = None
        self._tag = f"raftchaos-{self.name}-{next(_SEQ)}"

    def available(self, cluster: Cluster) -> str | None:
        if len(cluster.nodes) < 2:
            return f"{self.name} needs at least 2 nodes"
        return None

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: resetting every link here would heal a fault this one nests in."""

    def teardown(self, cluster: Cluster) -> None:
        """Check this fault left nothing behind on its links (FaultError otherwise)."""
        for link_id in {link for link, _ in self._toxics} | set(self._disabled):
            link = cluster.link(link_id.src, link_id.dst) if not link_id.is_client else cluster.client_link(link_id.dst)
            left = [t.name for t in link.toxics() if t.name.startswith(self._tag)]
            if left or not link.enabled:
                raise FaultError(f"{self.name}: {link_id} not healed (toxics {left}, enabled={link.enabled})")

    def _resolve(self, cluster: Cluster) -> tuple[list[LinkId], tuple[str, ...], int | None]:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "direction": self.direction.value}

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        links, hit, term = self._resolve(cluster)
        params = {**self._params(), "links": [link.name for link in links]}
        try:
            for link_id in links:
                self._cut(cluster, link_id)
        except HarnessError as exc:
            self._record = record_fault(cluster, self.name, {**params, "error": str(exc)}, hit, term)
            raise FaultError(f"{self.name}: injecting on {len(links)} link(s) failed: {exc}") from exc
        self._record = record_fault(cluster, self.name, params, hit, term)
        return self._record

    def _link(self, cluster: Cluster, link_id: LinkId) -> Any:
        return cluster.client_link(link_id.dst) if link_id.is_client else cluster.link(link_id.src, link_id.dst)

    def _cut(self, cluster: Cluster, link_id: LinkId) -> None:
        link = self._link(cluster, link_id)
        if self.mode is Mode.REFUSED:
            link.disable()
            self._disabled.append(link_id)
            return
        for stream in self.direction.streams:
            name = link.add_toxic("timeout", stream, attributes={"timeout": 0},
                                  name=f"{self._tag}-{stream.value}")
            self._toxics.append((link_id, name))

    def heal(self, cluster: Cluster) -> None:
        """Re-enable the proxies this fault disabled and remove its toxics; record ``heal`` once.
        Safe after a partial inject and when called twice (e.g. by a timer and a ``finally``)."""
        with self._lock:
            while self._toxics:
                link_id, name = self._toxics[-1]
                self._link(cluster, link_id).remove_toxic(name)
                self._toxics.pop()
            while self._disabled:
                self._link(cluster, self._disabled[-1]).enable()
                self._disabled.pop()
            if self._record is not None:
                record_heal(cluster, self._record)
                self._record = None


class Isolate(_LinkFault):
    """Isolate the ``target`` nodes (``"n2"``, ``"leader"``, ``Target.minority()``...) from the rest."""

    name = "isolate"

    def __init__(self, target: Target | str, mode: Mode | str = Mode.REFUSED,
                 direction: Direction | str = Direction.BOTH, include_client: bool = False) -> None:
        self.target = as_target(target, "isolate")
        if not isinstance(include_client, bool):
            raise FaultError(f"include_client must be a bool, got {include_client!r}")
        self.include_client = include_client
        super().__init__(mode, direction)

    def available(self, cluster: Cluster) -> str | None:
        check_known(cluster, self.target, "isolate")
        return super().available(cluster) or self.target.unavailable_reason(cluster.nodes)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "target": str(self.target), "include_client": self.include_client}

    def _resolve(self, cluster: Cluster) -> tuple[list[LinkId], tuple[str, ...], int | None]:
        hit, term = resolve_target(cluster, self.target)
        if len(hit) >= len(cluster.nodes):
            raise FaultError(f"isolate {self.target}: would isolate every node ({', '.join(hit)})")
        return isolation_links(hit, cluster.nodes, self.include_client), hit, term


def _one_node(target: Target, statuses: dict[str, Any], nodes: Sequence[str], rng: Any,
              what: str) -> tuple[str, int | None]:
    hit, term = target.resolve(statuses, nodes, rng)
    if len(hit) != 1:
        raise FaultError(f"{what} {target} must resolve to exactly one node, got {list(hit)}")
    return hit[0], term


class _Endpoints:
    """``src``/``dst`` of a directed link: node ids or single-node targets (``leader``, ``one``)."""

    def __init__(self, src: Target | str, dst: Target | str) -> None:
        self.src = as_target(src, "src")
        self.dst = as_target(dst, "dst")
        if self.src.ids and self.src == self.dst:
            raise FaultError(f"a link needs two different nodes, got {self.src} -> {self.dst}")

    def check(self, cluster: Cluster) -> str | None:
        check_known(cluster, self.src, "src")
        check_known(cluster, self.dst, "dst")
        return self.src.unavailable_reason(cluster.nodes) or self.dst.unavailable_reason(cluster.nodes)

    def resolve(self, cluster: Cluster) -> tuple[LinkId, tuple[str, ...], int | None]:
        statuses, rng = cluster.statuses(), nemesis_rng(cluster)
        src, term = _one_node(self.src, statuses, cluster.nodes, rng, "src")
        others = [n for n in cluster.nodes if n != src]  # "one" as dst: one of the other nodes
        dst, _ = _one_node(self.dst, statuses, others if self.dst.kind is TargetKind.ONE else cluster.nodes,
                           rng, "dst")
        if src == dst:
            raise FaultError(f"link {self.src} -> {self.dst} resolved to the same node {src}")
        return LinkId(src, dst), (src, dst), term


Endpoints = _Endpoints  # public name for the other link faults (faults.toxics)


class CutLink(_LinkFault):
    """Cut the one directed link ``src->dst`` (src's requests to dst and dst's replies to them)."""

    name = "cut-link"

    def __init__(self, src: Target | str, dst: Target | str, mode: Mode | str = Mode.REFUSED,
                 direction: Direction | str = Direction.BOTH) -> None:
        self.ends = _Endpoints(src, dst)
        super().__init__(mode, direction)

    def available(self, cluster: Cluster) -> str | None:
        return super().available(cluster) or self.ends.check(cluster)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "src": str(self.ends.src), "dst": str(self.ends.dst)}

    def _resolve(self, cluster: Cluster) -> tuple[list[LinkId], tuple[str, ...], int | None]:
        link, hit, term = self.ends.resolve(cluster)
        return [link], hit, term


class LinkLatency:
    """Add ``latency_ms`` to the link ``src->dst`` (per stream, so each direction adds it: the RTT
    grows by twice the latency with ``direction='both'``). The jitter is drawn once per stream by
    the harness from the run's seeded nemesis rng, uniformly in ``[-jitter_ms, +jitter_ms]``, and
    recorded, instead of Toxiproxy's own (unseeded) jitter, so a replay adds the same delays."""

    name = "latency"

    def __init__(self, src: Target | str, dst: Target | str, latency_ms: int,
                 jitter_ms: int = 0, direction: Direction | str = Direction.BOTH) -> None:
        self.ends = _Endpoints(src, dst)
        self.latency_ms = int(check_number("latency_ms", latency_ms, 0, MAX_LATENCY_MS, integer=True))
        self.jitter_ms = int(check_number("jitter_ms", jitter_ms, 0, MAX_LATENCY_MS, integer=True))
        if self.jitter_ms > self.latency_ms:
            raise FaultError(f"jitter_ms ({jitter_ms}) must not exceed latency_ms ({latency_ms}): "
                             "a delay cannot be negative")
        self.direction = as_enum(Direction, direction, "direction")
        self._lock = threading.Lock()
        self._toxics: list[tuple[LinkId, str]] = []
        self._record: FaultRecord | None = None
        self._tag = f"raftchaos-latency-{next(_SEQ)}"

    def available(self, cluster: Cluster) -> str | None:
        if len(cluster.nodes) < 2:
            return "latency on a link needs at least 2 nodes"
        return self.ends.check(cluster)

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare (see ``_LinkFault.setup``)."""

    def teardown(self, cluster: Cluster) -> None:
        """Nothing left to undo: ``heal`` removed this fault's toxics by name."""

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError("latency is already injected")
        link_id, hit, term = self.ends.resolve(cluster)
        rng = nemesis_rng(cluster)
        drawn = {s.value: self.latency_ms + rng.randint(-self.jitter_ms, self.jitter_ms)
                 for s in self.direction.streams}
        params = {"src": str(self.ends.src), "dst": str(self.ends.dst), "links": [link_id.name],
                  "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms,
                  "direction": self.direction.value, "drawn_ms": drawn}
        link = cluster.link(link_id.src, link_id.dst)
        try:
            for stream, delay_ms in drawn.items():
                name = link.add_toxic("latency", stream, attributes={"latency": delay_ms, "jitter": 0},
                                      name=f"{self._tag}-{stream}")
                self._toxics.append((link_id, name))
        except HarnessError as exc:
            self._record = record_fault(cluster, self.name, {**params, "error": str(exc)}, hit, term)
            raise FaultError(f"latency on {link_id}: {exc}") from exc
        self._record = record_fault(cluster, self.name, params, hit, term)
        return self._record

    def heal(self, cluster: Cluster) -> None:
        with self._lock:
            while self._toxics:
                link_id, name = self._toxics[-1]
                cluster.link(link_id.src, link_id.dst).remove_toxic(name)
                self._toxics.pop()
            if self._record is not None:
                record_heal(cluster, self._record)
                self._record = None


@contextmanager
def partition(cluster: Cluster, isolate: Target | str | None = None,
              link: tuple[Target | str, Target | str] | None = None, mode: Mode | str = Mode.REFUSED,
              direction: Direction | str = Direction.BOTH, include_client: bool = False,
              for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with partition(cluster, isolate="n2", mode="blackhole"): ...`` or
    ``with partition(cluster, link=("n1", "n2")): ...`` (exactly one of the two). Healed when
    the block ends, or after ``for_s`` seconds if that comes first. Skips (FaultUnavailable)
    when the cluster cannot have this partition."""
    if (isolate is None) == (link is None):
        raise FaultError("partition needs exactly one of isolate=... or link=(src, dst)")
    fault: Isolate | CutLink
    if isolate is not None:
        fault = Isolate(isolate, mode, direction, include_client)
    else:
        if not isinstance(link, tuple) or len(link) != 2:
            raise FaultError(f"link must be a (src, dst) pair, got {link!r}")
        if include_client:
            raise FaultError("include_client applies to isolate=..., not to a single link")
        fault = CutLink(link[0], link[1], mode, direction)
    with bounded(fault, cluster, for_s) as record:
        yield record


@contextmanager
def link_latency(cluster: Cluster, src: Target | str, dst: Target | str, latency_ms: int,
                 jitter_ms: int = 0, direction: Direction | str = Direction.BOTH,
                 for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with link_latency(cluster, "n1", "n2", latency_ms=200): ...`` (see ``LinkLatency``)."""
    with bounded(LinkLatency(src, dst, latency_ms, jitter_ms, direction), cluster, for_s) as record:
        yield record
