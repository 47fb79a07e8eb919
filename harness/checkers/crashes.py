"""Crash checker: a node that exited on its own, other than by an injected crash, is a finding.

The history records an ``exit`` node event only for a node that exited on its own (the cluster's
``reap``); a node the harness stopped is recorded as ``kill``/``terminate`` instead, so signals the
harness sent never reach this checker. What an exit status means follows the node's table
(docs/node-api.md, shared with harness/supervisor.py):

* 85: an injected ``fault_crash_*`` fired (kuduraft's fault-injection exit) - expected;
* 0: a clean exit - not a crash;
* 2: the node refused its configuration at start - the harness set it up wrongly, so the run
  could not exercise the system: unknown, never a failure of the system;
* 70 (an invariant violation, kuduraft's CHECK / LOG(FATAL)), 74 (a fatal WAL/metadata IO
  error), 3 (refused its own storage as corrupt; but see the exception below), 1 (any
  uncaught crash), any other status and a signal nobody in the harness sent (a negative status,
  e.g. the OOM killer): invalid, "node crashed", with the status and the tail of the node's log.
  One exception: status 3 from a node the ``corrupt`` fault damaged where a correct node must
  refuse (its recorded plan says ``expect: refuse``, faults/corruption.py) is the right answer,
  listed as ``refused_injected_corruption``; refusing a damage it should have repaired (a torn
  tail) stays a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.history import Event, NodeEventType
from harness.history_views import FAULTS, NODES, fault_windows, node_events, require_well_formed

NAME = "crashes"
INJECTED_CRASH_EXIT = 85  # the same number as harness.supervisor.INJECTED_CRASH_EXIT
CLEAN_EXIT = 0
BAD_CONFIG_EXIT = 2
CORRUPT_STORAGE_EXIT = 3
CORRUPT_FAULT = "corrupt"  # faults/storage_faults.Corrupt; its params.plans[node].expect
MEANING = {1: "crashed", 3: "refused corrupt storage at start", 70: "invariant violation (fatal)",
           74: "fatal storage (WAL/metadata IO) error", BAD_CONFIG_EXIT: "refused its configuration"}
LOG_TAIL_LINES = 12


def meaning(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code} the harness did not send"
    return MEANING.get(code, "crashed")


def _log_tail(run_dir: Path | None, node: str) -> list[str]:
    if run_dir is None:
        return []
    try:
        lines = (run_dir / "nodes" / f"{node}.log").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-LOG_TAIL_LINES:]


def check_crashes(events: Sequence[Event], run_dir: Path | None = None) -> Verdict:
    """Invalid when any node exited on its own with a status that is neither 85 nor 0; unknown
    when the only such exits are configuration refusals (status 2); valid otherwise."""
    crashes: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    injected = 0
    must_refuse: dict[str, float] = {}  # node -> when a corrupt fault it must refuse was injected
    refused_corruption: list[dict[str, Any]] = []
    require_well_formed(events, NODES | FAULTS)
    for fault in fault_windows(events):
        if fault.fault == CORRUPT_FAULT:
            plans = fault.params.get("plans") or {}
            for node, plan in plans.items():
                if isinstance(plan, dict) and plan.get("expect") == "refuse":
                    must_refuse.setdefault(str(node), fault.t_fault)
    for e in node_events(events):
        if e.event != NodeEventType.EXIT.value or e.code is None:
            continue
        code = e.code
        if code == INJECTED_CRASH_EXIT:
            injected += 1
            continue
        if code == CLEAN_EXIT:
            continue
        if code == CORRUPT_STORAGE_EXIT and e.t >= must_refuse.get(e.node, float("inf")):
            refused_corruption.append({"node": e.node, "code": code, "t": e.t})
            continue
        entry = {"node": e.node, "code": code, "t": e.t, "meaning": meaning(code),
                 "log_tail": _log_tail(run_dir, e.node)}
        (refused if code == BAD_CONFIG_EXIT else crashes).append(entry)
    details: dict[str, Any] = {"crashes": crashes, "refused_config": refused, "injected_exits": injected,
                               "refused_injected_corruption": refused_corruption}
    if crashes:
        first = crashes[0]
        more = f" (+{len(crashes) - 1} more)" if len(crashes) > 1 else ""
        return Verdict(NAME, Validity.INVALID,
                       f"node crashed: {first['node']} exited with {first['code']} ({first['meaning']}){more}",
                       details)
    if refused:
        return Verdict(NAME, Validity.UNKNOWN,
                       f"{refused[0]['node']} refused its configuration (exit 2): the run could not "
                       "exercise the system", details)
    return Verdict(NAME, Validity.VALID,
                   f"no node crashed on its own ({injected} injected crash exit(s))" if injected
                   else "no node crashed on its own", details)
