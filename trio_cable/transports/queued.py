"""The transport contract for a socket that can only send by waiting.

trio-websocket, ASGI servers and in-memory channels take a frame with an
``await``. :class:`QueuedTransport` gives them :meth:`write_nowait`: frames
wait in a queue bounded by the connection's slow-client policy (it reads
:attr:`backlog_frames` and :attr:`backlog_bytes` after every write), and
the connection's writer task, which runs only while frames wait, sends
them in order with :meth:`flush`. With a :class:`~.send_pool.SendPool`,
one task writes many transports' frames instead, while their sockets
take them (:meth:`hand_off`); a flush waits for the pool's turn to end
and then sends the rest itself, so frames leave in order either way.

Closing does not wake a :meth:`receive` that is waiting: that would take
a cancel scope around every receive, two trio objects (0.9 KiB) for each
idle connection. Whoever closes ends the reader instead; a :meth:`flush`
that ran the close (after :meth:`close_nowait`) says so by raising
:class:`~trio_cable.TransportClosed`.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Coroutine
from typing import Any

import trio

from .._errors import TransportClosed
from .base import MessageSocket
from .send_pool import POOL_CHECK_BYTES, POOL_FRAME_MAX, POOL_TURN_BYTES, SendPool

__all__ = ["QueuedTransport", "stream_stalled", "wait_for_writer"]

#: How often :func:`wait_for_writer` asks the socket again.
_RECHECK = 0.05


class QueuedTransport:
    """:class:`~trio_cable.transports.base.Transport` over a
    :class:`~trio_cable.transports.base.MessageSocket`."""

    __slots__ = (
        "_broken",
        "_bytes",
        "_close_code",
        "_closed",
        "_flushing",
        "_head",
        "_in_turn",
        "_pool",
        "_pooled",
        "_queue",
        "_turn_over",
        "_writer",
        "socket",
    )

    def __init__(self, socket: MessageSocket, pool: SendPool | None = None) -> None:
        self.socket = socket
        self._pool = pool
        self._pooled = False  # queued in the pool for a turn
        self._in_turn = False  # the pool is sending our frames
        self._flushing = False  # the connection's writer is
        self._turn_over: trio.Event | None = None  # made if a flush waits
        self._writer: Callable[[], None] | None = None
        # A list read from _head, not a deque (an empty deque costs a
        # 600-byte block), and none while nothing waits (an empty list is
        # 56 bytes): one of these per connection, idle or not.
        self._queue: list[str] | None = None
        self._head = 0
        self._bytes = 0  # characters queued (frames are ASCII-heavy)
        self._close_code: int | None = None  # close_nowait() was called
        self._closed = False
        self._broken = False  # a send was cut off: nothing may follow it

    @property
    def backlog_frames(self) -> int:
        return 0 if self._queue is None else len(self._queue) - self._head

    @property
    def backlog_bytes(self) -> int:
        return self._bytes

    def stalled(self) -> bool:
        return self.socket.stalled()

    def write_nowait(self, frame: str) -> int:
        if self._closed or self._broken or self._close_code is not None:
            raise TransportClosed
        if self._queue is None:
            self._queue = [frame]
        else:
            self._queue.append(frame)
        self._bytes += len(frame)
        return self._bytes

    def close_nowait(self, code: int = 1000) -> int:
        if self._closed or self._close_code is not None:
            return self._bytes
        self._close_code = code
        return self._bytes + 1  # the close itself waits for flush()

    def drop_backlog(self) -> None:
        self._queue = None
        self._head = 0
        self._bytes = 0

    async def flush(self) -> None:
        self._flushing = True  # the pool leaves this transport alone
        try:
            if self._in_turn:  # ...once the frame it is sending is sent
                self._turn_over = over = trio.Event()
                await over.wait()
            while (queue := self._queue) is not None and self._head < len(queue):
                await self._send_head(queue)
        finally:
            self._flushing = False
        if self._close_code is not None:
            await self.close(self._close_code)
            # The close handshake is over: the socket is gone, and a
            # receive() waiting on it is the caller's to end.
            raise TransportClosed

    async def _send_head(self, queue: list[str]) -> None:
        """Send the frame at the head of ``queue`` (this transport's)."""
        frame = queue[self._head]
        self._head += 1
        self._bytes -= len(frame)
        try:
            await self.socket.send(frame)
        except trio.Cancelled:
            if self.socket.cancel_safe:
                # Not sent at all: it goes out first with the goodbye.
                if self._queue is queue and self._head > 0:
                    self._head -= 1  # queue[self._head] is still frame
                elif self._queue is None:  # the backlog was dropped
                    self._queue = [frame]
                else:  # ...and more written since
                    self._queue.insert(self._head, frame)
                self._bytes += len(frame)
            else:  # maybe cut off mid-frame: nothing may follow
                self._broken = True
            raise
        except BaseException:
            # Gone, or cut off: nothing may follow.
            self._broken = True
            raise
        queue_now = self._queue  # maybe dropped, or another, since
        if queue_now is None:
            return
        if self._head == len(queue_now):
            self._queue = None
            self._head = 0
        elif self._head >= 64 and 2 * self._head >= len(queue_now):
            # A writer that never catches up: let go of what was sent.
            del queue_now[: self._head]
            self._head = 0

    # -- the send pool -----------------------------------------------------------

    def hand_off(self, writer: Callable[[], None]) -> bool:
        """Have the backlog written by the send pool, if this transport has
        one that runs and no writer is flushing; ``writer`` (which starts
        the connection's writer) is called if the pool gives it back."""
        if self._flushing:
            return False  # the writer's flush sends this too
        if self._pooled or self._in_turn:
            return True  # waiting for its turn, or in it (which sends this too)
        pool = self._pool
        if (
            pool is None
            or self._closed
            or self._broken
            or self._close_code is not None
            or not pool.schedule(self)
        ):
            return False
        self._writer = writer
        self._pooled = True
        return True

    async def pool_turn(self, pool: SendPool) -> None:
        """Send frames while the socket takes them at once (the pool's task)."""
        if not self._pooled or self._in_turn or self._writer_has_it():
            return  # withdrawn (the writer has it), or in another turn
        self._pooled = False
        self._in_turn = True
        sent = 0
        unchecked = POOL_CHECK_BYTES  # sent since the socket was last asked
        try:
            while (queue := self._queue) is not None and self._head < len(queue):
                if self._writer_has_it():
                    return  # the writer takes over after this turn
                if sent >= POOL_TURN_BYTES:  # the others' turn, then ours
                    self._pooled = pool.schedule(self)
                    if not self._pooled:
                        self.unpool()
                    return
                frame = queue[self._head]
                if len(frame) > POOL_FRAME_MAX or (
                    unchecked >= POOL_CHECK_BYTES and self.socket.stalled()
                ):
                    self.unpool()  # it would wait: the writer's job
                    return
                if unchecked >= POOL_CHECK_BYTES:
                    unchecked = 0
                await self._send_head(queue)
                sent += len(frame)
                unchecked += len(frame)
        except TransportClosed:
            pass  # broken now: the next write tells the connection
        except trio.Cancelled:
            self.unpool()  # the pool stops: what waits is the writer's
            raise
        finally:
            self._in_turn = False
            if self._turn_over is not None:
                self._turn_over.set()
                self._turn_over = None

    def _writer_has_it(self) -> bool:
        # A method: the flag changes while a turn awaits a send.
        return self._flushing

    def unpool(self) -> None:
        """Out of the pool: the connection's writer sends what waits."""
        self._pooled = False
        writer = self._writer
        if writer is not None and self.backlog_frames:
            writer()

    def pool_failed(self) -> None:
        """A turn raised (a bug): nothing more is sent on this socket."""
        self._pooled = False
        self._broken = True
        self.drop_backlog()

    def receive(self) -> Coroutine[Any, Any, str | bytes]:
        """The socket's own receive: no frame of ours waits under it (an
        idle connection waits here, one per socket)."""
        if self._closed:
            raise TransportClosed
        return self.socket.receive()

    async def close(self, code: int = 1000) -> None:
        if self._closed:
            return
        self._closed = True
        if self._broken:
            await _close_now(self.socket)
        else:
            await self.socket.close(code)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _close_now(self.socket)


async def wait_for_writer(
    ended: trio.Event, stalled: Callable[[], bool], cut_off: float, limit: float
) -> None:
    """Wait for a writer to end (``ended``) until ``cut_off``; past it, go
    on waiting only while its socket still takes writes (``stalled()``
    false), and never past ``limit``.

    A writer whose socket takes writes waits for this process to get to
    it, not for its client: in a busy process (a shutdown under a
    broadcast storm) cutting it off at a fixed time would cut off
    clients that read everything. A stalled socket is the client's doing.
    """
    with trio.move_on_at(cut_off):
        await ended.wait()
    while not ended.is_set() and trio.current_time() < limit and not stalled():
        with trio.move_on_at(min(trio.current_time() + _RECHECK, limit)):
            await ended.wait()


def stream_stalled(stream: object) -> bool:
    """Whether the TCP socket under a trio stream takes no more writes
    (True if there is none to ask): with TCP_NOTSENT_LOWAT, which trio
    sets, that is a client leaving 16 KiB unread."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return True
    try:
        fd = stream.socket.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            return not poller.poll(0)
        return not select.select([], [fd], [], 0)[1]  # Windows: no poll()
    except (OSError, ValueError):  # closed
        return True


async def _close_now(socket: MessageSocket) -> None:
    # A close under a cancelled scope skips the handshake; every socket
    # closes its connection in its own cleanup even when cancelled.
    with trio.CancelScope() as scope:
        scope.cancel()
        await socket.close()
