"""The direct transport: WebSockets on sockets we own.

The handshake is read by :mod:`.upgrade` (see :mod:`.direct_handshake`)
and the client's frames by wsproto (sans-I/O); the frames we send are
encoded by hand. Server frames are unmasked, so the
bytes of a frame the hub shares between subscribers (one per broadcast
and identifier) are encoded once and written to every socket as they are
(see :mod:`trio_cable.protocol.wsframe`): straight from the broadcasting
task on plain TCP, and only what a socket refuses waits for the
connection's writer, which joins it into as few writes as fit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, Literal

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)

from .._errors import TransportClosed
from ..protocol.wsframe import FrameCache
from .inbound import Assembly, InputBudget, InputLimits, Refusal, frame_events
from .outbox import Outbox
from .scope import peer_address
from .throttle import pause

__all__ = ["DirectTransport"]

log = logging.getLogger("trio_cable.direct")

#: Bytes asked of the socket per read.
RECEIVE_SIZE: Final = 65536

_CLOSED_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


class DirectTransport:
    """An accepted WebSocket on a socket we own, as a cable transport.

    Plain TCP: the transport owns a non-blocking socket and writes each
    frame the moment the connection hands it over (:meth:`write_nowait`),
    in the caller's task, with one ``send()``; what the socket does not
    take waits here, in order, until :meth:`flush` (run by the
    connection's writer only while there is a backlog) writes it, joined
    into as few writes as fit. A raw ``send()`` takes bytes or refuses
    them, so a frame is never cut off by cancellation.

    TLS (or any other trio stream): frames queue here and :meth:`flush`
    writes them with ``send_all``; a write cut off halfway leaves the
    stream unusable for framing, so nothing is written after it.

    One task reads (the connection's reader, or :meth:`close` when no
    reader is left), within ``limits``: it lets other tasks run every few
    frames, reads no faster than the client's frame and byte rates allow
    (``count("input_throttled")`` once per episode), and puts messages
    together bounded in bytes (``max_message_size``), fragments and time.
    """

    __slots__ = (
        "_assembly",
        "_broken",
        "_budget",
        "_count",
        "_drained",
        "_ended",
        "_ended_event",
        "_events",
        "_flushing",
        "_frames",
        "_held",
        "_idle",
        "_messages",
        "_outbox",
        "_plain",
        "_reading",
        "_sock",
        "_stream",
        "_ws",
    )

    def __init__(
        self,
        sock: socket.socket | None,
        stream: trio.abc.Stream | None,
        frames: FrameCache,
        max_message_size: int,
        limits: InputLimits | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._sock = sock  # plain TCP: written and read directly
        self._stream = stream  # otherwise (TLS)
        # wsproto's side once the handshake is done, made when first needed
        # (_wsproto; True until then, and open); None before.
        self._ws: WSConnection | Literal[True] | None = None
        self._frames = frames
        limits = limits or InputLimits()
        self._assembly = Assembly(max_message_size, limits)
        self._budget = InputBudget(limits, trio.current_time())
        self._count = count
        # Complete messages not yet received: a list only while there are
        # some (an empty list is 56 bytes every idle socket would keep).
        self._messages: list[str | bytes] | None = None
        # The parser's events of the last read, while some are not handled.
        self._events: Iterator[Event | str] | None = None
        self._outbox: Outbox | None = None  # what the socket has not taken yet
        self._held = b""  # bytes that go out with the next write (hold())
        self._flushing = False  # a flush is under way
        self._idle: trio.Event | None = None  # made only when flushes contend
        self._broken = False  # the socket broke, or a write was cut off
        self._drained = False  # the last read emptied the socket
        self._reading = False  # a task is inside receive()
        self._plain = True  # wsproto holds no part of a frame (frame_events)
        self._ended = False  # nothing more will be read
        self._ended_event: trio.Event | None = None

    def attach(self, rest: bytes = b"") -> None:
        """The handshake is done: frames are read and written from now on,
        ``rest`` (what came after the request head) first."""
        self._ws = True
        if rest:  # a client that did not wait for our answer
            self._events, self._plain = frame_events(rest, True, True, self._wsproto)

    def _wsproto(self) -> WSConnection:
        """wsproto's connection, made when a frame first needs it (a close, a
        ping, input but whole text frames): 1 KiB most sockets never hold."""
        ws = self._ws
        if ws is None or ws is True:
            ws = self._ws = WSConnection(ConnectionType.SERVER)
            # wsproto queues events in a deque only for receive_data(None)
            # (a close it did not read), which we never call: an empty deque
            # holds a 600-byte block; an empty tuple reads the same.
            if isinstance(ws._events, deque) and not ws._events:
                ws._events = ()  # type: ignore[assignment]  # see above
        return ws

    def _is_open(self) -> bool:
        """Data frames may still be sent and read (no close frame yet)."""
        ws = self._ws
        return ws is True or (ws is not None and ws.state is ConnectionState.OPEN)

    # -- writing -------------------------------------------------------------

    @property
    def raw_socket(self) -> socket.socket | None:
        """The socket written and read directly (None: a TLS stream)."""
        return self._sock

    @property
    def peer(self) -> tuple[str, int] | None:
        """The client's address (None: not a TCP socket, or gone)."""
        return peer_address(self._sock or self._stream)

    @property
    def backlog_frames(self) -> int:
        return 0 if self._outbox is None else len(self._outbox.frames)

    @property
    def backlog_bytes(self) -> int:
        return 0 if self._outbox is None else self._outbox.size

    def stalled(self) -> bool:
        return self.backlog_frames > 0  # only what the socket refused waits here

    @property
    def unfinished_bytes(self) -> int:
        """Bytes held of a message not yet complete."""
        return self._assembly.buffered

    def hand_off(self, writer: Callable[[], None]) -> bool:
        return False  # what a socket refused waits for the connection's writer

    def write_nowait(self, frame: str) -> int:
        if not self._is_open():
            raise TransportClosed  # no data after a close frame, either way
        return self.write_raw_nowait(self._frames.encode(frame))

    def hold(self, data: bytes) -> None:
        """Send ``data`` with the next write, in one ``send()`` (the 101 with
        the welcome); :meth:`flush`, :meth:`receive` and writes send it."""
        self._held += data

    def write_raw_nowait(self, data: bytes) -> int:
        if self._broken:
            raise TransportClosed
        if self._held:
            data, self._held = self._held + data, b""
        sock, outbox = self._sock, self._outbox
        if outbox is not None or self._flushing or sock is None:
            if outbox is None:
                outbox = self._outbox = Outbox()
            return outbox.add(data)
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken = True
            raise TransportClosed from None
        if sent == len(data):
            return 0
        self._outbox = Outbox()
        return self._outbox.add(data[sent:] if sent else data, partial=sent > 0)

    def close_nowait(self, code: int = 1000) -> int:
        if not self._is_open():
            return self.backlog_bytes
        return self.write_raw_nowait(self._wsproto().send(CloseConnection(code)))

    def drop_backlog(self) -> None:
        if self._outbox is not None:
            self._outbox.drop()
            if not self._outbox.frames:  # writes go straight out again
                self._outbox = None

    async def flush(self) -> None:
        """Write everything queued; returns once the backlog is empty."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._held:
            self.write_raw_nowait(b"")
        while self._outbox is not None:
            if self._flushing:
                if self._idle is None:
                    self._idle = trio.Event()
                await self._idle.wait()
                continue
            self._flushing = True
            try:
                if self._sock is not None:
                    await self._flush_socket(self._sock)
                else:
                    await self._flush_stream()
            finally:
                self._flushing = False
                if self._outbox is not None and not self._outbox.frames:
                    self._outbox = None  # written: let go of it
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
        if self._broken:
            raise TransportClosed

    async def _flush_socket(self, sock: socket.socket) -> None:
        while self.backlog_frames:
            try:
                await trio.lowlevel.wait_writable(sock)
            except trio.ClosedResourceError:
                self._broken = True
                raise TransportClosed from None
            outbox = self._outbox
            if outbox is None or not outbox.frames:
                break  # dropped meanwhile
            count, chunk = outbox.chunk()
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                continue
            except OSError:
                self._broken = True
                raise TransportClosed from None
            outbox.sent(count, chunk, sent)

    async def _flush_stream(self) -> None:
        assert self._stream is not None
        while (outbox := self._outbox) is not None and outbox.frames:
            count, chunk = outbox.chunk()
            outbox.sent(count, chunk, len(chunk))
            try:
                await self._stream.send_all(chunk)
            except BaseException as exc:
                # Cut off mid-frame, maybe: any later frame would be garbage.
                self._broken = True
                if isinstance(exc, _CLOSED_ERRORS):
                    raise TransportClosed from None
                raise

    async def send_raw(self, data: bytes) -> None:
        with contextlib.suppress(TransportClosed):
            self.write_raw_nowait(data)
            await self.flush()

    async def _send_event(self, event: Event) -> None:
        """A control frame (pong, close) through wsproto, which tracks state."""
        await self.send_raw(self._wsproto().send(event))

    # -- reading ----------------------------------------------------------------

    async def recv_raw(self, *, fresh: bool = False) -> bytes:
        """Bytes from the peer; b"" once it is gone. ``fresh``: the task
        has just started (it was scheduled for this read), so bytes that
        came already are returned with no checkpoint after them."""
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            try:
                return bytes(await self._stream.receive_some(RECEIVE_SIZE))
            except _CLOSED_ERRORS:
                return b""
        # One scheduling point per read, as trio's own sockets have: the
        # wait, or (had the bytes come already) a checkpoint after them.
        # After a read that emptied the socket, straight to the wait.
        await trio.lowlevel.checkpoint_if_cancelled()
        data = None if self._drained else _recv_nowait(sock)
        if data is not None and not fresh:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while data is None:
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return b""
            data = _recv_nowait(sock)
        self._drained = len(data) < RECEIVE_SIZE
        return data

    async def receive(self) -> str | bytes:
        """The next message: the parser's events are handled until one is
        complete (the rest wait for the next call), reading when none is
        left.

        One method, the read inline (long for that reason): an idle
        connection waits here, and every coroutine frame between its
        reader and the socket is memory each idle connection holds."""
        # Flagged for the whole of it, pauses included: close() must not
        # start a second reader on the same events.
        self._reading = True
        try:
            if self._held:  # no welcome to go with (a dialect without one)
                self.write_raw_nowait(b"")
            while not self._messages:
                if self._ended:
                    raise TransportClosed
                events = self._events
                if events is None:
                    sock = self._sock
                    if self._assembly.deadline != math.inf:  # one unfinished
                        data = await self._read_before_deadline()
                    elif sock is None:
                        data = await self.recv_raw()
                    else:
                        # recv_raw() inline: the read an idle connection
                        # waits in, with no coroutine frame of its own.
                        await trio.lowlevel.checkpoint_if_cancelled()
                        got = None if self._drained else _recv_nowait(sock)
                        if got is not None:
                            await trio.lowlevel.cancel_shielded_checkpoint()
                        while got is None:
                            try:
                                await trio.lowlevel.wait_readable(sock)
                            except trio.ClosedResourceError:
                                got = b""
                                break
                            got = _recv_nowait(sock)
                        # Read less than asked: the socket is empty now
                        # (the next read waits without trying first).
                        self._drained = len(got) < RECEIVE_SIZE
                        data = got
                    if not data:  # gone without a close frame, or timed out
                        self._end()
                        continue
                    # The read let the others run already: a pause only
                    # for a client over its byte rate.
                    budget = self._budget
                    wait = budget.bytes_read(len(data), trio.current_time())
                    if wait > 0:
                        await pause(
                            budget,
                            wait,
                            self._count,
                            log,
                            self._sock or self._stream,
                            "bytes ",
                        )
                    else:
                        budget.throttled = False
                    events, self._plain = frame_events(
                        data, self._plain, self._is_open(), self._wsproto
                    )
                    self._events = events
                    # Not kept while the loop waits for the next read: a
                    # chunk (up to 64 KiB) for every waiting socket.
                    data = got = b""
                budget = self._budget
                for event in events:
                    if isinstance(event, str):  # a whole text message
                        refused = self._keep(self._assembly.whole(event))
                        if refused is not None:
                            await self._refuse(refused)
                    else:
                        await self._on_event(event)
                    if self._events is None:
                        break  # ended: _end() let go of the events
                    owed = budget.frame(trio.current_time())
                    if owed is not None:
                        await pause(
                            budget,
                            owed,
                            self._count,
                            log,
                            self._sock or self._stream,
                            "frames ",
                        )
                    if self._messages:
                        break  # the generator keeps the rest
                else:
                    self._events = None
            messages = self._messages
            assert messages is not None
            if len(messages) == 1:
                self._messages = None
                return messages[0]
            return messages.pop(0)
        finally:
            self._reading = False

    def _keep(self, done: str | bytes | Refusal | None) -> Refusal | None:
        """A message the assembly finished waits to be received; a
        refusal is the caller's to act on."""
        if done is None or isinstance(done, Refusal):
            return done
        if self._messages is None:
            self._messages = [done]
        else:
            self._messages.append(done)
        return None

    async def _read_before_deadline(self) -> bytes:
        """The next read while a message is unfinished: b"" (the message
        refused) if its deadline passes first."""
        deadline = self._assembly.deadline
        data = b""
        with trio.move_on_at(deadline):
            data = await self.recv_raw()
        if trio.current_time() >= deadline:
            await self._refuse(self._assembly.timed_out())
            return b""
        return data

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            refused = self._keep(
                self._assembly.add(
                    event.data,
                    frame_finished=event.frame_finished,
                    message_finished=event.message_finished,
                    now=trio.current_time(),
                )
            )
            if refused is not None:
                await self._refuse(refused)
        elif isinstance(event, Ping):
            if self._is_open():
                await self._send_event(event.response())
        elif isinstance(event, CloseConnection):
            state = self._wsproto().state
            if state is ConnectionState.OPEN:
                # wsproto reports a framing error as a close it did not
                # receive (its state stays OPEN): close with its code.
                await self._fail(event.code, event.reason or "")
            else:
                if state is ConnectionState.REMOTE_CLOSING:
                    await self._send_event(event.response())
                self._end()

    async def _refuse(self, refusal: Refusal) -> None:
        if self._count is not None:
            self._count("message_refused")
        await self._fail(refusal.code, refusal.reason)

    async def _fail(self, code: int, reason: str) -> None:
        log.info("closing %s with code %d: %s", self.peer, code, reason)
        self._end()
        if self._is_open():
            await self._send_event(CloseConnection(code, reason[:120]))

    def _end(self) -> None:
        self._ended = True
        self._events = None
        self._assembly.reset()
        if self._ended_event is not None:
            self._ended_event.set()

    # -- closing ------------------------------------------------------------------

    async def close(self, code: int = 1000) -> None:
        """Our close frame, the client's reply, then the socket.

        Bounded by the caller's deadline; the socket is closed even if it
        runs out or the call is cancelled.
        """
        try:
            if self._is_open() and not self._broken:
                await self._send_event(CloseConnection(code))
            if self._ws is not None and not self._broken:
                await self._await_close_reply()
        finally:
            await self.aclose()

    async def _await_close_reply(self) -> None:
        if self._reading:
            # The connection's reader is still reading: it will see it.
            if self._ended_event is None:
                self._ended_event = trio.Event()
            await self._ended_event.wait()
            return
        with contextlib.suppress(TransportClosed):
            while True:
                await self.receive()  # too late for what it reads

    async def aclose(self) -> None:
        """Close the socket now (no close handshake); idempotent."""
        self._end()
        self._outbox = None
        self._held = b""
        sock = self._sock
        if sock is not None:
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            await trio.lowlevel.checkpoint()
        else:
            assert self._stream is not None
            await trio.aclose_forcefully(self._stream)


def _recv_nowait(sock: socket.socket) -> bytes | None:
    """What the socket has (b"": gone), or None if nothing yet. (The wait
    is the caller's: inside this except clause, the exception and its
    traceback would live as long as the wait, half a KiB an idle socket.)"""
    try:
        return sock.recv(RECEIVE_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""
