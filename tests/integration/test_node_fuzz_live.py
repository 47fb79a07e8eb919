"""Property-based fuzz (Hypothesis) of a LIVE 3-node cluster's HTTP and RPC listeners.

Generated HTTP requests (methods, targets, versions, LF or CRLF, headers, wrong or huge
Content-Length, JSON bodies with NaN/Infinity/1e999/deep nesting/huge strings/invalid UTF-8) and RPC
frames (every RPC kind with hostile field values, truncated frames, random bytes, huge length
prefixes) go straight to the nodes' own listeners; acknowledged writes through the harness's client
link are interleaved. Properties, per example: every node process is still running; the server
answers or closes within a bound (never hangs); no HTTP 500 (a handler exception is a bug); a
complete strict-JSON request frame gets exactly one response frame with its id, anything else
closes the connection without one. At the end every acknowledged write reads back.

The fuzzer does not impersonate a member: a well-formed frame from a current-term leader is not bad
input (Raft trusts its members), so generated terms are <= 0, non-integers or past int64, and
RunLeaderElection (a legitimate leadership transfer) always names a wrong destination.

Derandomized by default (reproducible in CI); RAFTCHAOS_FUZZ_RANDOM=1 explores new inputs and
RAFTCHAOS_LIVE_FUZZ_EXAMPLES sets the count.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from rawnode import NodeAddrs, exchange, http_statuses, node_addresses

from harness.cluster import Cluster
from harness.nodeclient import Outcome
from harness.spec import ClusterSpec
from nodes.jsonsafe import JsonInputError, loads
from nodes.wire import MAX_FRAME_BYTES, MAX_FRAME_DEPTH

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("RAFTCHAOS_LIVE_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("RAFTCHAOS_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
    print_blob=True,
)
WRITE_EVERY = 15
"""One acknowledged write through the client link every this many examples."""

FIELDS = ["key", "value", "from", "to", "op", "tablet_id", "caller_uuid", "dest_uuid", "caller_term",
          "preceding_id", "ops", "committed_index", "all_replicated_index", "proxy_dest_uuid",
          "proxy_hops_remaining", "candidate_uuid", "candidate_term", "candidate_status",
          "last_received", "term", "index", "kind", "payload"]
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1e-400", "-0", str(2**63),
                   str(-(2**63) - 1), "9" * 5000, "0", "-1", "1.5"]


# ---- JSON text (text, so non-standard tokens and broken nesting can be embedded) ---------------------

def _deep(n: int, balanced: bool) -> str:
    return "[" * n + ("]" * n if balanced else "")


leaves = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["true", "false", "null", '""', '"\\ud800"', '"\\u0000"']),
    st.text(max_size=20).map(json.dumps),
    st.integers(1, 300_000).map(lambda n: '"' + "x" * n + '"'),          # huge strings
)
json_text = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), kids, max_size=4).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"),
    max_leaves=8,
) | st.builds(_deep, st.integers(60, 100_000), st.booleans())


# ---- HTTP ------------------------------------------------------------------------------------------

KV_TARGETS = ["/kv/put", "/kv/get", "/kv/cas", "/kv/append"]
OTHER_TARGETS = ["/kv/nope", "/status", "/health", "/metrics", "/flags", "/flags/no_such_flag",
                 "/", "*", "/%ff%fe", "http://[::1", "http://x/kv/put?a=%zz", "/kv/put?" + "a=1&" * 200]


@st.composite
def kv_body(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.sampled_from(["key", "value", "from", "to"]), unique=True, max_size=4))
    parts = [f'"{f}":{draw(json_text)}' for f in fields]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


@st.composite
def http_request(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """(request bytes, whether the server must answer, whether it is a HEAD request)."""
    method = draw(st.sampled_from(["POST"] * 5 + ["GET", "PUT", "HEAD", "DELETE", "get", "G\x00T", ""]))
    target = draw(st.sampled_from(KV_TARGETS) | st.sampled_from(OTHER_TARGETS)
                  | st.text(max_size=30).map(lambda t: "/" + t.replace(" ", "")))
    if target.startswith("/flags/") and not target.endswith("no_such_flag"):
        target = "/flags/no_such_flag"  # never change a real flag: that is not bad input
    version = draw(st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.1x"]))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    if target.startswith("/kv/"):
        body = draw(st.builds(lambda k, v: json.dumps({"key": "fz" + k, "value": v, "from": v, "to": k}).encode(),
                              st.text(max_size=8), st.text(max_size=8) | st.integers() | st.none())
                    | kv_body() | json_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
                    | st.binary(max_size=200))
    else:
        body = draw(st.just(b"") | st.binary(max_size=50))
    mode = draw(st.sampled_from(["exact"] * 8 + ["shorter", "longer", "missing", "huge",
                                 "negative", "twice", "chunked"]))
    headers = [b"Host: fuzz"]
    headers += [h.encode("latin-1", "replace") for h in
                draw(st.lists(st.sampled_from(["Expect: 100-continue", "Connection: keep-alive",
                                               "X-A: " + "a" * 20_000, "Bad Header: x", "NoColon"])
                              | st.text(max_size=20), max_size=3))]
    length = {"exact": str(len(body)), "shorter": str(max(0, len(body) - 1)), "longer": str(len(body) + 5),
              "huge": "9" * draw(st.integers(8, 5000)), "negative": "-1", "twice": "1, 2",
              "missing": None, "chunked": None}[mode]
    if length is not None:
        headers.append(b"Content-Length: " + length.encode())
    if mode == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
    head = f"{method} {target} {version}".encode("latin-1", "replace")
    raw = eol.join([head, *headers]) + eol + eol + body
    truncate = draw(st.integers(0, 9)) == 0
    if truncate:
        raw = raw[:draw(st.integers(0, len(raw)))]
    must_answer = not truncate and mode != "longer"
    return raw, must_answer, method == "HEAD"


# ---- RPC frames ------------------------------------------------------------------------------------

bad_term = st.sampled_from(["0", "-1", "-7"]) | st.sampled_from(["NaN", "1e999", '"1"', "null", "true", "[1]",
                                                                  str(2**63), "1.0"])
any_uuid = st.sampled_from(['"n1"', '"n2"', '"n3"', '"n9"', '""', "null", "7", '"n1 "'])
wrong_uuid = st.sampled_from(['"n9"', '"nobody"', '""', "7", "[]"])


@st.composite
def op_text(draw: st.DrawFn) -> str:
    value = draw(json_text)
    payload = draw(st.sampled_from(["null", '{"op":"put","key":"fz","value":' + value + "}", value]))
    term = draw(bad_term | st.just("1"))
    index = draw(st.sampled_from(["1", "0", "-1", str(2**64), "NaN"]))
    kind = draw(st.sampled_from(['"WRITE"', '"NO_OP"', '"PROXY_OP"', '"BOGUS"', "1"]))
    return '{"term":' + term + ',"index":' + index + ',"kind":' + kind + ',"payload":' + payload + "}"


@st.composite
def rpc_body(draw: st.DrawFn, rpc: str) -> str:
    fields: dict[str, str] = {}
    if rpc == "UpdateConsensus":
        fields = {"tablet_id": '"raftchaos"', "caller_uuid": draw(any_uuid), "dest_uuid": draw(any_uuid),
                  "caller_term": draw(bad_term), "preceding_id": draw(st.sampled_from(["[0,0]", "[1]", "null", "[1e999,1]"])),
                  "ops": "[" + ",".join(draw(st.lists(op_text(), max_size=3))) + "]",
                  "committed_index": draw(st.sampled_from(["0", "5", "NaN", str(2**63), "-1"])),
                  "all_replicated_index": draw(st.sampled_from(["0", "null", "1e999"]))}
        if draw(st.booleans()):
            fields["proxy_dest_uuid"] = draw(any_uuid)
            fields["proxy_hops_remaining"] = draw(st.sampled_from(["0", "1", "5", "NaN"]))
    elif rpc == "RequestVote":
        fields = {"candidate_uuid": draw(any_uuid), "candidate_term": draw(bad_term),
                  "candidate_status": draw(st.sampled_from(['{"last_received":[0,0]}', "{}", "[]", "null",
                                                            '{"last_received":[NaN,1]}'])),
                  "dest_uuid": draw(any_uuid), "is_pre_election": draw(st.sampled_from(["true", "false", "1"])),
                  "ignore_live_leader": draw(st.sampled_from(["true", "false", "NaN"]))}
    elif rpc == "RunLeaderElection":
        fields = {"dest_uuid": draw(wrong_uuid)}
    for _ in range(draw(st.integers(0, 2))):  # extra or replaced fields with hostile values
        fields[draw(st.sampled_from(FIELDS))] = draw(json_text)
    if rpc == "RunLeaderElection":
        fields["dest_uuid"] = draw(wrong_uuid)
    for name in ("caller_term", "candidate_term"):  # never a usable positive term (see the docstring)
        if name in fields and fields[name].isdigit() and int(fields[name]) > 0 and int(fields[name]) < 2**63:
            fields[name] = "0"
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _is_request(text: str) -> bool:
    """Whether the server must answer this frame: strict JSON object with int id, str rpc, dict body."""
    try:
        obj = loads(text, MAX_FRAME_DEPTH)
    except JsonInputError:
        return False
    return (isinstance(obj, dict) and isinstance(obj.get("id"), int) and not isinstance(obj.get("id"), bool)
            and isinstance(obj.get("rpc"), str) and isinstance(obj.get("body"), dict))


@st.composite
def rpc_input(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """(bytes to send, the id the one response must carry, or None when the server must close)."""
    kind = draw(st.sampled_from(["frame", "frame", "frame", "random", "huge_length", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=300)), None
    if kind == "huge_length":
        return struct.pack(">I", draw(st.integers(MAX_FRAME_BYTES + 1, 2**32 - 1))) + draw(st.binary(max_size=20)), None
    rpc = draw(st.sampled_from(["UpdateConsensus", "RequestVote", "RunLeaderElection", "NoSuchRpc"]))
    rid = draw(st.sampled_from(["1", "42", "-1", "0", str(2**40)])
               | st.sampled_from(['"1"', "null", "1.5", "NaN", str(2**70)]))
    rpc_text = draw(st.sampled_from([json.dumps(rpc)] * 4 + ["1", "null"]))
    body = draw(rpc_body(rpc)) if draw(st.integers(0, 9)) else draw(json_text)
    text = f'{{"id":{rid},"rpc":{rpc_text},"body":{body}}}'
    data = text.encode("utf-8", "surrogatepass")
    if kind == "truncated":
        whole = _frame(data)
        return whole[:draw(st.integers(1, len(whole) - 1))], None
    return _frame(data), (json.loads(rid) if _is_request(text) else None)


def _frames(raw: bytes) -> list[dict[str, Any]]:
    out, pos = [], 0
    while pos + 4 <= len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        out.append(json.loads(raw[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


# ---- the live cluster ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, NodeAddrs]]]:
    seed = int(os.environ.get("RAFTCHAOS_TEST_SEED", "20240607"))
    print(f"raftchaos seed={seed}")
    spec = ClusterSpec(node_count=3, seed=seed, test_name="node_fuzz_live")
    with Cluster(spec, runs_root=Path(tmp_path_factory.mktemp("runs"))) as cluster:
        print(f"run dir: {cluster.run_dir}")
        cluster.wait_for_leader()
        yield cluster, node_addresses(cluster.run.cluster_file)


class Writer:
    """Acknowledged writes through the harness's client link, interleaved with the fuzz."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.prefix = f"ack-{uuid.uuid4().hex[:8]}"
        self.acked: dict[str, str] = {}
        self.leader = cluster.wait_for_leader()
        self.attempts = 0

    def write(self) -> None:
        key = f"{self.prefix}-{self.attempts}"
        self.attempts += 1
        result = self.cluster.node(self.leader).put(key, key, timeout_s=5.0)
        if result.outcome is Outcome.OK:
            self.acked[key] = key
        elif result.error == "not_leader" or result.outcome is Outcome.INFO:
            self.leader = self.cluster.wait_for_leader()

    def lost(self) -> dict[str, Any]:
        leader = self.cluster.wait_for_leader()
        seen = {k: self.cluster.node(leader).get(k, timeout_s=5.0) for k in self.acked}
        return {k: r.body.get("value") for k, r in seen.items()
                if r.outcome is not Outcome.OK or r.body.get("value") != self.acked[k]}


def _check_alive(cluster: Cluster) -> None:
    dead = [n for n in cluster.nodes if not cluster.is_running(n)]
    assert not dead, f"nodes {dead} exited; log tails: {cluster.log_tails()}"


def test_generated_http_requests_and_rpc_frames_never_kill_a_node(
        live: tuple[Cluster, dict[str, NodeAddrs]]) -> None:
    cluster, addrs = live
    writer = Writer(cluster)
    counter = {"examples": 0}
    seen: Counter[str] = Counter()

    @SETTINGS
    @given(target=st.sampled_from(sorted(addrs)), http=http_request(), rpc=rpc_input(), use_http=st.booleans())
    def example(target: str, http: tuple[bytes, bool, bool], rpc: tuple[bytes, int | None],
                use_http: bool) -> None:
        counter["examples"] += 1
        if counter["examples"] % WRITE_EVERY == 0:
            writer.write()
        if use_http:
            raw, must_answer, head_only = http
            note(f"HTTP to {target}: {raw[:300]!r}")
            out = exchange(addrs[target].http, raw)
            statuses = http_statuses(out, first_only=head_only)
            seen[f"http {statuses[0] if statuses else 'closed'}"] += 1
            assert 500 not in statuses, out[:500]
            if must_answer:
                assert statuses, f"no answer to a complete request: {out[:200]!r}"
        else:
            data, rid = rpc
            note(f"RPC to {target}: {data[:300]!r}")
            frames = _frames(exchange(addrs[target].rpc, data))
            seen["rpc answered" if frames else "rpc closed"] += 1
            if rid is None:
                assert frames == [], frames
            else:
                assert [f.get("id") for f in frames] == [rid], frames
        _check_alive(cluster)

    example()
    writer.write()
    _check_alive(cluster)
    assert writer.acked, "no write was acknowledged during the fuzz: cannot tell whether the cluster serves"
    lost = writer.lost()
    print(f"examples {counter['examples']}, acknowledged writes {len(writer.acked)} of {writer.attempts}, "
          f"lost {len(lost)}; outcomes {dict(sorted(seen.items()))}")
    assert not lost, f"acknowledged writes lost: {lost}"
