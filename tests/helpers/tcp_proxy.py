"""A TCP proxy a test can cut: the network between a client and a server.

:func:`tcp_proxy` listens on a free port and pipes every connection to the
upstream port. :meth:`TcpProxy.cut` drops every connection open through it
at once (both sides closed abruptly, as a broken network would look to the
client), while the server stays untouched and new connections go through
again. :meth:`TcpProxy.refuse` cuts and keeps the network down (new
connections are closed at once) until :meth:`TcpProxy.admit`, so a test
can act while the client cannot be back.

Resource handling: leaving the ``async with`` block closes the listener
and every connection; no task outlives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

__all__ = ["TcpProxy", "tcp_proxy"]


class TcpProxy:
    """The proxy's port and its open connections (see :func:`tcp_proxy`)."""

    def __init__(self, nursery: trio.Nursery, upstream: int) -> None:
        self.port = 0
        self.upstream = upstream
        #: How many connections it has accepted, and how many it cut.
        self.accepted = 0
        self.cuts = 0
        #: While True, new connections are closed at once (counted here).
        self.refusing = False
        self.refused = 0
        self._nursery = nursery
        self._scopes: set[trio.CancelScope] = set()

    @property
    def open_connections(self) -> int:
        return len(self._scopes)

    def cut(self) -> None:
        """Drop every connection open through the proxy now."""
        for scope in self._scopes:
            scope.cancel()
        self.cuts += 1

    def refuse(self) -> None:
        """Cut every connection, and close new ones at once until :meth:`admit`."""
        self.refusing = True
        self.cut()

    def admit(self) -> None:
        """Let new connections through again."""
        self.refusing = False

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.refusing:
            self.refused += 1
            await trio.aclose_forcefully(client)
            return
        self.accepted += 1
        # A socket of our own, closed in every case (also when a cut or the
        # end of the test lands in the middle of connecting).
        sock = trio.socket.socket()
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                await sock.connect(("127.0.0.1", self.upstream))
                server = trio.SocketStream(sock)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                    nursery.start_soon(_pipe, server, client, nursery.cancel_scope)
        except OSError:
            pass
        finally:
            self._scopes.discard(scope)
            # Abruptly, as a broken network does: no more bytes either way.
            sock.close()
            await trio.aclose_forcefully(client)


async def _pipe(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()  # one side ended: end the other


@asynccontextmanager
async def tcp_proxy(upstream: int) -> AsyncIterator[TcpProxy]:
    """A :class:`TcpProxy` to ``127.0.0.1:upstream`` on a free port."""
    async with trio.open_nursery() as nursery:
        proxy = TcpProxy(nursery, upstream)
        listeners = await nursery.start(
            partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
