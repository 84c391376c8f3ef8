"""A few tasks that write the backlogs of many queued transports.

A :class:`~trio_cable.transports.queued.QueuedTransport` sends only by
waiting (an ASGI server's ``send``), so each connection's backlog needs a
task to write it. Spawning the connection's own writer for every
broadcast costs a task per subscriber per broadcast: its creation, a
scheduler round, and garbage the collector keeps scanning while thousands
of them are alive at once. With a :class:`SendPool`, a transport whose
socket takes writes joins the pool's queue instead
(:meth:`QueuedTransport.hand_off`), and the pool's few tasks write each
queued transport's frames in turn, one ``await send`` after another, as a
server writing every frame from one handler would.

A frame is written by the pool only while its socket takes writes at
once (``stalled()`` is False before a turn's first frame and every few
KiB after it, and a frame is small enough to fit,
:data:`POOL_FRAME_MAX`), so the pool does not wait for one client; if a
send waits all the same (the socket filled up just then), that one task
waits and the others go on, until the slow-client policy cuts the client
off (closing its socket ends the send). A transport whose socket is
full, or whose next frame is large, goes back to its connection's
writer, where the slow-client policy applies; so does every transport
queued when the pool stops.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final, Protocol

import trio

__all__ = [
    "POOL_CHECK_BYTES",
    "POOL_FRAME_MAX",
    "POOL_TURN_BYTES",
    "PoolMember",
    "SendPool",
]

log = logging.getLogger("trio_cable.transports")

#: Frames larger than this (characters) are left to the connection's
#: writer: a socket that takes writes has room for a small frame, not
#: necessarily for a large one.
POOL_FRAME_MAX: Final = 8 * 1024
#: What one turn writes to one socket before the next socket's turn.
POOL_TURN_BYTES: Final = 16 * 1024
#: The socket is asked whether it takes writes (a poll() each time, about
#: a tenth of a send's cost) before a turn's first frame and again after
#: this many characters: a socket that takes writes has room for a few KiB.
POOL_CHECK_BYTES: Final = 4 * 1024


class PoolMember(Protocol):
    """What the pool needs of a transport (a
    :class:`~trio_cable.transports.queued.QueuedTransport`)."""

    async def pool_turn(self, pool: SendPool) -> None:
        """Send what waits while the socket takes it at once."""

    def unpool(self) -> None:
        """Out of the pool: the connection's writer sends what waits."""

    def pool_failed(self) -> None:
        """A turn raised: nothing more is sent on this socket."""


#: Tasks writing at once. Each ``await send`` lets the scheduler run a
#: round (and poll for I/O); several sends in flight share each round, as
#: writer tasks per socket did, without a task per socket.
POOL_WORKERS: Final = 32


class SendPool:
    """Writes queued transports' backlogs from a few tasks (:meth:`run`):
    each transport is written by one of them at a time, in order."""

    __slots__ = ("_queue", "_running", "_wake", "turns", "workers")

    def __init__(self, workers: int = POOL_WORKERS) -> None:
        self._queue: deque[PoolMember] = deque()
        self._wake = trio.lowlevel.ParkingLot()
        self._running = False
        self.workers = workers
        #: Turns taken so far (one per transport written, per round).
        self.turns = 0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def waiting(self) -> int:
        """Transports queued for a turn."""
        return len(self._queue)

    def schedule(self, transport: PoolMember) -> bool:
        """Queue ``transport`` for a turn; False if the pool is not running."""
        if not self._running:
            return False
        self._queue.append(transport)
        if self._wake:
            self._wake.unpark()
        return True

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write queued backlogs until cancelled; never returns otherwise.

        Cancellation: each turn under way ends after the frame being sent
        (a send is not cut off), and every transport still queued is
        handed to its connection's writer, so no frame is left behind.
        """
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):
                    nursery.start_soon(self._worker)
                self._running = True
                task_status.started()
        finally:
            self._running = False
            while self._queue:
                self._queue.popleft().unpool()

    async def _worker(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                await self._wake.park()
                continue
            transport = queue.popleft()
            self.turns += 1
            try:
                await transport.pool_turn(self)
            except trio.Cancelled:
                raise
            except Exception:  # a bug: lose this socket, not the pool
                log.exception("send pool: a transport's turn failed")
                transport.pool_failed()
