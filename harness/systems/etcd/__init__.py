"""etcd 3.4 as a System: imported only by ``harness.systems.registry`` and tests."""

from harness.systems.etcd.system import EtcdSystem, cluster_token, find_etcd

__all__ = ["EtcdSystem", "cluster_token", "find_etcd"]
