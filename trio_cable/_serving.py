"""What every socket server shares: its open connections and their drain."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Served"]


class Served:
    """The connections one server runs, and its graceful shutdown.

    A server runs each connection between :meth:`add` and :meth:`discard`
    (logging a crash with :meth:`crashed`); on shutdown it calls
    :meth:`drain` before cancelling its handlers, so every client gets
    what was queued, then ``server_restart``, then a close handshake.
    """

    __slots__ = ("_conns", "_draining", "_log")

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._conns: set[Connection] = set()
        self._draining: trio.Event | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def add(self, conn: Connection) -> None:
        """Count ``conn`` in; a server calls this just before ``conn.run()``
        (not wrapping it in a coroutine of ours saves a frame per socket)."""
        self._conns.add(conn)
        if self._draining is not None:  # accepted while shutting down
            conn.close("server_restart")

    def crashed(self, conn: Connection) -> None:
        # A bug met by one connection must not stop the server.
        self._log.exception("conn %s: crashed", conn.id)

    def discard(self, conn: Connection) -> None:
        self._conns.discard(conn)
        if self._draining is not None and not self._conns:
            self._draining.set()

    async def drain(self, grace: float) -> None:
        """Close every connection with ``server_restart`` and wait, shielded,
        at most ``grace`` seconds for them all to end."""
        with trio.CancelScope(shield=True):
            self._draining = draining = trio.Event()
            for conn in list(self._conns):
                conn.close("server_restart")
            if self._conns:
                with trio.move_on_after(grace):
                    await draining.wait()
