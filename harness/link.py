"""Link: the Toxiproxy proxy of one directed link (``n1->n2`` or ``client->n1``) as a small object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.backend import LinkId
from harness.errors import ToxiproxyError
from harness.toxi import ProxyInfo, Stream, Toxic, ToxiproxyClient


class Link:
    """One directed link's proxy. ``upstream`` toxics act on ``src``'s requests, ``downstream``
    on ``dst``'s replies. Operations are not recorded in the history: the fault using them
    records what it did. Every call is bounded in time (ToxiproxyError otherwise)."""

    def __init__(self, link: LinkId, toxi: ToxiproxyClient) -> None:
        self.id = link
        self._toxi = toxi

    @property
    def name(self) -> str:
        return self.id.name

    @property
    def src(self) -> str:
        return self.id.src

    @property
    def dst(self) -> str:
        return self.id.dst

    def info(self) -> ProxyInfo:
        found = self._toxi.proxy(self.name)
        if found is None:
            raise ToxiproxyError(f"proxy {self.name} does not exist")
        return found

    @property
    def enabled(self) -> bool:
        return self.info().enabled

    def enable(self) -> None:
        self._toxi.enable(self.name)

    def disable(self) -> None:
        """Stop listening and drop open connections: the link is cut in both directions."""
        self._toxi.disable(self.name)

    def add_toxic(self, type: str, stream: Stream | str = Stream.DOWNSTREAM, toxicity: float = 1.0,
                  attributes: Mapping[str, Any] | None = None, name: str | None = None) -> str:
        """Add a toxic; returns its name (for ``remove_toxic``)."""
        return self._toxi.add_toxic(self.name, type, stream, toxicity, attributes, name)

    def remove_toxic(self, name: str, missing_ok: bool = True) -> None:
        self._toxi.remove_toxic(self.name, name, missing_ok=missing_ok)

    def toxics(self) -> list[Toxic]:
        return self._toxi.toxics(self.name)

    def traffic(self) -> dict[Stream, tuple[int, int]]:
        """Bytes so far per stream of this link: (received from the sender, sent on); see
        ``ToxiproxyClient.traffic``."""
        return {stream: pair for (proxy, stream), pair in self.server_traffic().items() if proxy == self.name}

    def server_traffic(self) -> dict[tuple[str, Stream], tuple[int, int]]:
        """Bytes so far on every proxy of this link's Toxiproxy server, in one API call."""
        return self._toxi.traffic()

    def reset(self) -> None:
        """Remove this link's toxics and enable it (other links untouched)."""
        for toxic in self.toxics():
            self.remove_toxic(toxic.name)
        self.enable()

    def __repr__(self) -> str:
        return f"Link({self.name})"
