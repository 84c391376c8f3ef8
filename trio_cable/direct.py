"""Serve a cable straight on trio sockets: the direct transport.

The server owns its sockets. wsproto (sans-I/O) parses the handshake and
the client's frames; the frames we send are encoded here, by hand. Server
frames are unmasked, so the bytes of a frame the hub shares between
subscribers (one per broadcast and identifier) are encoded once and
written to every socket as they are (see ``_wsframe``): straight from the
broadcasting task on plain TCP, and only what a socket refuses waits for
the connection's writer, which joins it into as few writes as fit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
from contextlib import AsyncExitStack
from typing import Any, Final, NoReturn

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

from ._cable import Cable
from ._connection import Connection
from ._gc import tune_gc as _tune_gc
from ._request import Request
from ._serving import Served
from ._transport import TransportClosed
from .protocol.codec import select_subprotocol
from .protocol.wsframe import FrameCache

__all__ = ["DirectTransport", "serve_cable_direct"]

log = logging.getLogger("trio_cable.direct")

#: Bytes asked of the socket per read.
RECEIVE_SIZE: Final = 65536
#: A batch is joined into writes of about this size: big enough that a
#: burst costs one syscall per socket, small enough that a slow client's
#: batch is not copied into one huge buffer.
WRITE_CHUNK: Final = 64 * 1024

_CLOSED_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)

#: Connections accepted per wake-up of the listening socket, at most.
ACCEPT_BATCH: Final = 128
#: accept() errors that mean "out of descriptors or memory": wait, retry.
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: accept() errors about one connection that already went away.
_IGNORABLE_ACCEPT_ERRNOS: Final = frozenset(
    {errno.ECONNABORTED, errno.EPERM, errno.EPROTO}
)
#: The name of every connection's task (trio would format one per task).
_CONN_TASK: Final = "trio_cable.direct.connection"


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

    async def send(self, frame: str) -> None:
        self.write_nowait(frame)
        await self.flush()

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
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    return b""
                continue
            except OSError:
                return b""
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

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


def _scope(
    event: WSRequest, client: tuple[str, int] | None, secure: bool
) -> dict[str, Any]:
    """An ASGI-style scope describing the handshake."""
    path, _, query = event.target.partition("?")
    # wsproto keeps Host out of the extra headers; put it back
    headers = [(b"host", _latin1(event.host))]
    headers += [(_latin1(name), _latin1(value)) for name, value in event.extra_headers]
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss" if secure else "ws",
        "path": path,
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": None,
        "subprotocols": list(event.subprotocols),
    }


def _latin1(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1", "replace")


def _peer(transport: DirectTransport) -> tuple[str, int] | None:
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


async def _read_request(
    transport: DirectTransport, handshake: H11Handshake
) -> WSRequest | None:
    """The client's upgrade request; None if it left or sent nonsense
    (which is answered with wsproto's 400/426 here)."""
    while True:
        data = await transport._recv()
        if not data:
            return None
        try:
            handshake.receive_data(data)
            for event in handshake.events():
                if isinstance(event, WSRequest):
                    return event
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                await _reject(transport, handshake, hint.status_code, str(exc))
            return None


async def _reject(
    transport: DirectTransport, handshake: H11Handshake, status: int, reason: str
) -> None:
    body = reason.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    data = handshake.send(
        RejectConnection(status_code=status, headers=headers, has_body=True)
    )
    data += handshake.send(RejectData(data=body))
    await transport._send_bytes(data)


class _Handler:
    """Handshake, then the connection, for each accepted stream."""

    def __init__(
        self,
        cable: Cable,
        path: str,
        *,
        secure: bool,
        max_message_size: int,
        connect_timeout: float,
    ) -> None:
        self.cable = cable
        self.path = path
        self.secure = secure
        self.max_message = max_message_size
        self.connect_timeout = connect_timeout
        self.frames = FrameCache()
        self.served = Served(log)

    async def __call__(self, stream: trio.abc.Stream) -> None:
        """A stream from a listener other than a plain TCP one (TLS)."""
        if isinstance(stream, trio.SocketStream):
            # Plain TCP after all: take the socket itself.
            sock = socket.socket(fileno=stream.socket.detach())
            sock.setblocking(False)
            await self.serve_socket(sock)
            return
        await self._serve(DirectTransport(None, stream, self.frames, self.max_message))

    async def serve_socket(self, sock: socket.socket) -> None:
        """An accepted non-blocking socket, written and read directly."""
        await self._serve(DirectTransport(sock, None, self.frames, self.max_message))

    async def _serve(self, transport: DirectTransport) -> None:
        try:
            request = None
            with trio.move_on_after(self.connect_timeout):
                request = await self._handshake(transport)
            if request is not None:
                conn = Connection(self.cable, transport, request)
                self.served.add(conn)
                try:
                    await conn.run()
                except Exception:
                    self.served.crashed(conn)
                finally:
                    self.served.discard(conn)
        finally:
            await transport.aclose()

    async def _handshake(self, transport: DirectTransport) -> Request | None:
        handshake = H11Handshake(ConnectionType.SERVER)
        event = await _read_request(transport, handshake)
        if event is None:
            return None
        request = Request(_scope(event, _peer(transport), self.secure))
        if request.path != self.path:
            await _reject(transport, handshake, 404, "Not Found")
            return None
        refused = self.cable.refuse_handshake(request)
        if refused is not None:
            await _reject(transport, handshake, *refused)
            return None
        proto = select_subprotocol(event.subprotocols)
        data = handshake.send(AcceptConnection(subprotocol=proto))
        try:
            transport._write_nowait(data)
            await transport.flush()
        except TransportClosed:
            return None
        transport._ws = handshake.connection
        assert transport._ws is not None  # made by the accept
        return request


async def serve_cable_direct(
    cable: Cable,
    host: str | None,
    port: int,
    *,
    path: str = "/cable",
    ssl_context: ssl.SSLContext | None = None,
    listeners: list[trio.abc.Listener[Any]] | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    tune_gc: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``cable`` at ``ws://host:port/path`` on sockets of our own.

    Never returns. The same contract as :func:`~trio_cable.serve_cable`:
    runs the cable too (unless it is already running) and reports the
    bound port through ``task_status`` once it accepts connections (with
    ``listeners``, the first one's port). Handshakes to another path get
    HTTP 404; those the cable refuses (origin, connection cap) get its
    403/503, before any WebSocket is accepted. ``ssl_context`` serves
    ``wss://`` (it wraps ``listeners`` too, if given).

    A message over ``max_message_size`` closes its socket with code 1009;
    invalid framing closes it with 1002 (or wsproto's more precise code).
    ``tune_gc`` applies :func:`trio_cable.tune_gc` once listening, as
    :func:`~trio_cable.serve_cable` does.

    Cancellation: each client is sent what was already queued for it,
    then ``disconnect`` with reason ``server_restart`` (reconnect true),
    and its socket is closed with a close handshake, every
    ``unsubscribed()`` running; connections still open after
    ``close_timeout + hook_timeout`` (a client that stopped reading) are
    then cancelled outright.
    """
    if listeners is None:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    if ssl_context is not None:
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True)
            for listener in listeners
        ]
    handler = _Handler(
        cable,
        path,
        secure=ssl_context is not None,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
    )
    # Like serve_cable: the handlers run shielded, so cancellation first
    # closes every connection the ordinary way, and only then cuts it off.
    server_scope = trio.CancelScope(shield=True)
    async with AsyncExitStack() as stack:
        if not cable.is_running:
            await stack.enter_async_context(cable.running())
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(_serve_in, server_scope, handler, listeners)
                bound = _port_of(listeners[0])
                log.info("serving a cable at ws://%s:%d%s (direct)", host, bound, path)
                if tune_gc:
                    _tune_gc()
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                await handler.served.drain(cable.close_timeout + cable.hook_timeout)
                server_scope.cancel()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_in(
    scope: trio.CancelScope,
    handler: _Handler,
    listeners: list[trio.abc.Listener[Any]],
    *,
    task_status: trio.TaskStatus[list[trio.abc.Listener[Any]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> None:
    """Accept on every listener; each connection is a task in one nursery.

    A plain TCP listener is served by :func:`_accept_sockets` (stdlib
    sockets straight from ``accept()``); any other (TLS) by trio's own
    ``accept()``. Listeners are closed at the end, as
    ``trio.serve_listeners`` does.
    """
    with scope:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                if type(listener) is trio.SocketListener:
                    nursery.start_soon(_accept_sockets, listener, handler, nursery)
                else:
                    nursery.start_soon(_accept_streams, listener, handler, nursery)
            task_status.started(listeners)


async def _accept_sockets(
    listener: trio.SocketListener, handler: _Handler, nursery: trio.Nursery
) -> None:
    """Accept stdlib sockets in batches, with no trio stream per socket
    (the direct transport writes to the socket itself)."""
    async with listener:
        # A second descriptor for the listening socket, owned here, so the
        # accepted sockets come back as stdlib sockets.
        lsock = socket.socket(fileno=os.dup(listener.socket.fileno()))
        lsock.setblocking(False)
        try:
            while True:
                await trio.lowlevel.wait_readable(lsock)
                for _ in range(ACCEPT_BATCH):
                    try:
                        sock, _address = lsock.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in _IGNORABLE_ACCEPT_ERRNOS:
                            continue
                        if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                            raise
                        log.error("accept failed (%s); retrying in 0.1 s", exc)
                        await trio.sleep(0.1)
                        break
                    sock.setblocking(False)
                    if sock.family != socket.AF_UNIX:
                        _tcp_options(sock)
                    nursery.start_soon(handler.serve_socket, sock, name=_CONN_TASK)
        finally:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()


def _tcp_options(sock: socket.socket) -> None:
    """What trio's SocketStream sets: no Nagle delay, and (where there is
    such an option) at most 16 KiB unsent in the kernel, so a client that
    stops reading fills its socket soon and meets the slow-client policy
    instead of hiding megabytes in kernel buffers."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_NOTSENT_LOWAT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 1 << 14)


async def _accept_streams(
    listener: trio.abc.Listener[Any], handler: _Handler, nursery: trio.Nursery
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed (%s); retrying in 0.1 s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_serve_stream, handler, stream, name=_CONN_TASK)


async def _serve_stream(handler: _Handler, stream: trio.abc.Stream) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


def _port_of(listener: trio.abc.Listener[Any]) -> int:
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, trio.SocketListener):
        port: int = listener.socket.getsockname()[1]
        return port
    return 0
