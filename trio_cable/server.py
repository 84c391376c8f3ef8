"""Serve a cable on a socket, inside your own nursery.

:func:`serve_cable` picks the transport: the direct one (``trio_cable.direct``,
the default: our own sockets, wsproto for parsing, frames encoded once per
broadcast) or trio-websocket (:func:`serve_cable_trio_websocket`, for apps
that already use it). Both have the same contract.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, Literal, NoReturn, overload

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from ._cable import Cable
from ._connection import Connection
from ._gc import tune_gc as _tune_gc
from ._request import Request
from ._serving import Served
from ._transport import TransportClosed
from .direct import serve_cable_direct
from .protocol.codec import select_subprotocol

__all__ = [
    "Transport",
    "WebSocketTransport",
    "serve_cable",
    "serve_cable_trio_websocket",
]

#: The transports :func:`serve_cable` can use.
Transport = Literal["direct", "trio-websocket"]

log = logging.getLogger("trio_cable.server")


class WebSocketTransport:
    """A trio-websocket connection as a cable transport."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, frame: str) -> None:
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed:
            raise TransportClosed from None

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.get_message()
        except ConnectionClosed:
            raise TransportClosed from None

    async def close(self, code: int = 1000) -> None:
        # aclose() closes the TCP stream in its finally, even if cancelled.
        await self.ws.aclose(code)


def request_scope(request: WebSocketRequest, secure: bool = False) -> dict[str, Any]:
    """An ASGI-style scope describing a trio-websocket handshake."""
    path, _, query = request.path.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss" if secure else "ws",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": list(_HeaderView(request)),
        "client": _client(request),
        "server": None,
        "subprotocols": list(request.proposed_subprotocols),
    }


class _LazyScope(Mapping[str, Any]):
    """:func:`request_scope`, built only if something asks for more than
    the path or the client: a server holds one per open connection, and
    trio-websocket keeps the handshake's headers anyway."""

    __slots__ = ("_request", "_scope", "_secure")

    def __init__(self, request: WebSocketRequest, secure: bool) -> None:
        self._request = request
        self._secure = secure
        self._scope: dict[str, Any] | None = None

    def _full(self) -> dict[str, Any]:
        if self._scope is None:
            self._scope = request_scope(self._request, self._secure)
        return self._scope

    def __getitem__(self, key: str) -> Any:
        if self._scope is None:
            if key == "path":
                return self._request.path.partition("?")[0]
            if key == "client":
                return _client(self._request)
            if key == "headers":
                return _HeaderView(self._request)
        return self._full()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


class _HeaderView(Sequence[tuple[bytes, bytes]]):
    """The handshake's headers, Host first, without copying them."""

    __slots__ = ("_request",)

    def __init__(self, request: WebSocketRequest) -> None:
        self._request = request

    def _host(self) -> tuple[bytes, bytes]:
        # wsproto keeps Host out of the extra headers; put it back
        return (b"host", str(self._request._event.host).encode("latin-1", "replace"))

    def __len__(self) -> int:
        return 1 + len(self._request.headers)

    @overload
    def __getitem__(self, index: int) -> tuple[bytes, bytes]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[bytes, bytes]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return [self._host(), *self._request.headers][index]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        yield self._host()
        yield from self._request.headers


def _client(request: WebSocketRequest) -> tuple[str, int] | None:
    remote = request.remote
    return None if isinstance(remote, str) else (str(remote.address), remote.port)


async def serve_cable_trio_websocket(
    cable: Cable,
    host: str | None,
    port: int,
    *,
    path: str = "/cable",
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    tune_gc: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``cable`` through trio-websocket at ``ws://host:port/path``.

    Never returns. The same contract and options as :func:`serve_cable`
    (which calls this for ``transport="trio-websocket"``), but no
    ``listeners``.
    """

    async def handler(request: WebSocketRequest) -> None:
        handshake = Request(_LazyScope(request, ssl_context is not None))
        if handshake.path != path:
            await request.reject(404)
            return
        refused = cable.refuse_handshake(handshake)
        if refused is not None:
            status, reason = refused
            await request.reject(status, body=reason.encode())
            return
        proto = select_subprotocol(request.proposed_subprotocols)
        ws = await request.accept(subprotocol=proto)
        conn = Connection(cable, WebSocketTransport(ws), handshake)
        served.add(conn)
        try:
            await conn.run()
        except Exception:
            served.crashed(conn)
        finally:
            served.discard(conn)

    # Cancelling trio-websocket's handlers outright would also kill its
    # reader tasks, so no close handshake could complete and every socket
    # would wait out close_timeout. So the server runs shielded, and on
    # cancellation its connections are first closed the ordinary way
    # (queued frames, ``server_restart``, close handshake, hooks).
    served = Served(log)
    server_scope = trio.CancelScope(shield=True)
    serve = partial(
        serve_websocket,
        handler,
        host,
        port,
        ssl_context,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=cable.close_timeout,
    )
    async with AsyncExitStack() as stack:
        if not cable.is_running:
            await stack.enter_async_context(cable.running())
        async with trio.open_nursery() as nursery:
            try:
                server = await nursery.start(_serve_in, server_scope, serve)
                bound = server.port
                log.info(
                    "serving a cable at ws://%s:%d%s (trio-websocket)",
                    host,
                    bound,
                    path,
                )
                if tune_gc:
                    _tune_gc()
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                await served.drain(cable.close_timeout + cable.hook_timeout)
                server_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_in(
    scope: trio.CancelScope,
    serve: Any,
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await serve(task_status=task_status)


async def serve_cable(
    cable: Cable,
    host: str | None,
    port: int,
    *,
    transport: Transport = "direct",
    path: str = "/cable",
    ssl_context: ssl.SSLContext | None = None,
    listeners: list[trio.abc.Listener[Any]] | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    tune_gc: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``cable`` over WebSocket at ``ws://host:port/path``; never returns.

    Runs the cable too (unless it is already running). Reports the bound
    port through ``task_status`` once it accepts connections, so
    ``port = await nursery.start(serve_cable, cable, "127.0.0.1", 0)``
    works with port 0. Handshakes to any other path get HTTP 404; those
    the cable refuses (origin, connection cap) get its 403/503.

    ``transport`` is ``"direct"`` (the default: sockets of our own, each
    broadcast's frame encoded once and written straight to every socket)
    or ``"trio-websocket"``. ``ssl_context`` serves ``wss://``.
    ``listeners`` (direct only) serves on listeners you opened instead of
    ``host`` and ``port``. A message over ``max_message_size`` closes its
    socket (code 1009).

    ``tune_gc`` applies :func:`trio_cable.tune_gc` (process-wide garbage
    collector settings that doubled throughput in the benchmarks) once the
    server is listening.

    Cancellation: each client is sent what was already queued for it,
    then ``disconnect`` with reason ``server_restart`` (reconnect true),
    and its socket is closed with a close handshake, every
    ``unsubscribed()`` running; connections still open after
    ``close_timeout + hook_timeout`` (a client that stopped reading) are
    then cancelled outright.
    """
    if transport == "direct":
        await serve_cable_direct(
            cable,
            host,
            port,
            path=path,
            ssl_context=ssl_context,
            listeners=listeners,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            tune_gc=tune_gc,
            task_status=task_status,
        )
    if transport != "trio-websocket":
        raise ValueError(
            f"transport must be 'direct' or 'trio-websocket', not {transport!r}"
        )
    if listeners is not None:
        raise ValueError("listeners= is supported by the direct transport only")
    await serve_cable_trio_websocket(
        cable,
        host,
        port,
        path=path,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        tune_gc=tune_gc,
        task_status=task_status,
    )
