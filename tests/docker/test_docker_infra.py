"""Smoke tests of the Docker infrastructure: daemon, the three images, a private network, labels and sweeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.docker.daemon import ensure_daemon
from harness.docker.images import Images, ensure_images
from harness.docker.resources import LABEL_RUN, Role, RunResources, sweep

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    started = time.monotonic()
    client = ensure_daemon(None)
    print(f"\n[timing] ensure_daemon: {time.monotonic() - started:.2f} s")
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(client: docker.DockerClient) -> Images:
    started = time.monotonic()
    images = ensure_images(client, None)
    print(f"[timing] ensure_images (first in this session): {time.monotonic() - started:.2f} s -> {images}")
    return images


def test_second_ensure_images_is_cached(client: docker.DockerClient, images: Images) -> None:
    started = time.monotonic()
    again = ensure_images(client, None)
    elapsed_s = time.monotonic() - started
    print(f"[timing] ensure_images (warm): {elapsed_s:.3f} s")
    assert again == images
    assert elapsed_s < 5.0


def test_node_image_imports_nodes(client: docker.DockerClient, images: Images) -> None:
    out = client.containers.run(
        images.node,
        entrypoint=["python3", "-c", "import nodes, sys; print(sys.version_info[:2])"],
        network_mode="none",
        remove=True,
    )
    assert out.strip() == b"(3, 11)"


def test_toxiproxy_answers_on_private_network(
    client: docker.DockerClient, images: Images, tmp_path: Path
) -> None:
    run = RunResources(f"test-infra-{os.getpid()}", run_dir=tmp_path)
    network = client.networks.create(
        run.name(Role.NETWORK), driver="bridge", internal=True, labels=run.labels(Role.NETWORK)
    )
    try:
        container = client.containers.run(
            images.toxiproxy,
            name=run.name(Role.TOXIPROXY),
            labels=run.labels(Role.TOXIPROXY),
            network=network.name,
            detach=True,
        )
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        assert ip, "toxiproxy container got no address on the private network"
        for attempt in Retrying(
            stop=stop_after_delay(10),
            wait=wait_fixed(0.2),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        ):
            with attempt, urllib.request.urlopen(f"http://{ip}:8474/proxies", timeout=2) as resp:
                assert json.load(resp) == {}
        assert container.attrs["HostConfig"]["PortBindings"] in (None, {}), "never publish ports on the host"
    finally:
        report = sweep(client, run_id=run.run_id, only_dead=False)
    assert report.errors == []
    assert report.containers == [run.name(Role.TOXIPROXY)]
    assert report.networks == [run.name(Role.NETWORK)]
    assert (tmp_path / "docker" / f"{run.name(Role.TOXIPROXY)}.log").is_file()
    assert client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run.run_id}"}) == []


def test_sweep_removes_dead_runs_only(client: docker.DockerClient, images: Images) -> None:
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = RunResources(f"test-dead-{os.getpid()}", pid=int(dead_pid.stdout))
    live = RunResources(f"test-live-{os.getpid()}")
    made = []
    try:
        for run in (dead, live):
            made.append(client.volumes.create(run.name(Role.VOLUME), labels=run.labels(Role.VOLUME)))
            made.append(
                client.networks.create(run.name(Role.NETWORK), internal=True, labels=run.labels(Role.NETWORK))
            )
            made.append(
                client.containers.create(
                    images.base, ["true"], name=run.name(Role.NODE, "n1"), labels=run.labels(Role.NODE, "n1")
                )
            )
        report = sweep(client)  # only dead runs, every run id
        assert report.errors == []
        assert dead.name(Role.NODE, "n1") in report.containers
        assert live.name(Role.NODE, "n1") not in report.containers
        assert set(report.networks) >= {dead.name(Role.NETWORK)}
        assert live.name(Role.NETWORK) not in report.networks
        assert dead.name(Role.VOLUME) in report.volumes
    finally:
        final = sweep(client, run_id=live.run_id, only_dead=False)
    assert final.errors == []
    assert set(final.containers + final.networks + final.volumes) == {
        live.name(Role.NODE, "n1"),
        live.name(Role.NETWORK),
        live.name(Role.VOLUME),
    }
