"""The direct transport's handshake timeout, kept by one task for every
socket instead of a cancel scope per socket.

A trio cancel scope with a deadline costs about 56,000 instructions to
enter and leave (two `contextlib` managers, its cancel status, the
deadline heap): 9 % of a whole connect + subscribe. Here a socket joins
the set of its deadline's tick (a quarter of a second) as its handshake
starts and leaves it when the handshake is done; one task wakes at each
tick that has sockets and closes those still in it, which ends whatever
their handshake waits for (a read, a write) at once. A socket is cut off
between its deadline and a tick after it, never before.
"""

from __future__ import annotations

import math
import socket
from typing import Final, NoReturn

import trio

__all__ = ["TICK", "Due", "HandshakeTimeouts"]

#: How often the timeouts are checked (seconds): a socket's deadline is
#: rounded up to the next tick.
TICK: Final = 0.25


class Due(set[socket.socket]):
    """The sockets due by one tick (what a socket's server keeps for its
    handshake: one shared set, no object per socket)."""

    __slots__ = ()

    def done(self, sock: socket.socket) -> None:
        """``sock``'s handshake is over (accepted, refused, or gone)."""
        self.discard(sock)
        if not self:
            # Emptied: its table freed (a set keeps a grown one while it
            # lives, and its connections' tasks hold it). It stays the
            # tick's set: sockets still to come this tick share it.
            self.clear()


class HandshakeTimeouts:
    """Sockets whose handshake must be done within ``timeout`` seconds;
    :meth:`run` (a task of the accept loops' nursery) closes those that
    are not. A socket's handshake starts with :meth:`start` and ends with
    ``done()`` of the set it returned."""

    __slots__ = ("_ticks", "_wake", "timeout")

    def __init__(self, timeout: float) -> None:
        if not 0 < timeout < math.inf:
            raise ValueError("a handshake timeout is a positive number of seconds")
        self.timeout = timeout
        # Ticks in the order they were made (time only grows: ascending).
        self._ticks: dict[int, Due] = {}
        self._wake: trio.Event | None = None

    def start(self, sock: socket.socket) -> Due:
        """``sock``'s handshake starts now; the set of its tick."""
        tick = math.ceil((trio.current_time() + self.timeout) / TICK)
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = Due()
            if self._wake is not None:
                self._wake.set()
        due.add(sock)
        return due

    async def run(self) -> NoReturn:
        ticks = self._ticks
        while True:
            if not ticks:
                self._wake = trio.Event()
                await self._wake.wait()
                self._wake = None
                continue
            await trio.sleep_until(next(iter(ticks)) * TICK)
            now = trio.current_time()
            for tick in [t for t in ticks if t * TICK <= now]:
                for sock in ticks.pop(tick):
                    _close(sock)


def _close(sock: socket.socket) -> None:
    """Close ``sock`` under whatever waits on it (it wakes, and finds it
    closed)."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()
