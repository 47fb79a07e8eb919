"""The Toxiproxy adapter against the real toxiproxy-server, and against a hung fake API."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import SetupError, ToxiproxyError
from harness.toxi import ProxyConfig, Stream, ToxiproxyClient
from harness.toxiproxy_server import ToxiproxyServer, find_server_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def toxi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyClient]:
    log = tmp_path_factory.mktemp("toxi") / "toxiproxy.log"
    with ToxiproxyServer(log, seed=1) as server:
        assert server.api_url.startswith("http://127.0.0.1:")
        yield ToxiproxyClient(server.api_url, timeout_s=5.0)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_proxy_lifecycle(toxi: ToxiproxyClient) -> None:
    listen = f"127.0.0.1:{_port()}"
    info = toxi.create_proxy("n1->n2", listen, "127.0.0.1:9")
    assert (info.name, info.listen, info.enabled) == ("n1->n2", listen, True)
    assert toxi.proxy("n1->n2") == info
    with pytest.raises(ToxiproxyError, match="409"):
        toxi.create_proxy("n1->n2", f"127.0.0.1:{_port()}", "127.0.0.1:9")
    assert toxi.disable("n1->n2").enabled is False
    assert toxi.proxy("n1->n2").enabled is False  # type: ignore[union-attr]
    assert toxi.enable("n1->n2").enabled is True
    toxi.delete_proxy("n1->n2")
    assert toxi.proxy("n1->n2") is None
    with pytest.raises(ToxiproxyError, match="404"):
        toxi.delete_proxy("n1->n2")
    toxi.delete_proxy("n1->n2", missing_ok=True)


def test_toxics_and_reset(toxi: ToxiproxyClient) -> None:
    made = toxi.populate([ProxyConfig("client->n1", f"127.0.0.1:{_port()}", "127.0.0.1:9"),
                          ProxyConfig("n2->n3", f"127.0.0.1:{_port()}", "127.0.0.1:9")])
    assert sorted(p.name for p in made) == ["client->n1", "n2->n3"]
    up = toxi.add_toxic("n2->n3", "latency", Stream.UPSTREAM, attributes={"latency": 250})
    down = toxi.add_toxic("n2->n3", "timeout", "downstream", toxicity=0.5, attributes={"timeout": 0})
    assert up != down
    toxics = {t.name: t for t in toxi.toxics("n2->n3")}
    assert toxics[up].stream is Stream.UPSTREAM and toxics[up].attributes["latency"] == 250
    assert toxics[down].toxicity == 0.5
    toxi.remove_toxic("n2->n3", up)
    assert [t.name for t in toxi.toxics("n2->n3")] == [down]
    toxi.disable("client->n1")
    toxi.reset()
    assert toxi.toxics("n2->n3") == []
    assert all(p.enabled for p in toxi.proxies().values())
    with pytest.raises(ToxiproxyError):
        toxi.add_toxic("n2->n3", "latency", toxicity=2.0)
    with pytest.raises(ToxiproxyError, match="400|409|not"):
        toxi.add_toxic("n2->n3", "no_such_toxic_type")


def test_disabled_proxy_refuses_connections(toxi: ToxiproxyClient) -> None:
    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(4)
        listen = f"127.0.0.1:{_port()}"
        toxi.create_proxy("n3->n1", listen, f"127.0.0.1:{upstream.getsockname()[1]}")
        host, port = listen.split(":")
        socket.create_connection((host, int(port)), timeout=2).close()
        toxi.disable("n3->n1")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2)
        toxi.delete_proxy("n3->n1")


def test_hung_api_raises_within_the_bound() -> None:
    with socket.socket() as hung:  # accepts connections (backlog) but never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        client = ToxiproxyClient(f"http://127.0.0.1:{hung.getsockname()[1]}", timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(ToxiproxyError, match="POST /proxies/n1->n2/toxics: no answer within 0.3 s"):
            client.add_toxic("n1->n2", "latency")
        assert time.monotonic() - started < 2.0
        with pytest.raises(ToxiproxyError, match="POST /reset"):
            client.reset()


def test_binary_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "toxiproxy-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TOXIPROXY_SERVER", str(fake))
    assert find_server_binary() == fake
    monkeypatch.setenv("TOXIPROXY_SERVER", str(tmp_path / "missing"))
    with pytest.raises(SetupError, match="make setup"):
        find_server_binary()
    monkeypatch.delenv("TOXIPROXY_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SetupError, match="make setup"):
        find_server_binary(repo_root=tmp_path)


def test_server_that_dies_at_start_is_a_setup_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken-server"
    broken.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    server = ToxiproxyServer(tmp_path / "tp.log", binary=broken, start_timeout_s=2.0)
    with pytest.raises(SetupError, match="exited with code 3") as info:
        server.start(attempts=1)
    assert "cannot start" in str(info.value)
