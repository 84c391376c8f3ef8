"""What a connection needs from a transport (ASGI, trio-websocket, memory)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["DirectWrites", "Transport", "TransportClosed"]


class TransportClosed(Exception):
    """The peer closed the socket (or it broke)."""


class Transport(Protocol):
    """One accepted WebSocket, seen as text frames in and out."""

    async def send(self, frame: str) -> None:
        """Send one text frame; raise :class:`TransportClosed` if gone."""

    async def receive(self) -> str | bytes:
        """Next frame from the peer; raise :class:`TransportClosed` at end."""

    async def close(self, code: int = 1000) -> None:
        """Close the socket; idempotent; bounded by the caller's deadline."""


class DirectWrites(Transport, Protocol):
    """A transport that can take a frame without waiting (the direct one).

    The connection hands it each frame as it is made; what the socket does
    not take at once waits in the transport, in order, until
    :meth:`flush` writes it.
    """

    @property
    def backlog_frames(self) -> int:
        """Frames (or parts of one) waiting for the socket."""

    def write_nowait(self, frame: str) -> int:
        """Write ``frame`` now, or as much as the socket takes, and queue the
        rest; return the bytes now waiting (0: all written). Raises
        :class:`TransportClosed` if the socket is gone."""

    async def flush(self) -> None:
        """Wait until everything queued is written."""

    def close_nowait(self, code: int = 1000) -> int:
        """Queue our close frame (if still open); return the bytes waiting."""

    async def aclose(self) -> None:
        """Close the socket now, without a close handshake."""

    def drop_backlog(self) -> None:
        """Forget queued frames (keeping the rest of one already half sent)."""
