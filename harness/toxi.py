"""Toxiproxy API adapter: every proxy and toxic operation, each bounded in time.

This is the only module that imports toxiproxy-python. Its high-level objects keep the server's
host/port as class attributes of ``APIConsumer`` (one server per process, while we run one per
cluster) and never pass a timeout to ``requests``, so a hung API would hang the caller. We use
its transport layer instead: a per-server subclass of ``APIConsumer`` (so several servers can
coexist) whose ``get``/``post``/``delete`` forward ``timeout=`` to ``requests``, and its error
mapping (``ProxyExists``, ``NotFound``, ``InvalidToxic``). A call that fails, answers an error
status or does not answer within ``timeout_s`` raises ToxiproxyError naming the call.

Proxy updates use ``PATCH`` (Toxiproxy v2.12 logs a deprecation warning for every ``POST``
update); a server that answers 405 to it (v2.5 routes ``POST`` only) gets the ``POST``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
from toxiproxy.api import APIConsumer, validate_response
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from harness.errors import ToxiproxyError


class Stream(StrEnum):
    """Direction on a proxy: ``upstream`` = client to server (requests), ``downstream`` = replies."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@dataclass(frozen=True)
class ProxyConfig:
    """A proxy to create: ``listen`` and ``upstream`` are ``host:port``."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: Stream
    toxicity: float
    attributes: Mapping[str, Any] = field(default_factory=dict)


_METRIC = re.compile(r"^toxiproxy_proxy_(received|sent)_bytes_total\{([^}]*)\}\s+(\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _text(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.strip()[:200]


def _proxy(doc: Mapping[str, Any]) -> ProxyInfo:
    return ProxyInfo(doc["name"], doc["listen"], doc["upstream"], bool(doc["enabled"]))


def _toxic(doc: Mapping[str, Any]) -> Toxic:
    return Toxic(doc["name"], doc["type"], Stream(doc["stream"]), float(doc.get("toxicity", 1.0)),
                 dict(doc.get("attributes") or {}))


class ToxiproxyClient:
    """Client of one Toxiproxy server's REST API (``api_url`` like ``http://127.0.0.1:8474``).

    Every socket operation of every call is bounded by ``timeout_s``. Thread-safe (no shared
    connection state).
    """

    def __init__(self, api_url: str, timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._toxic_seq = itertools.count(1)
        parts = urlsplit(self.api_url)
        self._api: type[APIConsumer] = type("ToxiproxyServerAPI", (APIConsumer,),
                                            {"host": parts.hostname, "port": parts.port})

    def _call(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        what = f"toxiproxy {method} {unquote(path)}"
        try:
            if method == "GET":
                resp = self._api.get(path, timeout=self.timeout_s)
            elif method == "DELETE":
                resp = self._api.delete(path, timeout=self.timeout_s)
            elif method == "PATCH":
                resp = validate_response(requests.patch(self.api_url + path, json=body, timeout=self.timeout_s))
                if resp.status_code == 405:  # an older server (v2.5): updates are POSTs there
                    resp = self._api.post(path, json=body, timeout=self.timeout_s)
            else:
                resp = self._api.post(path, json=body, timeout=self.timeout_s)
        except NotFound as exc:
            if missing_ok:
                return None
            raise ToxiproxyError(f"{what}: HTTP 404: {_text(exc)}") from None
        except (ProxyExists, InvalidToxic) as exc:
            raise ToxiproxyError(f"{what}: {type(exc).__name__}: {_text(exc)}") from None
        except requests.Timeout:
            raise ToxiproxyError(f"{what}: no answer within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise ToxiproxyError(f"{what}: {exc}") from None
        if resp.status_code >= 400:
            raise ToxiproxyError(f"{what}: HTTP {resp.status_code}: {resp.text.strip()[:200]}")
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def version(self) -> str:
        """The server's version string (also a liveness probe)."""
        answer = self._call("GET", "/version")
        return answer.get("version", "") if isinstance(answer, dict) else str(answer)

    # ---- proxies ------------------------------------------------------------------------------

    def proxies(self) -> dict[str, ProxyInfo]:
        return {name: _proxy(doc) for name, doc in (self._call("GET", "/proxies") or {}).items()}

    def proxy(self, name: str) -> ProxyInfo | None:
        doc = self._call("GET", f"/proxies/{quote(name, safe='')}", missing_ok=True)
        return _proxy(doc) if doc else None

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> ProxyInfo:
        """Create a proxy; raises if the name exists or the listen address cannot be bound."""
        doc = self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream,
                                              "enabled": enabled})
        return _proxy(doc)

    def populate(self, configs: Iterable[ProxyConfig]) -> list[ProxyInfo]:
        """Create or replace (by name) all the given proxies in one call."""
        body = [{"name": c.name, "listen": c.listen, "upstream": c.upstream, "enabled": c.enabled}
                for c in configs]
        answer = self._call("POST", "/populate", body) or {}
        return [_proxy(doc) for doc in answer.get("proxies", [])]

    def delete_proxy(self, name: str, missing_ok: bool = False) -> None:
        self._call("DELETE", f"/proxies/{quote(name, safe='')}", missing_ok=missing_ok)

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        """Enable or disable a proxy (disabled: it stops listening and drops its connections)."""
        return _proxy(self._call("PATCH", f"/proxies/{quote(name, safe='')}", {"enabled": enabled}))

    def enable(self, name: str) -> ProxyInfo:
        return self.set_enabled(name, True)

    def disable(self, name: str) -> ProxyInfo:
        return self.set_enabled(name, False)

    def reset(self) -> None:
        """Re-enable every proxy and remove every toxic (``POST /reset``)."""
        self._call("POST", "/reset")

    # ---- toxics -------------------------------------------------------------------------------

    def add_toxic(self, proxy: str, type: str, stream: Stream | str = Stream.DOWNSTREAM,
                  toxicity: float = 1.0, attributes: Mapping[str, Any] | None = None,
                  name: str | None = None) -> str:
        """Add a toxic (``latency``, ``timeout``, ``reset_peer``, ``bandwidth``, ``slicer``,
        ``limit_data``, ``slow_close``) to one direction of a proxy; returns its name (default:
        ``<type>_<stream>_<n>``, unique per client)."""
        stream = Stream(stream)
        if not 0.0 <= toxicity <= 1.0:
            raise ToxiproxyError(f"toxicity must be within [0, 1], got {toxicity}")
        name = name or f"{type}_{stream.value}_{next(self._toxic_seq)}"
        self._call("POST", f"/proxies/{quote(proxy, safe='')}/toxics",
                   {"name": name, "type": type, "stream": stream.value, "toxicity": toxicity,
                    "attributes": dict(attributes or {})})
        return name

    def remove_toxic(self, proxy: str, name: str, missing_ok: bool = False) -> None:
        self._call("DELETE", f"/proxies/{quote(proxy, safe='')}/toxics/{quote(name, safe='')}",
                   missing_ok=missing_ok)

    def toxics(self, proxy: str) -> list[Toxic]:
        return [_toxic(doc) for doc in self._call("GET", f"/proxies/{quote(proxy, safe='')}/toxics") or []]

    # ---- traffic --------------------------------------------------------------------------------

    def traffic(self) -> dict[tuple[str, Stream], tuple[int, int]]:
        """Bytes per (proxy, stream) since the server started: (received from the sender, sent on
        to the receiver), from ``GET /metrics`` (the server runs with ``-proxy-metrics``). A
        stream that never carried a byte is absent. ToxiproxyError when metrics are off."""
        text = self._call("GET", "/metrics")
        if not isinstance(text, str):
            raise ToxiproxyError("toxiproxy GET /metrics: no Prometheus text (is -proxy-metrics on?)")
        out: dict[tuple[str, Stream], list[int]] = {}
        for match in _METRIC.finditer(text):
            which, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), match.group(3)
            try:
                key = (labels["proxy"], Stream(labels["direction"]))
            except (KeyError, ValueError):
                continue
            out.setdefault(key, [0, 0])[0 if which == "received" else 1] = int(float(value))
        return {key: (pair[0], pair[1]) for key, pair in out.items()}
