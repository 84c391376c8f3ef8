"""The in-memory transport: a WebSocket made of two memory channels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .._errors import HandshakeRefused, TransportClosed
from .queued import QueuedTransport

if TYPE_CHECKING:
    from .._request import Request

__all__ = ["MemoryHandshake", "MemoryTransport"]


class _MemorySocket:
    __slots__ = ("_incoming", "_outgoing")

    cancel_safe = True  # a channel send either happens or not

    def stalled(self) -> bool:
        stats = self._outgoing.statistics()
        return stats.current_buffer_used >= stats.max_buffer_size

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[str],
        incoming: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming

    async def send(self, frame: str) -> None:
        try:
            await self._outgoing.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportClosed from None

    async def receive(self) -> str | bytes:
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise TransportClosed from None

    async def close(self, code: int = 1000) -> None:
        await self._outgoing.aclose()


class MemoryTransport(QueuedTransport):
    """The server's side of an in-memory WebSocket: frames to ``outgoing``,
    frames from ``incoming``."""

    __slots__ = ()

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[str],
        incoming: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        super().__init__(_MemorySocket(outgoing, incoming))


class MemoryHandshake:
    """An in-memory handshake: refusing it raises :class:`HandshakeRefused`
    in the client, as there is no HTTP response to read."""

    __slots__ = ("_incoming", "_outgoing", "_request")

    def __init__(
        self,
        request: Request,
        outgoing: trio.MemorySendChannel[str],
        incoming: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        self._request = request
        self._outgoing = outgoing
        self._incoming = incoming

    async def request(self) -> Request:
        return self._request

    async def refuse(self, status: int, reason: str) -> None:
        raise HandshakeRefused(status, reason)

    async def accept(self, subprotocol: str | None) -> MemoryTransport:
        return MemoryTransport(self._outgoing, self._incoming)
