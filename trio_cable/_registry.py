"""A set of open connections, and the one way to drain it for shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import trio

__all__ = ["ConnectionSet"]


class Closable(Protocol):
    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None: ...


C = TypeVar("C", bound=Closable)


class ConnectionSet(Generic[C]):
    """Open connections (a cable's, or one server's) and their drain.

    Whoever runs a connection adds it before it runs and discards it
    after. :meth:`drain` closes them all and waits for them to end; a
    connection added while a drain runs is closed at once.
    """

    __slots__ = ("_closing", "_conns", "_empty")

    def __init__(self) -> None:
        self._conns: set[C] = set()
        self._empty: trio.Event | None = None
        self._closing: tuple[str, bool] | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[C]:
        return iter(self._conns)

    def add(self, conn: C) -> None:
        self._conns.add(conn)
        if self._closing is not None:  # accepted while shutting down
            reason, reconnect = self._closing
            conn.close(reason, reconnect=reconnect)

    def discard(self, conn: C) -> None:
        self._conns.discard(conn)
        if self._empty is not None and not self._conns:
            self._empty.set()

    async def drain(
        self,
        grace: float,
        reason: str = "server_restart",
        *,
        reconnect: bool = True,
        shield: bool = False,
    ) -> None:
        """Close every connection (its queued frames, then ``disconnect``
        with ``reason``, then a close handshake) and wait at most ``grace``
        seconds for them all to end. ``shield``: even if cancelled."""
        with trio.CancelScope(shield=shield):
            self._closing = (reason, reconnect)
            self._empty = empty = trio.Event()
            try:
                for conn in list(self._conns):
                    conn.close(reason, reconnect=reconnect)
                if self._conns:
                    with trio.move_on_after(grace):
                        await empty.wait()
            finally:
                self._closing = None
                self._empty = None
