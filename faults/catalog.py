"""Every fault by name: build one from a name and JSON parameters (CLI, scenarios, schedules, replay)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faults.flags import (
    FlagFault,
    crash_after_leader_request,
    crash_on_leader_request,
    follower_fail_all_prepare,
    follower_fail_prepare_with_rotate_event,
    follower_reject_updates,
    wal_latency,
)
from faults.network import CutLink
from faults.partition import Partition
from faults.process import Kill, Pause, Restart
from faults.shapes import ShapeKind
from faults.storage_faults import Corrupt, PowerLoss
from faults.toxics import TOXICS, LinkToxic
from harness.errors import FaultError
from harness.fault import Fault
from harness.schedule import FaultSpec


@dataclass(frozen=True)
class Entry:
    """One catalog fault: its builder (keyword parameters only) and a one-line description."""

    name: str
    kind: str  # network / link / toxic / process / storage / flag
    build: Callable[..., Fault]
    help: str

    @property
    def params(self) -> list[str]:
        return [p for p in inspect.signature(self.build).parameters if p != "self"]


def _partition(shape: ShapeKind) -> Callable[..., Fault]:
    def build(mode: str = "refused", groups: Sequence[Sequence[str]] | None = None) -> Fault:
        return Partition(shape, mode, groups=groups)
    return build


def _isolate(target: str = "one", mode: str = "refused", include_client: bool = False,
             groups: Sequence[Sequence[str]] | None = None) -> Fault:
    return Partition(ShapeKind.ISOLATE, mode, None if groups else target, groups=groups,
                     include_client=include_client)


def _minority(target: str | None = None, mode: str = "refused",
              groups: Sequence[Sequence[str]] | None = None) -> Fault:
    return Partition(ShapeKind.MAJORITY_MINORITY, mode, None if groups else target, groups=groups)


def _one_way(src: str = "one", dst: str | None = None, mode: str = "blackhole",
             groups: Sequence[Sequence[str]] | None = None) -> Fault:
    return Partition(ShapeKind.ONE_WAY, mode, None if groups else src, None if groups else dst, groups=groups)


def _cut_link(src: str = "leader", dst: str = "one", mode: str = "refused", direction: str = "both") -> Fault:
    return CutLink(src, dst, mode, direction)


def _toxic(toxic: str) -> Callable[..., Fault]:
    names = list(TOXICS[toxic].params)

    def build(src: str = "leader", dst: str = "one", direction: str = "both", toxicity: float = 1.0,
              drawn_ms: Mapping[str, int] | None = None, **params: Any) -> Fault:
        return LinkToxic(toxic, src, dst, direction, toxicity, drawn_ms, **params)
    build.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in
         ["src", "dst", "direction", "toxicity", *names] + (["drawn_ms"] if toxic == "latency" else [])])
    return build


def _kill(target: str = "leader") -> Fault:
    return Kill(target, hard=True)


def _terminate(target: str = "leader") -> Fault:
    return Kill(target, hard=False)


def _pause(target: str = "leader") -> Fault:
    return Pause(target)


def _restart(target: str = "leader", hard: bool = False) -> Fault:
    return Restart(target, hard)


def _power_loss(target: str = "leader") -> Fault:
    return PowerLoss(target)


def _corrupt(target: str = "one", file: str = "wal", where: str = "tail", mode: str = "flip",
             nbytes: int = 1, plans: Mapping[str, Any] | None = None) -> Fault:
    return Corrupt(target, file, where, mode, nbytes, plans)


# A crash flag by name holds for its whole window: a node the crash supervisor restarts is re-armed
# (``FlagFault``'s reapply_on_restart; why: faults/flags.py).
def _crash_on(fraction: float = 0.05, target: str = "all", reapply_on_restart: bool = True) -> Fault:
    return crash_on_leader_request(fraction, target, reapply_on_restart)


def _crash_after(fraction: float = 0.05, target: str = "all", reapply_on_restart: bool = True) -> Fault:
    return crash_after_leader_request(fraction, target, reapply_on_restart)


def _follower(make: Callable[[str], FlagFault]) -> Callable[..., Fault]:
    def build(target: str = "followers") -> Fault:
        return make(target)
    return build


def _wal(mean_ms: int = 100, stddev_ms: int = 100, target: str = "all") -> Fault:
    return wal_latency(mean_ms, stddev_ms, target)


def _flag(name: str, value: Any, target: str = "all") -> Fault:
    return FlagFault({name: value}, target, name=f"flag-{name}")


_ENTRIES = [
    Entry("isolate", "network", _isolate, "cut the target node(s) off from the rest"),
    Entry("halves", "network", _partition(ShapeKind.HALVES), "split into two random halves"),
    Entry("majority-minority", "network", _minority, "a minority side (holding the target, e.g. leader)"),
    Entry("bridge", "network", _partition(ShapeKind.BRIDGE), "two halves joined by one bridge node"),
    Entry("majorities-ring", "network", _partition(ShapeKind.MAJORITIES_RING),
          "each node sees a majority, each a different one (>= 4 nodes)"),
    Entry("one-way", "network", _one_way, "drop traffic from src node(s) to dst node(s) only"),
    Entry("cut-link", "link", _cut_link,
          "cut the one directed link src->dst (refused; blackhole on direction's streams)"),
    *[Entry(t.replace("_", "-"), "toxic", _toxic(t), f"Toxiproxy {t} toxic on the link src->dst")
      for t in TOXICS],
    Entry("kill", "process", _kill, "SIGKILL the target node(s); heal starts them again"),
    Entry("terminate", "process", _terminate, "SIGTERM the target node(s); heal starts them again"),
    Entry("pause", "process", _pause, "SIGSTOP the target node(s); heal resumes them"),
    Entry("restart", "process", _restart, "stop and start the target node(s) at once"),
    Entry("power-loss", "storage", _power_loss,
          "SIGKILL the target node(s) and drop every write not fsynced (sync ledger); heal starts them"),
    Entry("corrupt", "storage", _corrupt,
          "stop the target node(s), damage WAL/meta (file=wal|meta, where=mid|tail, mode=flip|zero, "
          "nbytes); heal starts them"),
    Entry("crash-on-leader-request", "flag", _crash_on, "fault_crash_on_leader_request_fraction (B21)"),
    Entry("crash-after-leader-request", "flag", _crash_after,
          "fault_crash_after_leader_request_fraction (B22)"),
    Entry("follower-reject-updates", "flag", _follower(follower_reject_updates),
          "follower_reject_update_consensus_requests"),
    Entry("follower-fail-all-prepare", "flag", _follower(follower_fail_all_prepare), "follower_fail_all_prepare"),
    Entry("follower-fail-prepare-rotate", "flag", _follower(follower_fail_prepare_with_rotate_event),
          "CANNOT_PREPARE 'Previous Rotate Event with' (B9)"),
    Entry("wal-latency", "flag", _wal, "log_inject_latency with _ms_mean / _ms_stddev"),
    Entry("flag", "flag", _flag, "any runtime flag by name: name=..., value=..."),
]
CATALOG: Mapping[str, Entry] = {e.name: e for e in _ENTRIES}


def entry(name: str) -> Entry:
    if name not in CATALOG:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(CATALOG)})")
    return CATALOG[name]


def build_fault(name: str, params: Mapping[str, Any] | None = None) -> Fault:
    """The fault ``name`` with ``params``; FaultError (one line) for an unknown name or parameter."""
    found = entry(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(found.params))
    if unknown:
        raise FaultError(f"fault {name}: unknown parameter(s) {', '.join(unknown)} "
                         f"(takes {', '.join(found.params) or 'none'})")
    try:
        return found.build(**params)
    except TypeError as exc:
        raise FaultError(f"fault {name}: {exc}") from None


def check_spec(spec: FaultSpec) -> None:
    """Build once to validate a spec's name and parameters (nothing is injected)."""
    build_fault(spec.name, spec.params)


# Parameters a replay takes from the record instead of resolving again.
_RESOLVED = ("groups", "drawn_ms")


def replay_params(name: str, params: Mapping[str, Any], record_params: Mapping[str, Any],
                  targets: Sequence[str]) -> dict[str, Any]:
    """The parameters that re-execute a recorded injection exactly: the recorded groups of a
    partition, the recorded ends and jitter draw of a toxic, the resolved ids of a process or
    flag fault (instead of ``leader``/``one``, which may resolve differently the second time)."""
    found = entry(name)
    out = dict(params)
    if found.kind == "network":
        for key in ("target", "src", "dst"):
            out.pop(key, None)
        out["groups"] = record_params.get("groups")
    elif found.kind in ("toxic", "link"):
        link = (record_params.get("links") or [None])[0]
        if link:
            out["src"], out["dst"] = link.split("->", 1)
        for key in _RESOLVED:
            if key in record_params and key in found.params:
                out[key] = record_params[key]
    elif targets:
        out["target"] = ",".join(targets)
        if name == "corrupt" and isinstance(record_params.get("plans"), Mapping):
            out["plans"] = record_params["plans"]  # the same bytes, not a fresh draw
    return out
