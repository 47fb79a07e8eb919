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

Like the catalog's faults (which these share their machinery with: ``faults.proxyops``), each
checks at injection that its edits are in place (FaultError otherwise) and records on its
``heal`` event whether it bit: ``vacuous`` (true: traffic never crossed the cut / went through
the toxic; null: the harness could not tell) and the ``evidence`` (bytes per stream).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from faults.base import as_enum, as_target, bounded, check_known, check_number
from faults.links import Direction, Endpoints
from faults.proxyops import ProxyEditFault
from faults.shapes import Mode, ProxyOp
from faults.toxics import LinkToxic
from faults.verify import Verification
from harness.backend import CLIENT, LinkId
from harness.errors import FaultError
from harness.fault import FaultRecord, Target, resolve_target

if TYPE_CHECKING:
    from harness.cluster import Cluster

__all__ = ["CutLink", "Direction", "Endpoints", "Isolate", "LinkLatency", "Mode", "isolation_links",
           "link_latency", "partition"]

MAX_LATENCY_MS = 60_000
_BLACKHOLE_ATTRIBUTES = (("timeout", 0),)


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


def cut_ops(links: Sequence[LinkId], mode: Mode, direction: Direction) -> list[ProxyOp]:
    """The proxy operations that cut ``links``: ``refused`` disables each proxy, ``blackhole`` adds a
    ``timeout`` toxic (timeout 0) on each stream of ``direction``."""
    if mode is Mode.REFUSED:
        return [ProxyOp(link.name, "disable") for link in links]
    return [ProxyOp(link.name, "toxic", "timeout", stream, _BLACKHOLE_ATTRIBUTES)
            for link in links for stream in direction.streams]


class _LinkFault(ProxyEditFault):
    """Cuts a set of links, resolved at injection (``_resolve``); heals exactly what it did and
    records whether the cut bit. Thread-safe, idempotent heal (see ``ProxyEditFault``)."""

    name = "link"

    def __init__(self, mode: Mode | str, direction: Direction | str) -> None:
        self.mode, self.direction = _check_mode(mode, direction)
        super().__init__()

    def available(self, cluster: Cluster) -> str | None:
        if len(cluster.nodes) < 2:
            return f"{self.name} needs at least 2 nodes"
        return None

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: resetting every link here would heal a fault this one nests in."""

    def _resolve(self, cluster: Cluster) -> tuple[list[LinkId], tuple[str, ...], int | None]:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "direction": self.direction.value}

    def inject(self, cluster: Cluster) -> FaultRecord:
        """Cut the resolved links and check the cut is in place; FaultError (recorded with the
        ``error``, the partial cut undone) when Toxiproxy fails or does not show it."""
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        links, hit, term = self._resolve(cluster)
        params = {**self._params(), "links": [link.name for link in links]}
        ops = cut_ops(links, self.mode, self.direction)
        return self._apply(cluster, ops, f"{self.name} on {len(links)} link(s)", params, hit, term)

    judges_cut = True

    def verify(self, cluster: Cluster) -> Verification:
        """Whether a node sent across the cut while it was in place (``faults.bite``)."""
        return self.verify_cut(cluster)


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


class CutLink(_LinkFault):
    """Cut the one directed link ``src->dst`` (src's requests to dst and dst's replies to them)."""

    name = "cut-link"

    def __init__(self, src: Target | str, dst: Target | str, mode: Mode | str = Mode.REFUSED,
                 direction: Direction | str = Direction.BOTH) -> None:
        self.ends = Endpoints(src, dst)
        super().__init__(mode, direction)

    def available(self, cluster: Cluster) -> str | None:
        return super().available(cluster) or self.ends.check(cluster)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "src": str(self.ends.src), "dst": str(self.ends.dst)}

    def _resolve(self, cluster: Cluster) -> tuple[list[LinkId], tuple[str, ...], int | None]:
        link, hit, term = self.ends.resolve(cluster)
        return [link], hit, term


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
