"""The ASGI transport: a WebSocket an ASGI server (Hypercorn) hands us."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import trio

from .._errors import TransportClosed
from .._request import Request
from .queued import QueuedTransport, stream_stalled
from .send_pool import SendPool

__all__ = ["ASGIHandshake", "ASGITransport", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _ASGISocket:
    __slots__ = ("_closed", "_receive", "_send", "_stream")

    # Hypercorn (the trio ASGI server) shields each write once it starts:
    # a cancelled send waited for its turn and wrote nothing.
    cancel_safe = True

    def stalled(self) -> bool:
        stream = self._stream
        if stream is False:  # not looked for yet: once per socket
            stream = self._stream = _server_stream(self._send)
        return stream_stalled(stream)

    _stream: trio.abc.Stream | Literal[False] | None

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._closed = False
        self._stream = False

    async def send(self, frame: str) -> None:
        if self._closed:
            raise TransportClosed
        try:
            await self._send({"type": "websocket.send", "text": frame})
        except OSError:  # Hypercorn reports a vanished peer as OSError
            self._closed = True
            raise TransportClosed from None

    async def receive(self) -> str | bytes:
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            return text if text is not None else message.get("bytes") or b""
        self._closed = True
        raise TransportClosed

    async def close(self, code: int = 1000) -> None:
        if self._closed:
            return
        self._closed = True
        closed = False
        try:
            with contextlib.suppress(OSError):
                await self._send({"type": "websocket.close", "code": code})
            closed = True
        finally:
            if not closed:
                # Cancelled: the close may wait behind a send that ignores
                # cancellation (Hypercorn shields them) for as long as the
                # client does not read. Close the server's socket under it.
                await _abort(self._send)


async def _abort(send: Send) -> None:
    """Close the socket under an ASGI ``send``, if it can be found.

    Hypercorn's trio worker offers no way to drop a connection whose
    client stopped reading: its sends ignore cancellation. Its ``send`` is
    a bound method whose owner sends through another bound method, down
    to the server that owns the trio stream; closing that stream wakes
    the stuck send with an error Hypercorn handles as a closed socket.
    """
    stream = _server_stream(send)
    if stream is not None:
        await trio.aclose_forcefully(stream)


def _server_stream(send: Send) -> trio.abc.Stream | None:
    """The server's stream under ``send`` (see :func:`_abort`), if found."""
    callable_: Any = send
    for _ in range(4):
        owner = getattr(callable_, "__self__", None)
        stream = getattr(owner, "stream", None)
        if isinstance(stream, trio.abc.Stream):
            return stream
        callable_ = getattr(owner, "send", None)
    return None


class ASGITransport(QueuedTransport):
    """An accepted ASGI WebSocket as a cable transport; with ``pool``, its
    backlog is written by that pool's task while the socket takes writes."""

    __slots__ = ()

    def __init__(
        self, receive: Receive, send: Send, pool: SendPool | None = None
    ) -> None:
        super().__init__(_ASGISocket(receive, send), pool)


class ASGIHandshake:
    """An ASGI WebSocket scope whose ``websocket.connect`` is not yet
    received, or not yet answered."""

    __slots__ = ("_pool", "_receive", "_scope", "_send")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        pool: SendPool | None = None,
    ) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._pool = pool

    async def request(self) -> Request | None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            return None  # gone before its handshake
        return Request(self._scope)

    async def refuse(self, status: int, reason: str) -> None:
        send = self._send
        if "websocket.http.response" in self._scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send(
                {"type": "websocket.http.response.body", "body": reason.encode()}
            )
        else:
            # Closing before accepting is an HTTP 403 by the ASGI spec.
            await send({"type": "websocket.close", "code": 1008})

    async def accept(self, subprotocol: str | None) -> ASGITransport:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        return ASGITransport(self._receive, self._send, self._pool)
