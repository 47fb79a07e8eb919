"""Docker setup failures are one line naming the problem and the fix (no daemon, build failure, no subnet)."""

from __future__ import annotations

from typing import Any

import docker
import pytest
from docker.errors import APIError, ImageNotFound

from harness.docker import daemon, images, network
from harness.docker.resources import RunResources
from harness.errors import SetupError


def test_unanswering_docker_host_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(daemon.DockerUnavailable) as err:
        daemon.ensure_daemon(None)
    assert "\n" not in str(err.value) and "unset DOCKER_HOST" in str(err.value)
    assert daemon.unavailable_reason() is not None


def test_not_root_without_daemon_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(daemon, "client_if_answering", lambda timeout_s=0: None)
    monkeypatch.setattr(daemon.os, "geteuid", lambda: 1000)
    with pytest.raises(daemon.DockerUnavailable) as err:
        daemon.ensure_daemon(None)
    assert "\n" not in str(err.value) and "run the harness as root" in str(err.value)


class _FakeImages:
    def get(self, name: str) -> None:
        raise ImageNotFound(name)


class _FakeApi:
    def build(self, **kwargs: Any) -> Any:
        return iter([{"stream": "Step 1/3 : FROM x"},
                     {"error": "The command '/bin/sh -c pip' returned a non-zero code: 1\n",
                      "errorDetail": {"message": "The command '/bin/sh -c pip'\nreturned a non-zero code: 1"}}])

    def create_network(self, *args: Any, **kwargs: Any) -> None:
        raise APIError("could not find an available, non-overlapping IPv4 address pool")


class _FakeNetworks:
    def create(self, *args: Any, **kwargs: Any) -> None:
        raise APIError("could not find an available, non-overlapping IPv4 address pool")


class _FakeClient:
    images = _FakeImages()
    api = _FakeApi()
    networks = _FakeNetworks()


def test_image_build_failure_is_one_line_with_the_fix() -> None:
    with pytest.raises(SetupError) as err:
        images._ensure_built(_FakeClient(), None, "raftchaos/node", {"Dockerfile": b"FROM x"}, "base")  # type: ignore[arg-type]
    text = str(err.value)
    assert "\n" not in text and "non-zero code: 1" in text and "make docker-setup" in text


def test_no_free_subnet_is_one_line_with_the_fix() -> None:
    client: docker.DockerClient = _FakeClient()  # type: ignore[assignment]
    with pytest.raises(SetupError) as err:
        network.create_run_network(client, RunResources("r"))
    text = str(err.value)
    assert "\n" not in text and "raftchaos clean" in text and "address pool" in text


def test_no_pool_for_a_source_network_is_one_line_naming_it() -> None:
    client: docker.DockerClient = _FakeClient()  # type: ignore[assignment]
    with pytest.raises(SetupError) as err:
        network.create_source_network(client, RunResources("r"), "n2")
    text = str(err.value)
    assert "\n" not in text and "-n2-network" in text and "raftchaos clean" in text
