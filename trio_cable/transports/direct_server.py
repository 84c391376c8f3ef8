"""Accepting direct-transport connections on trio listeners.

:class:`DirectAcceptor` turns every accepted socket (or TLS stream) into a
:class:`~trio_cable.transports.direct.DirectHandshake` and hands it to the
serving path; :func:`accept_forever` runs the accept loops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import trio

from ..protocol.wsframe import FrameCache
from .accepting import (
    ACCEPT_CAPACITY_ERRNOS,
    IGNORABLE_ACCEPT_ERRNOS,
    AcceptBackoff,
    accept_streams,
)
from .direct import DirectTransport
from .direct_handshake import DirectHandshake
from .handshake_timeouts import HandshakeTimeouts
from .inbound import InputLimits
from .plain_http import HTTPRoutes

__all__ = ["DirectAcceptor", "accept_forever", "port_of"]

log = logging.getLogger("trio_cable.direct")

#: Connections accepted per wake-up of the listening socket, at most.
ACCEPT_BATCH: Final = 128
#: The name of every connection's task (trio would format one per task).
_CONN_TASK: Final = "trio_cable.direct.connection"


class DirectAcceptor:
    """Makes each accepted stream a direct transport and hands its
    handshake to ``handle`` (the serving path, given the handshake and
    the ``connect_timeout`` it is to keep); the socket is closed when
    ``handle`` returns. One frame cache serves every connection; each
    reads within ``limits`` and reports what it refuses to ``count``. A
    socket accepted while ``refuse`` says so is closed at once. Plain
    sockets' handshakes are timed by :attr:`timeouts` (one task,
    :func:`accept_forever`'s), others' by ``handle``."""

    def __init__(
        self,
        handle: Callable[..., Awaitable[None]],
        *,
        secure: bool,
        max_message_size: int,
        connect_timeout: float = math.inf,
        http: HTTPRoutes | None = None,
        limits: InputLimits | None = None,
        count: Callable[[str], None] | None = None,
        refuse: Callable[[], bool] = lambda: False,
    ) -> None:
        self.handle = handle
        self.secure = secure
        self.http = http
        self.max_message = max_message_size
        self.limits = limits or InputLimits()
        self.count = count
        self.refuse = refuse
        self.frames = FrameCache()
        self.connect_timeout = connect_timeout
        self.timeouts = (
            HandshakeTimeouts(connect_timeout)
            if 0 < connect_timeout < math.inf
            else None
        )

    def _transport(
        self, sock: socket.socket | None, stream: trio.abc.Stream | None
    ) -> DirectTransport:
        return DirectTransport(
            sock, stream, self.frames, self.max_message, self.limits, self.count
        )

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """A stream from a listener other than a plain TCP one (TLS)."""
        if isinstance(stream, trio.SocketStream):
            # Plain TCP after all: take the socket itself.
            sock = socket.socket(fileno=stream.socket.detach())
            sock.setblocking(False)
            await self.serve_socket(sock)
            return
        await self._serve(self._transport(None, stream))

    async def serve_socket(
        self, sock: socket.socket, peer: tuple[str, int] | None = None
    ) -> None:
        """An accepted non-blocking socket, written and read directly;
        ``peer``: the client's address, if accept() gave it."""
        # Inline, not through a helper: one coroutine frame less per socket.
        transport = self._transport(sock, None)
        # Timed by one task (self.timeouts), not a cancel scope per socket.
        due = None if self.timeouts is None else self.timeouts.start(sock)
        try:
            await self.handle(
                DirectHandshake(
                    transport,
                    secure=self.secure,
                    http=self.http,
                    peer=peer,
                    due=due,
                ),
                connect_timeout=self.connect_timeout if due is None else math.inf,
            )
        finally:
            if due is not None:
                due.done(sock)
            await transport.aclose()

    async def _serve(self, transport: DirectTransport) -> None:
        try:
            await self.handle(
                DirectHandshake(transport, secure=self.secure, http=self.http),
                connect_timeout=self.connect_timeout,
            )
        finally:
            await transport.aclose()


async def accept_forever(
    acceptor: DirectAcceptor,
    listeners: list[trio.abc.Listener[Any]],
    *,
    task_status: trio.TaskStatus[list[trio.abc.Listener[Any]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> None:
    """Accept on every listener; each connection is a task in one nursery.

    A plain TCP listener is served by :func:`_accept_sockets` (stdlib
    sockets straight from ``accept()``); any other (TLS) by
    :func:`~.accepting.accept_streams`. Both back off when out of file
    descriptors. Listeners are closed at the end, as
    ``trio.serve_listeners`` does.
    """
    async with trio.open_nursery() as nursery:
        timeouts = acceptor.timeouts
        if timeouts is not None and trio.SocketListener in map(type, listeners):
            nursery.start_soon(timeouts.run)
        for listener in listeners:
            if type(listener) is trio.SocketListener:
                nursery.start_soon(_accept_sockets, listener, acceptor, nursery)
            else:
                nursery.start_soon(
                    partial(
                        accept_streams,
                        listener,
                        acceptor.serve_stream,
                        nursery,
                        log=log,
                        refuse=acceptor.refuse,
                        name=_CONN_TASK,
                    )
                )
        task_status.started(listeners)


async def _accept_sockets(
    listener: trio.SocketListener, acceptor: DirectAcceptor, nursery: trio.Nursery
) -> None:
    """Accept stdlib sockets in batches, with no trio stream per socket
    (the direct transport writes to the socket itself)."""
    async with listener:
        # A second descriptor for the listening socket, owned here, so the
        # accepted sockets come back as stdlib sockets.
        lsock = socket.socket(fileno=os.dup(listener.socket.fileno()))
        lsock.setblocking(False)
        backoff = AcceptBackoff(log)
        # Read once: socket.accept() reads them for every socket, each an
        # enum made from an int (a tenth of the accept's own cost).
        family, kind, proto = lsock.family, lsock.type, lsock.proto
        # TCP options set per socket unless the listener passes them on.
        per_socket = family != socket.AF_UNIX and not _listener_options(lsock)
        try:
            while True:
                await trio.lowlevel.wait_readable(lsock)
                for _ in range(ACCEPT_BATCH):
                    try:
                        # (private in typeshed; socket.accept() calls it)
                        fd, address = lsock._accept()  # type: ignore[attr-defined]
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in IGNORABLE_ACCEPT_ERRNOS:
                            continue
                        if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                            raise
                        await backoff.wait(exc)
                        break
                    # What socket.accept() does, but for the enums (the
                    # listener's timeout is 0: nothing to undo).
                    sock = socket.socket(family, kind, proto, fileno=fd)
                    backoff.reset()
                    if acceptor.refuse():
                        sock.close()
                        continue
                    sock.setblocking(False)
                    if per_socket:
                        _tcp_options(sock)
                    # The client's address from accept(): no getpeername().
                    # Interned: most clients of a server share a few (a
                    # proxy's), kept for each connection's life.
                    peer = (
                        (sys.intern(address[0]), address[1])
                        if type(address) is tuple
                        else None
                    )
                    nursery.start_soon(
                        acceptor.serve_socket, sock, peer, name=_CONN_TASK
                    )
        finally:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()


def _tcp_options(sock: socket.socket, *, check: bool = False) -> None:
    """What trio's SocketStream sets: no Nagle delay, and (where there is
    such an option) at most 16 KiB unsent in the kernel, so a client that
    stops reading fills its socket soon and meets the slow-client policy
    instead of hiding megabytes in kernel buffers. ``check``: raise
    OSError if either could not be set."""
    with contextlib.suppress(*(() if check else (OSError,))):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 1 << 14)


#: Linux hands a socket to accept() only once its first bytes arrived (or
#: after about this many seconds): a WebSocket client speaks first, so
#: the connection's first read finds the request instead of waiting.
DEFER_ACCEPT_SECONDS: Final = 1


def _listener_options(lsock: socket.socket) -> bool:
    """On Linux, set the TCP options on the listening socket, which every
    accepted socket inherits (two system calls less per connection), and
    defer accepts until the request arrives (``TCP_DEFER_ACCEPT``: a
    wait, an epoll registration and a task step less per connection; a
    silent client is still accepted, after about a second, and meets the
    handshake's timeout). False where sockets must be set one by one."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        _tcp_options(lsock, check=True)
        lsock.setsockopt(
            socket.IPPROTO_TCP,
            socket.TCP_DEFER_ACCEPT,  # type: ignore[attr-defined,unused-ignore]
            DEFER_ACCEPT_SECONDS,
        )
    except OSError:
        return False
    return True


def port_of(listener: trio.abc.Listener[Any]) -> int:
    """The port a listener is bound to (0 if it has none)."""
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, trio.SocketListener):
        port: int = listener.socket.getsockname()[1]
        return port
    return 0
