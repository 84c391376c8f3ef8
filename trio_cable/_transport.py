"""What a connection needs from a transport (ASGI, trio-websocket, memory)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Transport", "TransportClosed"]


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
