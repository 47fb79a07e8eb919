"""The kuduraft node (``nodes/``) as a System: imported only by ``harness.systems.registry`` and tests."""

from harness.systems.kuduraft.client import NodeClient
from harness.systems.kuduraft.system import (
    KuduraftObserver,
    KuduraftSystem,
    cluster_document,
    node_args,
    observation,
)

__all__ = ["KuduraftObserver", "KuduraftSystem", "NodeClient", "cluster_document", "node_args", "observation"]
