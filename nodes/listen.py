"""The listening side of a node's RPC and HTTP surfaces: the bind rule (loopback or private, never all
interfaces) and the accept/close lifecycle both servers share."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

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


class Listener:
    """One listening socket on ``host:port`` and the tasks serving its connections.

    The constructor enforces the bind rule (ValueError). ``start`` binds (OSError, e.g. address in
    use, propagates); each accepted connection runs ``on_connection`` on its own task, which
    ``close`` cancels; the writer is closed when the handler returns. A connection arriving while
    closing is closed at once. ``owner`` names the server in the "already started" error.
    """

    def __init__(self, owner: str, host: str, port: int) -> None:
        check_listen_host(host)  # ValueError naming the bind rule
        self._owner = owner
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._closing = False
        self._conn_tasks: set[asyncio.Task[Any]] = set()

    async def start(self, on_connection: ConnectionHandler, **start_server_kwargs: Any) -> None:
        """Bind and start accepting; RuntimeError if already started, OSError if the bind fails."""
        if self._server is not None:
            raise RuntimeError(f"{self._owner} already started")

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(on_connection, reader, writer)

        self._server = await asyncio.start_server(accept, self._host, self._port, **start_server_kwargs)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, more_tasks: Iterable[asyncio.Task[Any]] = ()) -> None:
        """Stop accepting, cancel every connection task (and ``more_tasks``) and wait; idempotent."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._conn_tasks) + list(more_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, on_connection: ConnectionHandler, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            await on_connection(reader, writer)
        except asyncio.CancelledError:
            # Only close() cancels this task. End it normally: Python 3.11's stream callback
            # calls task.exception() on it and would log a cancelled task as an error.
            pass
        finally:
            self._conn_tasks.discard(task)
            writer.close()
