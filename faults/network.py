"""Network faults on Toxiproxy links as the suites use them: ``partition`` (isolate nodes, or cut one
directed link, refused / blackhole) and ``link_latency``.

One vocabulary with the catalog (``faults.catalog``): ``partition(isolate=...)`` is the catalog's
``isolate`` (``faults.partition.Partition``), ``partition(link=...)`` its ``cut-link`` (``CutLink``)
and ``link_latency`` its ``latency`` toxic, so the ``fault`` event a suite records names a catalog
fault with its resolved groups / link ends, and rebuilds through ``faults.catalog.replay_params``
into the same proxy operations (tests/unit/test_faults.py pins it for each).

Stream semantics: on the proxy ``a->b`` (node a's outbound RPC connection to b) ``upstream``
carries a's requests and ``downstream`` b's replies.

Modes: ``refused`` disables the proxies (Toxiproxy stops listening and drops connections, so
dials fail fast: the leader counts an RPC-layer error at once); ``blackhole`` adds a ``timeout``
toxic with ``timeout=0`` (bytes vanish and nothing is closed, so an RPC hangs until
``consensus_rpc_timeout_ms``, B20). A fault only undoes what it did itself (its own toxics by
name, the proxies it disabled), so faults on different links nest.

Like every catalog fault (they share ``faults.proxyops``), each checks at injection that its edits
are in place (FaultError otherwise) and records on its ``heal`` event whether it bit: ``vacuous``
(true: traffic never crossed the cut / went through the toxic; null: the harness could not tell)
and the ``evidence``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from faults.base import as_enum, bounded, check_number
from faults.links import Direction, Endpoints
from faults.partition import Partition
from faults.proxyops import ProxyEditFault
from faults.shapes import Mode, ProxyOp, ShapeKind
from faults.toxics import LinkToxic
from faults.verify import Verification
from harness.backend import LinkId
from harness.errors import FaultError
from harness.fault import FaultRecord, Target

if TYPE_CHECKING:
    from harness.cluster import Cluster

__all__ = ["CutLink", "Direction", "Endpoints", "LinkLatency", "Mode", "link_latency", "partition"]

MAX_LATENCY_MS = 60_000
_BLACKHOLE_ATTRIBUTES = (("timeout", 0),)


def _check_mode(mode: Mode | str, direction: Direction | str) -> tuple[Mode, Direction]:
    checked_mode: Mode = as_enum(Mode, mode, "mode")
    checked_direction: Direction = as_enum(Direction, direction, "direction")
    if checked_mode is Mode.REFUSED and checked_direction is not Direction.BOTH:
        raise FaultError("mode 'refused' disables the whole proxy, so direction must be 'both' "
                         "(use mode 'blackhole' to drop only requests or only replies)")
    return checked_mode, checked_direction


def cut_ops(links: Sequence[LinkId], mode: Mode, direction: Direction) -> list[ProxyOp]:
    """The proxy operations that cut ``links``: ``refused`` disables each proxy, ``blackhole`` adds a
    ``timeout`` toxic (timeout 0) on each stream of ``direction``."""
    if mode is Mode.REFUSED:
        return [ProxyOp(link.name, "disable") for link in links]
    return [ProxyOp(link.name, "toxic", "timeout", stream, _BLACKHOLE_ATTRIBUTES)
            for link in links for stream in direction.streams]


class CutLink(ProxyEditFault):
    """Cut the one directed link ``src->dst`` (src's requests to dst and dst's replies to them); the
    catalog's ``cut-link``. Its ends are resolved at injection and recorded (``links``), so a
    replay cuts the same link. Thread-safe, idempotent heal (see ``ProxyEditFault``)."""

    name = "cut-link"

    def __init__(self, src: Target | str, dst: Target | str, mode: Mode | str = Mode.REFUSED,
                 direction: Direction | str = Direction.BOTH) -> None:
        self.mode, self.direction = _check_mode(mode, direction)
        self.ends = Endpoints(src, dst)
        super().__init__()

    def available(self, cluster: Cluster) -> str | None:
        if len(cluster.nodes) < 2:
            return f"{self.name} needs at least 2 nodes"
        return self.ends.check(cluster)

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: resetting every link here would heal a fault this one nests in."""

    def inject(self, cluster: Cluster) -> FaultRecord:
        """Cut the resolved link and check the cut is in place; FaultError (recorded with the
        ``error``, the partial cut undone) when Toxiproxy fails or does not show it."""
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        link, hit, term = self.ends.resolve(cluster)
        params = {"mode": self.mode.value, "direction": self.direction.value, "src": str(self.ends.src),
                  "dst": str(self.ends.dst), "links": [link.name]}
        ops = cut_ops([link], self.mode, self.direction)
        return self._apply(cluster, ops, f"{self.name} on {link.name}", params, hit, term)

    judges_cut = True

    def verify(self, cluster: Cluster) -> Verification:
        """Whether a node sent across the cut while it was in place (``faults.bite``)."""
        return self.verify_cut(cluster)


class LinkLatency(LinkToxic):
    """Add ``latency_ms`` to the link ``src->dst`` (per stream, so each direction adds it: the RTT
    grows by twice the latency with ``direction='both'``). The jitter is drawn once per stream by
    the harness from the run's seeded nemesis rng, uniformly in ``[-jitter_ms, +jitter_ms]``, and
    recorded (``drawn_ms``), instead of Toxiproxy's own (unseeded) jitter, so a replay adds the
    same delays. The catalog's ``latency`` toxic with these parameters (``faults.toxics``): the
    heal event says whether bytes went through the toxic."""

    def __init__(self, src: Target | str, dst: Target | str, latency_ms: int,
                 jitter_ms: int = 0, direction: Direction | str = Direction.BOTH) -> None:
        latency_ms = int(check_number("latency_ms", latency_ms, 0, MAX_LATENCY_MS, integer=True))
        jitter_ms = int(check_number("jitter_ms", jitter_ms, 0, MAX_LATENCY_MS, integer=True))
        super().__init__("latency", src, dst, direction, latency_ms=latency_ms, jitter_ms=jitter_ms)
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms


@contextmanager
def partition(cluster: Cluster, isolate: Target | str | None = None,
              link: tuple[Target | str, Target | str] | None = None, mode: Mode | str = Mode.REFUSED,
              direction: Direction | str = Direction.BOTH, include_client: bool = False,
              for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with partition(cluster, isolate="n2", mode="blackhole"): ...`` (the catalog's ``isolate``:
    the nodes cut off from the rest both ways, ``include_client`` their client links too) or
    ``with partition(cluster, link=("n1", "n2")): ...`` (``cut-link``; ``direction`` picks its
    streams in blackhole mode), exactly one of the two. Healed when the block ends, or after
    ``for_s`` seconds if that comes first. Skips (FaultUnavailable) when the cluster cannot have
    this partition."""
    if (isolate is None) == (link is None):
        raise FaultError("partition needs exactly one of isolate=... or link=(src, dst)")
    fault: Partition | CutLink
    if isolate is not None:
        checked_mode, checked_direction = _check_mode(mode, direction)
        if checked_direction is not Direction.BOTH:
            raise FaultError("isolate=... cuts both ways; to drop only requests or only replies cut "
                             "each link with link=(src, dst), direction=...")
        if isinstance(isolate, str) and not isolate.strip():
            raise FaultError(f"isolate must be a Target or a non-empty string like 'leader' or 'n2', got {isolate!r}")
        fault = Partition(ShapeKind.ISOLATE, checked_mode, isolate, include_client=include_client)
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
