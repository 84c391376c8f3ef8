"""What every socket server shares: the one serving path each accept
loop calls for a connection, and the server's own lifetime (listen,
report the port, drain on shutdown)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._connection import Connection
from ._gc import serving_gc
from .protocol.dialects import choose_dialect, speakable

if TYPE_CHECKING:
    from ._cable import Cable
    from ._registry import ConnectionSet
    from .transports.base import Handshake

__all__ = ["serve_connection", "serve_until_cancelled"]

log = logging.getLogger("trio_cable.server")


async def serve_connection(
    cable: Cable,
    handshake: Handshake,
    *,
    path: str | None = None,
    connections: ConnectionSet[Connection] | None = None,
    connect_timeout: float = math.inf,
    task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``handshake`` and run its connection until it ends.

    The handshake is refused with 404 if its path is not ``path`` (None:
    any), and with the cable's status if the cable refuses it (origin,
    connection cap); otherwise it is accepted with the subprotocol of the
    dialect chosen from the client's offer (with 400 if it offers only
    subprotocols the cable does not speak). All that within
    ``connect_timeout`` (the handshake timeout: a client that has not
    finished its handshake by then is dropped); while it runs, the
    handshake counts against the cable's ``max_connections``. The
    connection then runs counted in
    ``connections`` (the server's drain), and is reported through
    ``task_status``. A crash of one connection is logged, never raised:
    it must not stop the server.
    """
    conn = await _accept(cable, handshake, path, connect_timeout)
    # Nothing of the handshake is kept for the connection's lifetime (the
    # direct one holds an HTTP parser): one per open socket adds up.
    del handshake
    if conn is None:
        return
    if connections is not None:
        connections.add(conn)
    task_status.started(conn)
    try:
        await conn.run()
    except Exception:
        log.exception("conn %s: crashed", conn.id)
    finally:
        if connections is not None:
            connections.discard(conn)


async def _accept(
    cable: Cable, handshake: Handshake, path: str | None, connect_timeout: float
) -> Connection | None:
    """The handshake's part of :func:`serve_connection` (a coroutine of its
    own: its locals are gone before the connection runs)."""
    # Counted against max_connections until it is a connection (or gone).
    cable.handshakes += 1
    try:
        if connect_timeout == math.inf:
            # No scope at all: trio's cost a connect 9 % (the direct
            # transport times its handshakes with one task instead).
            return await _answer(cable, handshake, path)
        with trio.move_on_after(connect_timeout):
            return await _answer(cable, handshake, path)
        return None  # out of time
    finally:
        cable.handshakes -= 1


async def _answer(
    cable: Cable, handshake: Handshake, path: str | None
) -> Connection | None:
    """Read the request, refuse it or accept it: the connection, if any."""
    request = await handshake.request()
    if request is None:
        return None
    if path is not None and request.path != path:
        cable.count("path_refused")
        await handshake.refuse(404, "Not Found")
        return None
    refused = cable.refuse_handshake(request)
    if refused is not None:
        await handshake.refuse(*refused)
        return None
    offered = request.subprotocols
    subprotocol, dialect = choose_dialect(
        offered, extended=cable.options.extended_protocol
    )
    if dialect is None:
        # Accepted, the client would fail the handshake itself and
        # retry forever with nothing said: refuse it in words.
        await _refuse_subprotocols(cable, handshake, offered)
        return None
    transport = await handshake.accept(subprotocol)
    if transport is None:
        return None
    return Connection(cable, transport, request, dialect)


async def serve_until_cancelled(
    cable: Cable,
    accept: Callable[..., Awaitable[object]],
    port_of: Callable[[Any], int],
    served: ConnectionSet[Connection],
    *,
    name: str,
    host: str | None,
    path: str,
    tune_gc: bool | None,
    task_status: trio.TaskStatus[int],
) -> NoReturn:
    """Run a socket server's lifetime; never returns.

    Runs ``cable`` too (unless it runs already), starts ``accept``
    (``task_status`` reports what ``port_of`` turns into the bound port)
    and reports that port. The accept loop and its handlers run shielded:
    cancelled outright, a transport's own reader tasks would die with
    them and no close handshake could complete. So on cancellation every
    connection in ``served`` is first closed the ordinary way (what was
    queued, ``server_restart``, a close handshake, the hooks) within the
    cable's drain timeout (after the cable's background tasks are
    cancelled), and only then is the rest cut off. Once listening, the
    collector gets the settings ``tune_gc`` asks :func:`serving_gc` for
    (None: the first threshold raised while the server runs, drain
    included, if nobody chose other settings).
    """
    server_scope = trio.CancelScope(shield=True)

    async def accept_shielded(*, task_status: trio.TaskStatus[Any]) -> None:
        with server_scope:
            await accept(task_status=task_status)

    async with AsyncExitStack() as stack:
        owns_cable = not cable.is_running
        if owns_cable:
            await stack.enter_async_context(cable.running())
        async with trio.open_nursery() as nursery:
            try:
                bound = port_of(await nursery.start(accept_shielded))
                log.info(
                    "serving a cable at ws://%s:%d%s (%s)", host, bound, path, name
                )
                stack.enter_context(serving_gc(tune_gc))
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                # Background tasks first: nothing more is broadcast to
                # clients that are being closed.
                if owns_cable:
                    await cable.stop_background()
                await served.drain(cable.options.drain_timeout, shield=True)
                server_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


async def _refuse_subprotocols(
    cable: Cable, handshake: Handshake, offered: Sequence[str]
) -> None:
    speaks = ", ".join(speakable(cable.options.extended_protocol))
    cable.count("subprotocol_refused")
    log.warning(
        "refused a handshake offering only %s (this server speaks %s)",
        ", ".join(offered),
        speaks,
    )
    await handshake.refuse(400, "unsupported subprotocol: this server speaks " + speaks)
