"""The listening side of a node's RPC and HTTP surfaces: the bind rule (loopback or private, never all
interfaces) both servers check before they bind (each is an ``asyncio.Protocol`` server of its own)."""

from __future__ import annotations

import ipaddress

RULE = "control/RPC surfaces listen only on a loopback or private address"


def check_listen_host(host: str) -> None:
    """Raise ValueError (naming the rule) unless ``host`` is safe to listen on.

    Accepted: ``localhost`` and IP literals that are loopback or private. Rejected: the
    unspecified addresses (``0.0.0.0``, ``::``), the empty host (which asyncio treats as every
    interface), public addresses and other host names (we cannot tell where they resolve).
    """
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"refusing to listen on all interfaces (host {host!r}): {RULE}")
    bare = host.strip("[]")
    if bare == "localhost":
        return
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(f"listen host {host!r} is not an IP address or 'localhost': {RULE}") from None
    if ip.is_unspecified:
        raise ValueError(f"refusing to listen on all interfaces ({host}): {RULE}")
    if not (ip.is_loopback or ip.is_private):
        raise ValueError(f"listen host {host} is neither loopback nor private: {RULE}")
