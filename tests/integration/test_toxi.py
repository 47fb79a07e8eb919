"""The Toxiproxy adapter against the real toxiproxy-server, and against a hung fake API."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import SetupError, ToxiproxyError
from harness.toxi import ProxyConfig, Stream, ToxiproxyClient
from harness.toxiproxy_server import REPO_ROOT, ToxiproxyServer, find_server_binary
from harness.versions import TOXIPROXY_PINNED

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


def test_the_server_that_runs_is_the_pinned_release_with_its_version_stamped(tmp_path: Path) -> None:
    """The Makefile's pin, the harness's constant and what the API reports (the history records
    it) agree; an unstamped build would say ``git``."""
    pinned = re.search(r"^TOXIPROXY_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None and pinned.group(1) == TOXIPROXY_PINNED
    with ToxiproxyServer(tmp_path / "tp.log") as server:
        assert ToxiproxyClient(server.api_url).version() == TOXIPROXY_PINNED


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def serve() -> None:
        with sock.accept()[0] as conn:
            while data := conn.recv(4096):
                conn.sendall(data)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


def test_bytes_are_counted_only_when_a_connection_closes(tmp_path: Path) -> None:
    """Why bite judgement cannot rest on bytes (docs/architecture.md): v2.12's ``ToxicLink.read`` /
    ``write`` add to the metrics after ``io.Copy`` returns, i.e. at close. Proxy updates go by
    PATCH, so the server logs no deprecation warning."""
    upstream, thread = _echo_server()
    with upstream, ToxiproxyServer(tmp_path / "tp.log") as server:
        toxi = ToxiproxyClient(server.api_url)
        listen = f"127.0.0.1:{_port()}"
        toxi.create_proxy("n1->n2", listen, f"127.0.0.1:{upstream.getsockname()[1]}")
        host, port = listen.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"x" * 100)
            got = b""
            while len(got) < 100:
                got += conn.recv(100)
            assert toxi.traffic().get(("n1->n2", Stream.UPSTREAM)) is None  # 100 B through, none counted
        toxi.disable("n1->n2")  # closes the proxy's side as well
        thread.join(timeout=5)
        assert toxi.traffic()[("n1->n2", Stream.UPSTREAM)] == (100, 100)
        toxi.enable("n1->n2")
        assert "depercated" not in server.log_path.read_text() and "deprecated" not in server.log_path.read_text()
