"""Serve a cable on a socket, inside your own nursery.

:func:`serve_cable` picks the transport: the direct one (``trio_cable.direct``,
the default: our own sockets, wsproto for parsing, frames encoded once per
broadcast) or trio-websocket (:func:`serve_cable_trio_websocket`, for apps
that already use it). Both have the same contract.
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any, Literal, NoReturn

import trio

from ._cable import Cable
from ._connection import Connection
from ._metrics import http_routes
from ._registry import ConnectionSet
from ._serving import serve_connection, serve_until_cancelled
from .direct import serve_cable_direct
from .transports.direct_server import port_of
from .transports.trio_websocket import (
    WebSocketHandshake,
    WebSocketTransport,
    request_scope,
)
from .transports.trio_websocket_server import serve_trio_websocket

__all__ = [
    "Transport",
    "WebSocketTransport",
    "request_scope",
    "serve_cable",
    "serve_cable_trio_websocket",
]

#: The transports :func:`serve_cable` can use.
Transport = Literal["direct", "trio-websocket"]


async def serve_cable_trio_websocket(
    cable: Cable,
    host: str | None,
    port: int,
    *,
    path: str = "/cable",
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    tune_gc: bool | None = None,
    stats_path: str | None = None,
    metrics_path: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``cable`` through trio-websocket at ``ws://host:port/path``.

    Never returns. The same contract and options as :func:`serve_cable`
    (which calls this for ``transport="trio-websocket"``), but no
    ``listeners``. trio-websocket reads each handshake and runs each
    WebSocket; the listening sockets are ours, so that a plain GET of
    ``stats_path`` or ``metrics_path`` is answered before trio-websocket
    sees it.
    """

    async def handle(handshake: WebSocketHandshake) -> None:
        await serve_connection(
            cable,
            handshake,
            path=path,
            connections=served,
            connect_timeout=connect_timeout,
        )

    listeners: list[trio.abc.Listener[Any]] = []
    if ssl_context is None:
        listeners += await trio.open_tcp_listeners(port, host=host)
    else:
        listeners += await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    served: ConnectionSet[Connection] = ConnectionSet()
    serve = partial(
        serve_trio_websocket,
        handle,
        listeners,
        secure=ssl_context is not None,
        http=http_routes(cable, stats_path, metrics_path),
        max_message_size=max_message_size,
        disconnect_timeout=cable.close_timeout,
        limits=cable.options.input,
        count=cable.count,
        refuse=cable.refuse_socket,
    )
    await serve_until_cancelled(
        cable,
        serve,
        lambda listeners: port_of(listeners[0]),
        served,
        name="trio-websocket",
        host=host,
        path=path,
        tune_gc=tune_gc,
        task_status=task_status,
    )


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
    tune_gc: bool | None = None,
    stats_path: str | None = None,
    metrics_path: str | None = None,
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

    ``stats_path`` and ``metrics_path`` (off by default; on either
    transport) answer a plain HTTP GET there with the cable's stats as JSON (what
    ``trio-cable stats`` reads) and its metrics in the Prometheus text
    format.

    ``tune_gc=True`` applies :func:`trio_cable.tune_gc` (process-wide
    garbage collector settings that doubled throughput in the benchmarks)
    once the server is listening. The default, None, takes the safe half
    of it, as ``CableApp`` does: if the collector still has Python's own
    settings, its first threshold is raised to 50,000 while the server
    runs (and put back when it stops), and nothing is frozen; ``False``
    leaves the collector alone.

    Cancellation: each client is sent ``disconnect`` with reason
    ``server_restart`` (reconnect true) after the frame being written to
    it (frames still queued for a client that is behind are dropped),
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
            stats_path=stats_path,
            metrics_path=metrics_path,
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
        stats_path=stats_path,
        metrics_path=metrics_path,
        task_status=task_status,
    )
