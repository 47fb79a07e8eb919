"""Applying planned proxy operations to a live cluster's links, checking them in place, undoing exactly them."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faults.bite import CutWatch, judge_cut, read_snapshots
from faults.shapes import ProxyOp
from faults.verify import UNVERIFIED, Traffic, Verification, dial_refused, traffic
from harness.backend import LinkId
from harness.errors import FaultError, HarnessError
from harness.fault import FaultRecord, record_fault, record_heal
from harness.toxi import Stream

if TYPE_CHECKING:
    from harness.cluster import Cluster
    from harness.link import Link

_SEQ = itertools.count(1)


def link_of(cluster: Cluster, name: str) -> Link:
    link_id = LinkId.parse(name)
    return cluster.client_link(link_id.dst) if link_id.is_client else cluster.link(link_id.src, link_id.dst)


class ProxyEdits:
    """The proxy operations one fault made (disabled links, toxics by name); ``undo`` reverts exactly
    those, so faults on different links nest. Thread-safe; ``undo`` is idempotent."""

    def __init__(self, owner: str) -> None:
        self.tag = f"raftchaos-{owner}-{next(_SEQ)}"
        self._lock = threading.Lock()
        self.disabled: list[str] = []
        self.toxics: list[tuple[str, str, Stream]] = []  # (link, toxic name, stream)
        self.baseline: Traffic | None = None

    def apply(self, cluster: Cluster, ops: Sequence[ProxyOp], toxicity: float = 1.0) -> None:
        """Apply ``ops`` in order (HarnessError from Toxiproxy propagates; ``undo`` reverts the part
        done). The traffic baseline for verification is taken just before."""
        links = sorted({op.link for op in ops})
        self.baseline = traffic(cluster, links)
        with self._lock:
            for op in ops:
                link = link_of(cluster, op.link)
                if op.op == "disable":
                    link.disable()
                    self.disabled.append(op.link)
                    continue
                assert op.toxic_type is not None and op.stream is not None
                name = f"{self.tag}-{op.toxic_type}-{op.stream.value}"
                link.add_toxic(op.toxic_type, op.stream, toxicity=toxicity,
                               attributes=dict(op.attributes), name=name)
                self.toxics.append((op.link, name, op.stream))

    def check_in_place(self, cluster: Cluster) -> list[str]:
        """Read every edit back from Toxiproxy (and dial disabled loopback proxies); the problems."""
        problems = []
        for name in self.disabled:
            info = link_of(cluster, name).info()
            if info.enabled:
                problems.append(f"{name} still enabled")
            elif dial_refused(info.listen) is False:
                problems.append(f"{name} disabled but {info.listen} still accepts dials")
        for name, toxic, _ in self.toxics:
            if toxic not in {t.name for t in link_of(cluster, name).toxics()}:
                problems.append(f"{name}: toxic {toxic} not listed")
        return problems

    def dropped_streams(self) -> list[tuple[str, Stream]]:
        return [(link, stream) for link, _, stream in self.toxics]

    def undo(self, cluster: Cluster) -> None:
        with self._lock:
            while self.toxics:
                link, name, _ = self.toxics[-1]
                link_of(cluster, link).remove_toxic(name)
                self.toxics.pop()
            while self.disabled:
                link_of(cluster, self.disabled[-1]).enable()
                self.disabled.pop()

    def leftovers(self, cluster: Cluster) -> list[str]:
        """What of this fault's tag is still on its links (teardown's check)."""
        out = []
        for name in sorted({link for link, _, _ in self.toxics} | set(self.disabled)):
            link = link_of(cluster, name)
            left = [t.name for t in link.toxics() if t.name.startswith(self.tag)]
            if left or not link.enabled:
                out.append(f"{name} (toxics {left}, enabled={link.enabled})")
        return out


def apply_checked(cluster: Cluster, edits: ProxyEdits, ops: Sequence[ProxyOp], what: str,
                  toxicity: float = 1.0) -> None:
    """Apply and read back; FaultError (after undoing) when Toxiproxy failed or the edit is not in place."""
    try:
        edits.apply(cluster, ops, toxicity)
        problems = edits.check_in_place(cluster)
    except HarnessError as exc:
        _undo_quietly(cluster, edits)
        raise FaultError(f"{what}: {exc}") from exc
    if problems:
        _undo_quietly(cluster, edits)
        raise FaultError(f"{what}: not in place after injecting: {'; '.join(problems)}")


def _undo_quietly(cluster: Cluster, edits: ProxyEdits) -> Any:
    try:
        edits.undo(cluster)
    except HarnessError:
        pass  # the final heal resets every link anyway


class ProxyEditFault:
    """What every fault made of one ``ProxyEdits`` shares (partitions, toxics): applying the edits
    and recording the fault event, healing (verify, undo, record the heal once) and teardown's
    leftover check. Subclasses set ``name`` and provide ``verify``."""

    name: str
    judges_cut = False  # True: a cut, judged by ``faults.bite`` (nodes read at inject and heal)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._edits: ProxyEdits | None = None
        self._record: FaultRecord | None = None
        self._watch: CutWatch | None = None
        self._bite: dict[str, Any] | None = None

    def teardown(self, cluster: Cluster) -> None:
        """FaultError when this fault left a toxic or a disabled proxy behind."""
        if self._edits is not None and (left := self._edits.leftovers(cluster)):
            raise FaultError(f"{self.name}: not healed: {', '.join(left)}")

    def verify(self, cluster: Cluster) -> Verification:
        raise NotImplementedError

    def verify_cut(self, cluster: Cluster) -> Verification:
        """For faults that cut links (disable proxies, drop streams): whether a node sent across
        the cut while it was in place (``faults.bite.judge_cut`` over the evidence gathered now,
        kept for the heal event)."""
        edits, watch = self._edits, self._watch
        if edits is None or watch is None:
            return UNVERIFIED
        try:
            not_in_place = edits.check_in_place(cluster)
        except HarnessError as exc:
            not_in_place = [f"toxiproxy could not be read: {exc}"]
        after = traffic(cluster, sorted({link for link, _ in edits.dropped_streams()} | set(edits.disabled)))
        self._bite = watch.finish(cluster, edits.dropped_streams(), edits.disabled, not_in_place,
                                  edits.baseline, after)
        return judge_cut(self._bite)

    def _apply(self, cluster: Cluster, ops: Sequence[ProxyOp], what: str, params: dict[str, Any],
               hit: Sequence[str], term: int | None, toxicity: float = 1.0) -> FaultRecord:
        """Apply ``ops`` (``apply_checked``) and record the fault event; when that fails the event
        carries the ``error`` and the FaultError propagates."""
        self._edits = ProxyEdits(self.name)
        before_cut = read_snapshots(cluster) if self.judges_cut else None
        try:
            apply_checked(cluster, self._edits, ops, what, toxicity)
        except FaultError as exc:
            self._record = record_fault(cluster, self.name, {**params, "error": str(exc)}, hit, term)
            raise
        self._record = record_fault(cluster, self.name, params, hit, term)
        self._watch = CutWatch(cluster, before_cut) if self.judges_cut else None
        return self._record

    def heal(self, cluster: Cluster) -> None:
        with self._lock:
            verification = self.verify(cluster) if self._record is not None else UNVERIFIED
            if self._edits is not None:
                self._edits.undo(cluster)
            if self._record is not None:
                extra = {"bite": self._bite} if self._bite is not None else {}
                record_heal(cluster, self._record, **verification.heal_fields(), **extra)
                self._record = None
            self._watch, self._bite = None, None
