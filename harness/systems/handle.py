"""NodeHandle: ``Cluster.node(id)`` for a system that offers only the seam (observe + KV).

Suites, faults and the harness's own helpers talk to "a node" through one object: KV operations
(``get``/``put``/``cas``/``append``), ``status()`` and ``health()``. kuduraft's ``NodeClient``
has those and more (runtime flags, ``/events``, step-down); for any other system the handle
answers the first from the System's KvClient and Observer, and the kuduraft-only calls raise
FaultUnavailable naming the missing capability (reading its runtime flags gives none), so a suite that reaches one is skipped with the
reason instead of failing the system.
"""

from __future__ import annotations

from typing import Any

from harness.errors import FaultUnavailable
from harness.nodeclient import KvResult, Outcome
from harness.systems.base import AppendKvClient, Capability, KvClient, Observer


class NodeHandle:
    """One node of ``system_name``: KV through ``kv`` (its ``client->n`` proxy), state from
    ``observer`` (the node directly)."""

    def __init__(self, node_id: str, system_name: str, observer: Observer, kv: KvClient) -> None:
        self.node_id = node_id
        self.system_name = system_name
        self.observer = observer
        self.kv_client = kv

    # ---- state ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The node's observation as a status document (``NodeObservation.status_document``)."""
        return self.observer.observe().status_document()

    def health(self) -> bool:
        """True once the node answers an observation; NodeUnreachable while it does not answer
        (as ``NodeClient.health``: waits treat that as "not yet", pause checks as "silent")."""
        self.observer.observe()
        return True

    # ---- KV ---------------------------------------------------------------------------------------

    def get(self, key: str, timeout_s: float | None = None) -> KvResult:
        return self.kv_client.get(key, timeout_s)

    def put(self, key: str, value: Any, timeout_s: float | None = None) -> KvResult:
        return self.kv_client.put(key, value, timeout_s)

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult:
        return self.kv_client.cas(key, expected, new, timeout_s)

    def append(self, key: str, value: str, timeout_s: float | None = None) -> KvResult:
        if not isinstance(self.kv_client, AppendKvClient):
            return KvResult(Outcome.FAIL, 0.0, {}, f"{self.system_name} has no append")
        return self.kv_client.append(key, value, timeout_s)

    # ---- what only kuduraft's node offers ---------------------------------------------------------

    def _lacks(self, what: str, capability: Capability) -> FaultUnavailable:
        return FaultUnavailable(what, f"{self.system_name} lacks the capability {capability.value} "
                                      f"({self.node_id} has no {what})")

    def events(self, since: int = 0) -> dict[str, Any]:
        raise self._lacks("event trace", Capability.NODE_TRACE)

    def flags(self) -> dict[str, Any]:
        """None: a system without runtime flags has none to read, and so none to restore (the
        final heal's flag reset is then a no-op); changing one is unavailable."""
        return {}

    def set_flag(self, name: str, value: Any) -> Any:
        raise self._lacks("runtime flags", Capability.RUNTIME_FLAGS)

    def step_down(self) -> bool:
        raise self._lacks("step-down", Capability.STEP_DOWN)
