"""Does disabling a Toxiproxy proxy stall when its upstream IP has vanished? (why Docker nodes have sandboxes)

Toxiproxy (v2.5 and v2.12: ``Proxy.server`` in ``proxy.go``) dials a proxy's upstream inside its
accept loop with ``net.Dial`` and no timeout, and ``stop()`` (a disable) waits for that loop. On a
Docker bridge network a stopped container's IP stops answering ARP, so the dial hangs for
seconds and so does the disable. This measures, with the project's Toxiproxy image, the time of
``PATCH enabled=false`` while a client is connected through a proxy whose upstream IP is
(a) held by a container without a listener (what a node's sandbox does), (b) vanished after its
container was removed, (c) never assigned. Run: ``.venv/bin/python benchmarks/toxiproxy_dial_stall.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
from docker.types import IPAMConfig, IPAMPool  # noqa: E402

from harness.docker.daemon import ensure_daemon  # noqa: E402
from harness.docker.images import ensure_images  # noqa: E402

PREFIX = "raftchaos-bench-dialstall"
SUBNET, TOXI_IP, UPSTREAM_IP = "172.31.251.0/24", "172.31.251.2", "172.31.251.9"
API = f"http://{TOXI_IP}:8474"


def _call(method: str, path: str, body: object) -> str:
    started = time.monotonic()
    request = urllib.request.Request(API + path, method=method, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
        return f"{time.monotonic() - started:.3f} s"
    except OSError as exc:
        return f"{time.monotonic() - started:.3f} s ({exc})"


def _container(client: docker.DockerClient, image: str, name: str, ip: str, command: list[str] | None) -> str:
    api = client.api
    networking = api.create_networking_config({PREFIX: api.create_endpoint_config(ipv4_address=ip)})
    made = api.create_container(image, command=command, name=name, networking_config=networking,
                                host_config=api.create_host_config(network_mode=PREFIX))
    api.start(made["Id"])
    return str(made["Id"])


def _disable_while_dialing() -> str:
    """Connect a client through the proxy (its accept loop starts dialing), then disable it."""
    with socket.create_connection((TOXI_IP, 20000), timeout=5) as conn:
        conn.sendall(b"x")
        time.sleep(0.2)  # a measurement, not a synchronisation: the dial is under way by then
        took = _call("PATCH", "/proxies/p", {"enabled": False})
    _call("PATCH", "/proxies/p", {"enabled": True})
    return took


def main() -> int:
    client = ensure_daemon(None)
    images = ensure_images(client, None)
    client.networks.create(PREFIX, driver="bridge", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=SUBNET)]))
    containers = []
    try:
        containers.append(_container(client, images.toxiproxy, f"{PREFIX}-toxiproxy", TOXI_IP, None))
        for _ in range(50):
            with contextlib.suppress(OSError), urllib.request.urlopen(API + "/version", timeout=1) as answer:
                print("toxiproxy", answer.read().decode().strip())
                break
            time.sleep(0.1)
        _call("POST", "/proxies", {"name": "p", "listen": f"{TOXI_IP}:20000", "upstream": f"{UPSTREAM_IP}:7000"})
        print("never assigned: disable took", _disable_while_dialing())
        held = _container(client, images.base, f"{PREFIX}-held", UPSTREAM_IP, ["sleep", "infinity"])
        containers.append(held)
        print("held (sandbox): disable took", _disable_while_dialing())
        client.api.remove_container(held, force=True)
        print("just vanished:  disable took", _disable_while_dialing())
    finally:
        for cid in containers:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(cid, force=True)
        client.networks.get(PREFIX).remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
