"""Docker calls the backend makes for one container: create it on the run's networks, wait for
Toxiproxy's API, read a container's addresses. Thin wrappers over the SDK's low-level API."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import docker
from docker.errors import NotFound
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.errors import SetupError

__all__ = ["addresses_on", "create_container", "wait_for_api"]


def create_container(
    api: docker.APIClient, network: str, image: str, name: str, labels: dict[str, str], command: list[str],
    ip: str | None = None, join: str | None = None, bind: Path | None = None,
    extra_hosts: dict[str, str] | None = None, **kwargs: object,
) -> str:  # fmt: skip
    """Create (not start) a container, replacing a stale one of that name (a former incarnation).

    It gets its own address ``ip`` on ``network``, or shares container ``join``'s network
    namespace. ``bind`` is bind-mounted at its own absolute path; ``extra_hosts`` become
    ``/etc/hosts`` entries; ``kwargs`` go to Docker's create call.
    """
    with contextlib.suppress(NotFound):
        api.remove_container(name, force=True)
    binds = {str(bind): {"bind": str(bind), "mode": "rw"}} if bind is not None else None
    network_mode = f"container:{join}" if join is not None else network
    host_config = api.create_host_config(network_mode=network_mode, binds=binds, extra_hosts=extra_hosts)
    networking = None
    if ip is not None:
        endpoint = api.create_endpoint_config(ipv4_address=ip)
        networking = api.create_networking_config({network: endpoint})
    created = api.create_container(
        image, command=command, name=name, labels=labels, host_config=host_config,
        networking_config=networking, **kwargs,
    )  # fmt: skip
    return str(created["Id"])


def wait_for_api(api: docker.APIClient, container_id: str, url: str, timeout_s: float, what: str) -> None:
    """Wait until ``url`` answers; SetupError with the container's last log lines otherwise."""
    try:
        for attempt in Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.1),
                                retry=retry_if_exception_type(OSError), reraise=True):  # fmt: skip
            with attempt, urllib.request.urlopen(url, timeout=1.0):
                pass
    except OSError as exc:
        logs = api.logs(container_id).decode(errors="replace").splitlines()[-10:]
        raise SetupError(f"{what} container did not answer at {url}: {exc}", {what: logs}) from None


def addresses_on(api: docker.APIClient, container_id: str, networks: Mapping[str, str]) -> dict[str, str]:
    """A running container's IPv4 address on each of ``networks`` (key -> network name), by key;
    SetupError naming the keys it has none for."""
    attached = api.inspect_container(container_id)["NetworkSettings"]["Networks"] or {}
    found = {key: (attached.get(net) or {}).get("IPAddress") for key, net in networks.items()}
    missing = [key for key, ip in found.items() if not ip]
    if missing:
        raise SetupError(f"container {container_id[:12]} got no address on the networks of {', '.join(missing)}")
    return {key: str(ip) for key, ip in found.items()}
