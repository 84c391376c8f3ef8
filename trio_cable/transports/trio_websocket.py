"""The trio-websocket transport: its handshakes and connections, our contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, cast, overload

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from .._errors import TransportClosed
from .._request import Request
from .gate import InputGate
from .queued import QueuedTransport, stream_stalled
from .scope import latin1, websocket_scope

__all__ = ["WebSocketHandshake", "WebSocketTransport", "request_scope"]


class _WebSocketSocket:
    __slots__ = ("gate", "stream", "ws")

    cancel_safe = False  # send_all may be cut off halfway

    def stalled(self) -> bool:
        return stream_stalled(self.stream)

    def __init__(
        self, ws: WebSocketConnection, stream: object, gate: InputGate | None
    ) -> None:
        self.ws = ws
        self.gate = gate
        # trio-websocket keeps its stream private; without it, assume the
        # worst (the client counts as too slow by its queue alone).
        self.stream = getattr(ws, "_stream", None) if stream is None else stream

    async def send(self, frame: str) -> None:
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed:
            raise TransportClosed from None

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.get_message()
        except ConnectionClosed:
            raise TransportClosed from None

    async def close(self, code: int = 1000) -> None:
        # aclose() closes the TCP stream in its finally, even if cancelled.
        await self.ws.aclose(code)


class WebSocketTransport(QueuedTransport):
    """A trio-websocket connection as a cable transport.

    ``stream`` is the TCP (or TLS) stream under ``ws``, if it is not
    trio-websocket's own: what tells a client that stopped reading.
    ``gate``: the :class:`~.gate.InputGate` ``ws`` reads through, if any.
    """

    __slots__ = ()

    def __init__(
        self,
        ws: WebSocketConnection,
        stream: trio.abc.Stream | None = None,
        gate: InputGate | None = None,
    ) -> None:
        super().__init__(_WebSocketSocket(ws, stream, gate))

    @property
    def unfinished_bytes(self) -> int:
        """Bytes held of a message not yet complete (0: no gate to say)."""
        gate = cast(_WebSocketSocket, self.socket).gate
        return 0 if gate is None else gate.unfinished_bytes


#: What reads a handshake for :class:`WebSocketHandshake`: the request
#: trio-websocket parsed and the gate it reads through, or None (gone, or
#: not a WebSocket: answered already).
OpenRequest = Callable[[], Awaitable[tuple[WebSocketRequest, InputGate | None] | None]]


class WebSocketHandshake:
    """A socket whose handshake trio-websocket reads, for the serving path.

    ``open_request`` reads it when the serving path asks for the request
    (so a handshake under way counts against the cable's limits, and
    ``connect_timeout`` bounds it). ``stream``: the socket's own stream,
    when trio-websocket was handed a wrapper of it (the client's address
    and stalls are read from it). ``connection`` is the WebSocket once
    accepted.
    """

    __slots__ = ("_gate", "_open", "_request", "_secure", "_stream", "connection")

    def __init__(
        self,
        open_request: OpenRequest,
        *,
        secure: bool,
        stream: trio.abc.Stream | None = None,
    ) -> None:
        self._open: OpenRequest | None = open_request
        self._request: WebSocketRequest | None = None
        self._gate: InputGate | None = None
        self._secure = secure
        self._stream = stream
        self.connection: WebSocketConnection | None = None

    async def request(self) -> Request | None:
        if self._open is not None:
            opened, self._open = await self._open(), None
            if opened is not None:
                self._request, self._gate = opened
        if self._request is None:
            return None
        return Request(_LazyScope(self._request, self._secure, self._stream))

    def _read(self) -> WebSocketRequest:
        if self._request is None:
            raise RuntimeError("the handshake was not read (call request() first)")
        return self._request

    async def refuse(self, status: int, reason: str) -> None:
        await self._read().reject(status, body=reason.encode())

    async def accept(self, subprotocol: str | None) -> WebSocketTransport:
        self.connection = await self._read().accept(subprotocol=subprotocol)
        return WebSocketTransport(self.connection, self._stream, self._gate)


def request_scope(request: WebSocketRequest, secure: bool = False) -> dict[str, Any]:
    """An ASGI-style scope describing a trio-websocket handshake."""
    return _scope(request, secure, _client(request))


def _scope(
    request: WebSocketRequest, secure: bool, client: tuple[str, int] | None
) -> dict[str, Any]:
    return websocket_scope(
        request.path,
        list(_HeaderView(request)),
        client=client,
        subprotocols=request.proposed_subprotocols,
        secure=secure,
    )


def _host(request: WebSocketRequest) -> bytes:
    # The one place we read trio-websocket's private state: it keeps the
    # Host header out of ``request.headers`` (as wsproto does) and offers
    # no public way to it, but connect hooks and the origin check need it.
    return latin1(str(request._event.host))


class _LazyScope(Mapping[str, Any]):
    """:func:`request_scope`, built only if something asks for more than
    the path or the client: a server holds one per open connection, and
    trio-websocket keeps the handshake's headers anyway."""

    __slots__ = ("_request", "_scope", "_secure", "_stream")

    def __init__(
        self, request: WebSocketRequest, secure: bool, stream: trio.abc.Stream | None
    ) -> None:
        self._request = request
        self._secure = secure
        self._stream = stream
        self._scope: dict[str, Any] | None = None

    def _client(self) -> tuple[str, int] | None:
        if self._stream is None:
            return _client(self._request)
        return stream_peer(self._stream)

    def _full(self) -> dict[str, Any]:
        if self._scope is None:
            self._scope = _scope(self._request, self._secure, self._client())
        return self._scope

    def __getitem__(self, key: str) -> Any:
        if self._scope is None:
            if key == "path":
                return self._request.path.partition("?")[0]
            if key == "client":
                return self._client()
            if key == "headers":
                return _HeaderView(self._request)
            if key == "subprotocols":
                return list(self._request.proposed_subprotocols)
        return self._full()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


class _HeaderView(Sequence[tuple[bytes, bytes]]):
    """The handshake's headers, Host first, without copying them."""

    __slots__ = ("_request",)

    def __init__(self, request: WebSocketRequest) -> None:
        self._request = request

    def __len__(self) -> int:
        return 1 + len(self._request.headers)

    @overload
    def __getitem__(self, index: int) -> tuple[bytes, bytes]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[bytes, bytes]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return [(b"host", _host(self._request)), *self._request.headers][index]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        yield (b"host", _host(self._request))
        yield from self._request.headers


def _client(request: WebSocketRequest) -> tuple[str, int] | None:
    try:
        remote = request.remote
    except OSError:  # ENOTCONN: the peer left before we asked who it was
        return None
    return None if isinstance(remote, str) else (str(remote.address), remote.port)


def stream_peer(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The address of the peer of a TCP (or TLS over TCP) stream."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return None
    try:
        address = stream.socket.getpeername()
    except OSError:  # ENOTCONN: the peer left before we asked who it was
        return None
    return (str(address[0]), address[1]) if isinstance(address, tuple) else None
