"""The direct transport: WebSockets on sockets we own.

wsproto (sans-I/O) parses the handshake and the client's frames; the
frames we send are encoded by hand. Server frames are unmasked, so the
bytes of a frame the hub shares between subscribers (one per broadcast
and identifier) are encoded once and written to every socket as they are
(see :mod:`trio_cable.protocol.wsframe`): straight from the broadcasting
task on plain TCP, and only what a socket refuses waits for the
connection's writer, which joins it into as few writes as fit.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WSRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .._errors import TransportClosed
from .._request import Request
from ..protocol.wsframe import FrameCache
from .scope import latin1, websocket_scope

__all__ = ["DirectHandshake", "DirectTransport", "HTTPRoutes"]

log = logging.getLogger("trio_cable.direct")

#: Bytes asked of the socket per read.
RECEIVE_SIZE: Final = 65536
#: A batch is joined into writes of about this size: big enough that a
#: burst costs one syscall per socket, small enough that a slow client's
#: batch is not copied into one huge buffer.
WRITE_CHUNK: Final = 64 * 1024

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
    reader is left).
    """

    __slots__ = (
        "_broken",
        "_ended",
        "_ended_event",
        "_flushing",
        "_frames",
        "_head_partial",
        "_idle",
        "_max_message",
        "_messages",
        "_parts",
        "_pending",
        "_pending_bytes",
        "_reading",
        "_size",
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
    ) -> None:
        self._sock = sock  # plain TCP: written and read directly
        self._stream = stream  # otherwise (TLS)
        self._ws: WSConnection | None = None  # set once the handshake is done
        self._frames = frames
        self._max_message = max_message_size
        self._messages: list[str | bytes] = []  # complete, not yet received
        self._parts: list[Any] = []  # the message being reassembled
        self._size = 0
        self._pending: list[bytes] = []  # bytes the socket has not taken yet
        self._pending_bytes = 0
        self._head_partial = False  # _pending[0] is the rest of a cut write
        self._flushing = False  # a flush is under way
        self._idle: trio.Event | None = None  # made only when flushes contend
        self._broken = False  # the socket broke, or a write was cut off
        self._reading = False  # a task is inside _recv()
        self._ended = False  # nothing more will be read
        self._ended_event: trio.Event | None = None

    # -- writing -------------------------------------------------------------

    @property
    def backlog_frames(self) -> int:
        return len(self._pending)

    @property
    def backlog_bytes(self) -> int:
        return self._pending_bytes

    def write_nowait(self, frame: str) -> int:
        ws = self._ws
        if ws is None or ws.state is not ConnectionState.OPEN:
            raise TransportClosed  # no data after a close frame, either way
        return self._write_nowait(self._frames.encode(frame))

    def _write_nowait(self, data: bytes) -> int:
        if self._broken:
            raise TransportClosed
        sock = self._sock
        if self._pending or self._flushing or sock is None:
            self._pending.append(data)
            self._pending_bytes += len(data)
            return self._pending_bytes
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken = True
            raise TransportClosed from None
        if sent == len(data):
            return 0
        rest = data[sent:] if sent else data
        self._pending.append(rest)
        self._pending_bytes = len(rest)
        self._head_partial = sent > 0
        return self._pending_bytes

    def close_nowait(self, code: int = 1000) -> int:
        ws = self._ws
        if ws is None or ws.state is not ConnectionState.OPEN:
            return self._pending_bytes
        return self._write_nowait(ws.send(CloseConnection(code)))

    def drop_backlog(self) -> None:
        keep = self._pending[:1] if self._head_partial else []
        self._pending = keep
        self._pending_bytes = sum(len(data) for data in keep)

    async def flush(self) -> None:
        """Write everything queued; returns once the backlog is empty."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._pending:
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
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
        if self._broken:
            raise TransportClosed

    def _take_chunk(self) -> tuple[int, bytes]:
        pending = self._pending
        count, size = 0, 0
        while count < len(pending) and size < WRITE_CHUNK:
            size += len(pending[count])
            count += 1
        chunk = pending[0] if count == 1 else b"".join(pending[:count])
        return count, chunk

    async def _flush_socket(self, sock: socket.socket) -> None:
        while self._pending:
            try:
                await trio.lowlevel.wait_writable(sock)
            except trio.ClosedResourceError:
                self._broken = True
                raise TransportClosed from None
            count, chunk = self._take_chunk()
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                continue
            except OSError:
                self._broken = True
                raise TransportClosed from None
            del self._pending[:count]
            self._pending_bytes -= sent
            if sent < len(chunk):
                self._pending.insert(0, chunk[sent:])
                self._head_partial = True
            else:
                self._head_partial = False

    async def _flush_stream(self) -> None:
        assert self._stream is not None
        while self._pending:
            count, chunk = self._take_chunk()
            del self._pending[:count]
            self._pending_bytes -= len(chunk)
            try:
                await self._stream.send_all(chunk)
            except BaseException as exc:
                # Cut off mid-frame, maybe: any later frame would be garbage.
                self._broken = True
                if isinstance(exc, _CLOSED_ERRORS):
                    raise TransportClosed from None
                raise

    async def _send_bytes(self, data: bytes) -> None:
        with contextlib.suppress(TransportClosed):
            self._write_nowait(data)
            await self.flush()

    async def _send_event(self, event: Event) -> None:
        """A control frame (pong, close) through wsproto, which tracks state."""
        assert self._ws is not None
        await self._send_bytes(self._ws.send(event))

    # -- reading ----------------------------------------------------------------

    async def _recv(self) -> bytes:
        """Bytes from the peer; b"" once it is gone."""
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            try:
                return bytes(await self._stream.receive_some(RECEIVE_SIZE))
            except _CLOSED_ERRORS:
                return b""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                pass
            except OSError:
                return b""
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            # Wait outside the except clause: inside it, the exception being
            # handled (and its traceback) would live as long as the wait,
            # half a KiB for every idle connection.
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                return b""

    async def receive(self) -> str | bytes:
        while not self._messages:
            if self._ended:
                raise TransportClosed
            await self._read_some()
        return self._messages.pop(0)

    async def _read_some(self) -> None:
        self._reading = True
        try:
            data = await self._recv()
        finally:
            self._reading = False
        if not data:  # gone without a close frame
            self._end()
            return
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        for event in ws.events():
            await self._on_event(event)
            if self._ended:
                return

    async def _on_event(self, event: Event) -> None:
        ws = self._ws
        assert ws is not None
        if isinstance(event, TextMessage | BytesMessage):
            self._parts.append(event.data)
            self._size += len(event.data)
            if self._size > self._max_message:
                await self._fail(1009, f"messages are limited to {self._max_message}")
            elif event.message_finished:
                parts, self._parts, self._size = self._parts, [], 0
                if isinstance(event, TextMessage):
                    self._messages.append("".join(parts))
                else:
                    self._messages.append(b"".join(parts))
        elif isinstance(event, Ping):
            if ws.state is ConnectionState.OPEN:
                await self._send_event(event.response())
        elif isinstance(event, CloseConnection):
            state = ws.state
            if state is ConnectionState.OPEN:
                # wsproto reports a framing error as a close it did not
                # receive (its state stays OPEN): close with its code.
                await self._fail(event.code, event.reason or "")
            else:
                if state is ConnectionState.REMOTE_CLOSING:
                    await self._send_event(event.response())
                self._end()

    async def _fail(self, code: int, reason: str) -> None:
        log.info("closing a socket with code %d: %s", code, reason)
        self._end()
        assert self._ws is not None
        if self._ws.state is ConnectionState.OPEN:
            await self._send_event(CloseConnection(code, reason[:120]))

    def _end(self) -> None:
        self._ended = True
        self._parts = []
        if self._ended_event is not None:
            self._ended_event.set()

    # -- closing ------------------------------------------------------------------

    async def close(self, code: int = 1000) -> None:
        """Our close frame, the client's reply, then the socket.

        Bounded by the caller's deadline; the socket is closed even if it
        runs out or the call is cancelled.
        """
        try:
            ws = self._ws
            open_ = ws is not None and ws.state is ConnectionState.OPEN
            if open_ and not self._broken:
                await self._send_event(CloseConnection(code))
            if ws is not None and not self._broken:
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
        while not self._ended:
            await self._read_some()

    async def aclose(self) -> None:
        """Close the socket now (no close handshake); idempotent."""
        self._end()
        self._pending = []
        self._pending_bytes = 0
        sock = self._sock
        if sock is not None:
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            await trio.lowlevel.checkpoint()
        else:
            assert self._stream is not None
            await trio.aclose_forcefully(self._stream)


# -- the handshake ----------------------------------------------------------------


#: A plain HTTP GET the direct server answers (stats, metrics): path ->
#: (content type, body), or None for "not mine" (then a 400/426 as usual).
HTTPRoutes = Callable[[str], "tuple[str, bytes] | None"]


class DirectHandshake:
    """The handshake on a :class:`DirectTransport`, read with wsproto."""

    __slots__ = ("_handshake", "_http", "_secure", "transport")

    def __init__(
        self,
        transport: DirectTransport,
        *,
        secure: bool,
        http: HTTPRoutes | None = None,
    ) -> None:
        self.transport = transport
        self._secure = secure
        self._http = http
        self._handshake = H11Handshake(ConnectionType.SERVER)

    async def request(self) -> Request | None:
        """The client's upgrade request; None if it left or sent nonsense
        (which is answered with wsproto's 400/426 here), or sent a plain
        GET that ``http`` answered."""
        transport, handshake = self.transport, self._handshake
        head = b""  # kept only until the request is whole
        while True:
            data = await transport._recv()
            if not data:
                return None
            head += data
            try:
                handshake.receive_data(data)
                for event in handshake.events():
                    if isinstance(event, WSRequest):
                        return Request(_scope(event, self._peer(), self._secure))
            except RemoteProtocolError as exc:
                if await self._plain_get(head):
                    return None
                hint = exc.event_hint
                if isinstance(hint, RejectConnection):
                    await self.refuse(hint.status_code, str(exc))
                return None

    async def _plain_get(self, head: bytes) -> bool:
        """Answer a plain ``GET`` (not an upgrade) from ``http``, if it has
        the path; wsproto refused it already, so the answer is written by
        hand, and the connection closes after it."""
        if self._http is None:
            return False
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if method not in (b"GET", b"HEAD"):
            return False
        answer = self._http(target.decode("latin-1"))
        if answer is None:
            return False
        content_type, body = answer
        response = (
            b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"cache-control: no-store\r\nconnection: close\r\n\r\n"
        ) % (content_type.encode(), len(body))
        await self.transport._send_bytes(
            response + (b"" if method == b"HEAD" else body)
        )
        return True

    async def refuse(self, status: int, reason: str) -> None:
        body = reason.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        handshake = self._handshake
        data = handshake.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        )
        data += handshake.send(RejectData(data=body))
        await self.transport._send_bytes(data)

    async def accept(self, subprotocol: str | None) -> DirectTransport | None:
        transport, handshake = self.transport, self._handshake
        data = handshake.send(AcceptConnection(subprotocol=subprotocol))
        try:
            transport._write_nowait(data)
            await transport.flush()
        except TransportClosed:
            return None
        transport._ws = handshake.connection
        assert transport._ws is not None  # made by the accept
        return transport

    def _peer(self) -> tuple[str, int] | None:
        transport = self.transport
        if transport._sock is not None:
            sock: Any = transport._sock
        else:
            stream = transport._stream
            while isinstance(stream, trio.SSLStream):
                stream = stream.transport_stream
            if not isinstance(stream, trio.SocketStream):
                return None
            sock = stream.socket
        with contextlib.suppress(OSError):
            address = sock.getpeername()
            if isinstance(address, tuple):
                return (str(address[0]), int(address[1]))
        return None


def _scope(
    event: WSRequest, client: tuple[str, int] | None, secure: bool
) -> dict[str, Any]:
    """An ASGI-style scope describing the handshake."""
    # wsproto keeps Host out of the extra headers; put it back
    headers = [(b"host", latin1(event.host))]
    headers += [(latin1(name), latin1(value)) for name, value in event.extra_headers]
    return websocket_scope(
        event.target,
        headers,
        client=client,
        subprotocols=event.subprotocols,
        secure=secure,
    )
