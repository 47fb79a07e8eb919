"""Fast seeded generators of hostile node input for benchmarks/fuzz_node.py: HTTP requests and RPC
frames as mutations of valid ones, from one random.Random (Hypothesis is too slow per example at 10^6).

Inputs come in two classes, because one connection carries a batch of them:

- *kept*: well framed (a correct HTTP head and Content-Length; a length-prefixed strict-JSON frame
  with an int id, a str rpc and an object body), hostile inside. The node must answer each and
  keep the connection, so many of them share one connection (pipelined).
- *closing*: broken framing or content the node must refuse by closing (a malformed head,
  NaN/Infinity/1e999 or too-deep JSON in a frame, random bytes, huge or truncated length
  prefixes). One per connection, last.

Like the live Hypothesis test, no generated frame impersonates a member: terms are <= 0,
non-integers or past int64, and RunLeaderElection names a wrong destination.
"""

from __future__ import annotations

import json
import random
import struct

MAX_FRAME_BYTES = 16 * 1024 * 1024
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]
STRICT_ODD = ["-0", "1e-400", str(2**63), str(-(2**63) - 1), "9" * 4000, '"\\ud800"', '"\\u0000"', "[]", "{}",
              "null", "true", '""', '"n1"', "-1", "0", "1.5", '"' + "\u00e9" * 50 + '"']
UUIDS = ['"n1"', '"n2"', '"n3"', '"n9"', '""', "null", "7", "[]"]
WRONG_UUIDS = ['"n9"', '"nobody"', '""', "7", "[]"]
BAD_TERMS = ["0", "-1", "-9", '"1"', "null", "true", "[1]", "1.0", str(2**63), "{}"]
FIELDS = ["key", "value", "from", "to", "tablet_id", "caller_uuid", "dest_uuid", "caller_term", "preceding_id",
          "ops", "committed_index", "all_replicated_index", "proxy_dest_uuid", "proxy_hops_remaining",
          "candidate_uuid", "candidate_term", "candidate_status", "term", "index", "kind", "payload"]
KV_VERBS = ["put", "get", "cas", "append", "nope"]


class Gen:
    """Every choice comes from ``rng``: one seed reproduces the whole input sequence."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fuzz_writes = 0

    # ---- JSON text ---------------------------------------------------------------------------------

    def value(self, depth: int = 0, strict: bool = True) -> str:
        """A JSON value as text; ``strict`` False may embed non-standard tokens or broken nesting."""
        r = self.rng.random()
        if not strict and r < 0.15:
            return self.rng.choice(NON_FINITE)
        if not strict and r < 0.2:
            n = self.rng.choice([81, 200, 5000, 100_000])
            return "[" * n + "]" * n * self.rng.randint(0, 1)
        if r < 0.35:
            return self.rng.choice(STRICT_ODD)
        if r < 0.5:
            return json.dumps("fz" + "".join(self.rng.choice("ab\u00e9\u4e2d\"\\/\n") for _ in range(self.rng.randint(0, 12))))
        if r < 0.6:
            return str(self.rng.randint(-(2**70), 2**70))
        if r < 0.63:
            return '"' + "x" * self.rng.choice([1000, 60_000, 200_000]) + '"'
        if r < 0.68:
            n = self.rng.randint(1, 60)
            return "[" * n + "1" + "]" * n
        if depth < 3 and r < 0.84:
            return "[" + ",".join(self.value(depth + 1, strict) for _ in range(self.rng.randint(0, 3))) + "]"
        if depth < 3:
            items = (f"{json.dumps(self.rng.choice(FIELDS))}:{self.value(depth + 1, strict)}"
                     for _ in range(self.rng.randint(0, 3)))
            return "{" + ",".join(items) + "}"
        return "1"

    def mutate(self, data: bytes) -> bytes:
        """Byte-level damage: flips, deletions, insertions, truncation."""
        buf = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            op = self.rng.random()
            pos = self.rng.randrange(len(buf) + 1)
            if op < 0.4 and buf:
                buf[min(pos, len(buf) - 1)] = self.rng.randrange(256)
            elif op < 0.6 and buf:
                del buf[pos:pos + self.rng.randint(1, 8)]
            elif op < 0.85:
                buf[pos:pos] = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
            else:
                del buf[pos:]
        return bytes(buf)

    # ---- HTTP --------------------------------------------------------------------------------------

    def kv_body(self) -> bytes:
        r = self.rng.random()
        if r < 0.03:  # a valid put: really replicated (keys start with "fz", never the tracked ones)
            self.fuzz_writes += 1
            return json.dumps({"key": f"fz{self.rng.randrange(1000)}", "value": self.rng.randrange(100)}).encode()
        if r < 0.55:
            fields = self.rng.sample(["key", "value", "from", "to"], self.rng.randint(1, 4))
            text = "{" + ",".join(f'"{f}":{self.value(strict=False)}' for f in fields) + "}"
            return text.encode("utf-8", "surrogatepass")
        if r < 0.7:
            return self.mutate(b'{"key":"fz1","value":"v","from":"a","to":"b"}')
        if r < 0.8:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 64)))
        return self.value(strict=False).encode("utf-8", "surrogatepass")

    def http_kept(self) -> bytes:
        """A well-framed request with a hostile target or body: answered, connection kept."""
        r = self.rng.random()
        eol = b"\n" if self.rng.random() < 0.2 else b"\r\n"
        if r < 0.75:
            method, target, body = "POST", f"/kv/{self.rng.choice(KV_VERBS)}", self.kv_body()
        elif r < 0.85:
            method, target, body = "PUT", "/flags/" + self.rng.choice(["no_such_flag", "x"]), self.kv_body()
        else:
            method = self.rng.choice(["GET", "DELETE", "PATCH", "OPTIONS", "POST"])
            target = self.rng.choice(["/health", "/nope", "/flags", "/%ff%fe", "/kv/", "/kv/put?x=%zz",
                                      "/" + "a" * 3000, "http://h/kv/get"])
            body = b""
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: fuzz",
                f"Content-Length: {len(body)}".encode()]
        if self.rng.random() < 0.1:
            head.append(b"X-Junk: " + bytes(self.rng.randrange(32, 127) for _ in range(40)))
        return eol.join(head) + eol + eol + body

    def http_closing(self) -> bytes:
        """A request the node must refuse with a 4xx and close on (or that ends mid-request)."""
        r = self.rng.random()
        if r < 0.35:
            return self.mutate(self.http_kept())
        if r < 0.45:
            return b"POST /kv/put HTTP/1.1\r\nContent-Length: " + b"9" * self.rng.randint(8, 5000) + b"\r\n\r\n"
        if r < 0.55:
            return b"POST /kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        if r < 0.65:
            return b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        if r < 0.75:  # announced body longer than sent: ends with EOF mid-body
            return b"POST /kv/put HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"key\":"
        if r < 0.85:
            return self.rng.choice([b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\n\n", b"\x16\x03\x01\x00\xff\r\n\r\n",
                                    b"GET http://[::1 HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"])
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 300)))

    # ---- RPC ---------------------------------------------------------------------------------------

    def _op(self, strict: bool) -> str:
        payload = self.rng.choice(["null", '{"op":"put","key":"fz","value":' + self.value(strict=strict) + "}",
                                   self.value(strict=strict)])
        return ('{"term":' + self.rng.choice(BAD_TERMS + ["1"]) + ',"index":'
                + self.rng.choice(["1", "0", "-1", str(2**64), "2"]) + ',"kind":'
                + self.rng.choice(['"WRITE"', '"NO_OP"', '"PROXY_OP"', '"BOGUS"', "1"]) + ',"payload":' + payload + "}")

    def rpc_body(self, rpc: str, strict: bool) -> str:
        f: dict[str, str] = {}
        if rpc == "UpdateConsensus":
            f = {"tablet_id": '"raftchaos"', "caller_uuid": self.rng.choice(UUIDS),
                 "dest_uuid": self.rng.choice(UUIDS), "caller_term": self.rng.choice(BAD_TERMS),
                 "preceding_id": self.rng.choice(["[0,0]", "[1]", "null", "[-1,1]", "[1,99999999]"]),
                 "ops": "[" + ",".join(self._op(strict) for _ in range(self.rng.randint(0, 3))) + "]",
                 "committed_index": self.rng.choice(["0", "5", str(2**63), "-1", "null"]),
                 "all_replicated_index": self.rng.choice(["0", "null", "-3"])}
            if self.rng.random() < 0.3:
                f["proxy_dest_uuid"] = self.rng.choice(UUIDS)
                f["proxy_hops_remaining"] = self.rng.choice(["0", "1", "3", '"x"'])
        elif rpc == "RequestVote":
            f = {"candidate_uuid": self.rng.choice(UUIDS), "candidate_term": self.rng.choice(BAD_TERMS),
                 "candidate_status": self.rng.choice(['{"last_received":[0,0]}', "{}", "[]", "null",
                                                      '{"last_received":[1e5,1]}']),
                 "dest_uuid": self.rng.choice(UUIDS), "is_pre_election": self.rng.choice(["true", "false", "1"]),
                 "ignore_live_leader": self.rng.choice(["true", "false"])}
        elif rpc == "RunLeaderElection":
            f = {"dest_uuid": self.rng.choice(WRONG_UUIDS)}
        for _ in range(self.rng.randint(0, 2)):
            name = self.rng.choice(FIELDS)
            if name not in ("caller_term", "candidate_term", "dest_uuid"):  # keep the no-impersonation rule
                f[name] = self.value(strict=strict)
        return "{" + ",".join(f'"{k}":{v}' for k, v in f.items()) + "}"

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + payload

    def rpc_kept(self, rid: int) -> bytes:
        """A strict-JSON request frame with hostile fields: answered (an error), connection kept."""
        rpc = self.rng.choice(["UpdateConsensus", "UpdateConsensus", "RequestVote", "RunLeaderElection",
                               "NoSuchRpc", ""])
        body = self.rpc_body(rpc, strict=True)
        text = '{"id":' + str(rid) + ',"rpc":' + json.dumps(rpc) + ',"body":' + body + "}"
        return self.frame(text.encode("utf-8", "surrogatepass"))

    def rpc_closing(self, rid: int) -> bytes:
        """A frame the node must refuse by closing the connection."""
        r = self.rng.random()
        if r < 0.3:  # a request carrying a non-finite number or too-deep nesting
            rpc = self.rng.choice(["UpdateConsensus", "RequestVote", "RunLeaderElection"])
            body = self.rpc_body(rpc, strict=True)
            poison = self.rng.choice(NON_FINITE + ["[" * 81 + "]" * 81])
            body = body[:-1] + (',' if len(body) > 2 else '') + '"value":' + poison + "}"
            return self.frame(('{"id":' + str(rid) + ',"rpc":"' + rpc + '","body":' + body + "}").encode())
        if r < 0.45:
            return self.frame(self.mutate(self.rpc_kept(rid)[4:]))
        if r < 0.55:
            return struct.pack(">I", self.rng.randint(MAX_FRAME_BYTES + 1, 2**32 - 1)) + b"{}"
        if r < 0.65:
            whole = self.rpc_kept(rid)
            return whole[:self.rng.randint(1, len(whole) - 1)]
        if r < 0.75:
            return self.frame(self.rng.choice([b"[1,2]", b'"s"', b"\xff\xfe{}", b'{"id":"1","rpc":"x","body":{}}',
                                               b'{"id":1,"rpc":"x","body":[]}', b"{" * 100_000]))
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 300)))
