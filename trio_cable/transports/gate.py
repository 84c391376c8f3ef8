"""A client's bytes, metered on their way to a parser with no budget of
its own.

trio-websocket reads its socket in a task of its own and handles every
frame of a read before it reads again: a read of tiny frames (pings,
fragments, bogus commands) is hundreds of them, and nothing bounds how
fast a client may send them, how many fragments a message may have or
how long it may stay unfinished. :class:`InputGate` is the stream
trio-websocket is handed instead of the socket's: it passes the
request's head on as it comes, then hands on at most
:data:`~.inbound.STEP_FRAMES` frames per read (cut at frame boundaries
by :class:`~.inbound.FrameScanner`), lets other tasks run between two
reads, and reads no faster than the client's frame and byte rates allow
(:class:`~.inbound.InputBudget`): the promises of the direct transport.
A message past a limit is refused as the direct transport refuses it: a
close frame with code 1009 or 1008 and the reason, the refusal counted,
and the stream ends (trio-websocket then sees the peer as gone).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio
from wsproto.frame_protocol import FrameProtocol

from .inbound import STEP_FRAMES, FrameScanner, InputBudget, InputLimits, Refusal
from .scope import peer_address
from .throttle import pause

__all__ = ["InputGate"]

log = logging.getLogger("trio_cable.trio_websocket")

_CLOSED_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class InputGate(trio.abc.Stream):
    """``transport_stream``, read within ``limits`` (see the module).

    ``count`` is told ``"input_throttled"`` once per episode of a client
    over its rates and ``"message_refused"`` for each refusal. A refusal's
    close frame waits at most ``close_timeout`` for the socket.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        max_message_size: int,
        limits: InputLimits,
        close_timeout: float,
        count: Callable[[str], None] | None = None,
        peer: trio.abc.Stream | None = None,
    ) -> None:
        self.transport_stream = transport_stream
        self._peer = peer or transport_stream  # whose address to log
        self._budget = InputBudget(limits, trio.current_time())
        self._scanner = FrameScanner(max_message_size, limits)
        self._close_timeout = close_timeout
        self._count = count
        self._held = b""  # read, not handed on yet
        self._head = True  # the request's head is still being handed on
        self._tail = b""  # its last 3 bytes so far
        self._wait = 0.0  # the pause owed before the next read
        self._refused = False
        # trio-websocket serialises its own writes; a refusal's close frame
        # must not land in the middle of one of them.
        self._send_lock = trio.Lock()

    @property
    def unfinished_bytes(self) -> int:
        """Bytes of a message not yet complete that were passed on."""
        return self._scanner.buffered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self._pause()
        if self._refused:
            return b""
        if not self._held:
            data = await self._read(max_bytes)
            if data is None or not data:
                return b""
            self._held = data
        data = self._held if max_bytes is None else self._held[:max_bytes]
        if self._head:
            return self._hand_head(data)
        now = trio.current_time()
        scanned = self._scanner.scan(data, STEP_FRAMES, now)
        if isinstance(scanned, Refusal):
            await self._refuse(scanned)
            return b""
        size, frames = scanned
        budget = self._budget
        wait = budget.bytes_read(size, now)
        for _ in range(frames):
            pause = budget.frame(now)
            if pause is not None:
                wait = max(wait, pause)
        self._wait = wait
        self._held = self._held[size:]
        return data[:size]

    async def _read(self, max_bytes: int | None) -> bytes | None:
        """The next bytes from the socket; None (the message refused) if
        an unfinished message's deadline passes first."""
        deadline = self._scanner.deadline
        data: bytes | None = None
        with trio.move_on_at(deadline):
            try:
                data = bytes(await self.transport_stream.receive_some(max_bytes))
            except _CLOSED_ERRORS:
                data = b""
        if data is None:
            await self._refuse(self._scanner.timed_out())
        return data

    def _hand_head(self, data: bytes) -> bytes:
        """The request's head up to its end; frames only after it."""
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._tail = seen[-3:]
            self._held = self._held[len(data) :]
            return data
        size = end + 4 - len(self._tail)
        self._head = False
        self._tail = b""
        self._held = self._held[size:]
        return data[:size]

    async def _pause(self) -> None:
        """The pause owed since the last read (see transports.throttle)."""
        wait, self._wait = self._wait, 0.0
        await pause(self._budget, wait, self._count, log, self._peer)

    async def _refuse(self, refusal: Refusal) -> None:
        self._refused = True
        self._held = b""
        if self._count is not None:
            self._count("message_refused")
        log.info(
            "closing %s with code %d: %s",
            peer_address(self._peer),
            refusal.code,
            refusal.reason,
        )
        frame = FrameProtocol(client=False, extensions=[]).close(
            refusal.code, refusal.reason[:120]
        )
        with trio.move_on_after(self._close_timeout):
            async with self._send_lock:
                with contextlib.suppress(*_CLOSED_ERRORS):
                    await self.transport_stream.send_all(frame)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._refused:
            # Our close frame went out: nothing may follow it.
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("the client's message was refused")
        async with self._send_lock:
            await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._held = b""
        await self.transport_stream.aclose()
