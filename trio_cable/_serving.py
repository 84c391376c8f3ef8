"""The one serving path every transport's accept loop calls."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from ._connection import Connection
from .protocol.dialects import choose_dialect

if TYPE_CHECKING:
    from ._cable import Cable
    from ._registry import ConnectionSet
    from ._request import Request
    from .transports.base import Handshake, Transport

__all__ = ["serve_connection"]

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
    dialect chosen from the client's offer. All that within
    ``connect_timeout``. The connection then runs counted in
    ``connections`` (the server's drain), and is reported through
    ``task_status``. A crash of one connection is logged, never raised:
    it must not stop the server.
    """
    transport: Transport | None = None
    request: Request | None = None
    with trio.move_on_after(connect_timeout):
        request = await handshake.request()
        if request is None:
            return
        if path is not None and request.path != path:
            await handshake.refuse(404, "Not Found")
            return
        refused = cable.refuse_handshake(request)
        if refused is not None:
            await handshake.refuse(*refused)
            return
        subprotocol, dialect = choose_dialect(request.subprotocols)
        transport = await handshake.accept(subprotocol)
    # Nothing of the handshake is kept for the connection's lifetime (the
    # direct one holds an HTTP parser): one per open socket adds up.
    del handshake
    if transport is None or request is None:
        return
    conn = Connection(cable, transport, request, dialect)
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
