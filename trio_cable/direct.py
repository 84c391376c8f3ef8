"""Serve a cable straight on trio sockets: the direct transport.

The server owns its sockets (:mod:`trio_cable.transports.direct`): each
broadcast's frame is encoded once and written straight to every socket
from the broadcasting task. This module wires its accept loops to the
serving path and the cable.
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any, NoReturn

import trio

from ._cable import Cable
from ._connection import Connection
from ._metrics import http_routes
from ._registry import ConnectionSet
from ._serving import serve_connection, serve_until_cancelled
from .transports.direct import DirectTransport
from .transports.direct_handshake import DirectHandshake
from .transports.direct_server import DirectAcceptor, accept_forever, port_of

__all__ = ["DirectHandshake", "DirectTransport", "serve_cable_direct"]


async def serve_cable_direct(
    cable: Cable,
    host: str | None,
    port: int,
    *,
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
    """Serve ``cable`` at ``ws://host:port/path`` on sockets of our own.

    Never returns. The same contract as :func:`~trio_cable.serve_cable`:
    runs the cable too (unless it is already running) and reports the
    bound port through ``task_status`` once it accepts connections (with
    ``listeners``, the first one's port). Handshakes to another path get
    HTTP 404; those the cable refuses (origin, connection cap) get its
    403/503, before any WebSocket is accepted. ``ssl_context`` serves
    ``wss://`` (it wraps ``listeners`` too, if given).

    A message over ``max_message_size`` bytes closes its socket with code
    1009; one in more than the cable's ``max_fragments`` fragments, or
    unfinished after its ``message_timeout``, with 1008; invalid framing
    with 1002 (or wsproto's more precise code). A client sending frames or
    bytes faster than the cable's ``input_frames_per_second`` and
    ``input_bytes_per_second`` is read no faster (see docs/security.md).
    A handshake not done within ``connect_timeout`` (the handshake
    timeout, 10 s) is dropped (on plain TCP by one task checking every
    quarter second, so up to 0.25 s after it); handshakes under way count against the
    cable's ``max_connections``, and past its ``max_handshakes`` new
    sockets are closed at once. Running out of file descriptors is
    logged once (then summarised every 10 s) and accepting backs off,
    from 0.05 s up to 1 s between tries.
    ``tune_gc`` sets the garbage collector up as
    :func:`~trio_cable.serve_cable` does (by default, its first threshold
    raised while the server runs, if nobody chose other settings). ``stats_path`` and
    ``metrics_path`` (off by default) answer a plain HTTP GET with the
    cable's stats (JSON) and metrics (the Prometheus text format).

    Cancellation: each client is sent ``disconnect`` with reason
    ``server_restart`` (reconnect true) after the frame being written to
    it (frames still queued for a client that is behind are dropped),
    and its socket is closed with a close handshake, every
    ``unsubscribed()`` running; connections still open after
    ``close_timeout + hook_timeout`` (a client that stopped reading) are
    then cancelled outright.
    """
    if listeners is None:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    if ssl_context is not None:
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True)
            for listener in listeners
        ]
    served: ConnectionSet[Connection] = ConnectionSet()
    acceptor = DirectAcceptor(
        partial(serve_connection, cable, path=path, connections=served),
        secure=ssl_context is not None,
        connect_timeout=connect_timeout,
        max_message_size=max_message_size,
        http=http_routes(cable, stats_path, metrics_path),
        limits=cable.options.input,
        count=cable.count,
        refuse=cable.refuse_socket,
    )
    await serve_until_cancelled(
        cable,
        partial(accept_forever, acceptor, listeners),
        lambda _: port_of(listeners[0]),
        served,
        name="direct",
        host=host,
        path=path,
        tune_gc=tune_gc,
        task_status=task_status,
    )
