"""NodeClient's classification of answers against a scripted loopback HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.errors import HarnessError, NodeUnreachable
from harness.nodeclient import Outcome
from harness.systems.kuduraft.client import NodeClient

# path -> (status, body)
ANSWERS: dict[str, tuple[int, dict]] = {
    "/health": (200, {"ok": True, "uuid": "n1"}),
    "/status": (200, {"uuid": "n1", "role": "LEADER", "term": 2}),
    "/flags": (200, {"flags": {"x": 1}}),
    "/flags/x": (200, {"value": 2}),
    "/flags/nope": (404, {"error": "unknown flag nope"}),
    "/kv/put": (200, {"ok": True, "index": 7}),
    "/kv/get": (421, {"ok": False, "error": "not_leader", "leader": "n2", "leader_http": "h:1"}),
    "/kv/cas": (503, {"error": "leadership_lost"}),
    "/kv/append": (400, {"error": "bad key"}),
}


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = ANSWERS.get(self.path, (404, {}))
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_control_calls(server_url: str) -> None:
    client = NodeClient("n1", server_url)
    assert client.health() is True
    assert client.status()["role"] == "LEADER"
    assert client.flags() == {"x": 1}
    assert client.set_flag("x", 2) == 2
    with pytest.raises(HarnessError, match="404"):
        client.set_flag("nope", 1)


def test_kv_outcomes(server_url: str) -> None:
    client = NodeClient("n1", server_url)
    put = client.put("k", "v")
    assert put.outcome is Outcome.OK and put.body["index"] == 7 and put.latency_s >= 0
    get = client.get("k")
    assert get.outcome is Outcome.FAIL and get.error == "not_leader" and get.leader == "n2"
    cas = client.cas("k", "a", "b")
    assert cas.outcome is Outcome.INFO and cas.error == "leadership_lost"
    bad = client.append("k", "x")
    assert bad.outcome is Outcome.FAIL and bad.error == "bad key"


def test_refused_is_definite_and_silence_is_indeterminate() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = NodeClient("n1", f"http://127.0.0.1:{port}", timeout_s=1.0)
    assert refused.put("k", "v").outcome is Outcome.FAIL
    assert refused.put("k", "v").error == "connection_refused"
    with pytest.raises(NodeUnreachable):
        refused.status()
    with socket.socket() as silent:  # accepts (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = NodeClient("n1", f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.2)
        result = client.put("k", "v")
        assert result.outcome is Outcome.INFO and result.error == "timeout"
        with pytest.raises(NodeUnreachable, match="timeout"):
            client.health()
