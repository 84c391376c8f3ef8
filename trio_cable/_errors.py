"""The exception family of trio_cable: one base, small families."""

from __future__ import annotations

__all__ = [
    "CableError",
    "ConnectionRejected",
    "HandshakeRefused",
    "ProtocolError",
    "TransportClosed",
    "Unauthorized",
]


class CableError(Exception):
    """Base class of every error trio_cable raises."""


class TransportClosed(CableError):
    """The peer closed the socket (or it broke); every transport maps its
    socket's errors to this one."""


class ProtocolError(CableError):
    """A client frame broke the protocol.

    ``reason`` is one of the wire reasons (``invalid_json``,
    ``unknown_command``, ``invalid_request``, ``not_subscribed``,
    ``invalid_action``, ``unknown_action``); ``identifier`` is the
    subscription the frame named, when it named one.
    """

    def __init__(self, reason: str, message: str, identifier: str | None = None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.identifier = identifier


class ConnectionRejected(CableError):
    """Raised by a connect hook to refuse a connection.

    The client is sent ``{"type":"disconnect","reason":reason,...}`` and the
    socket is closed.
    """

    reason: str = "unauthorized"
    reconnect: bool = False

    def __init__(
        self,
        message: str = "connection rejected",
        *,
        reason: str | None = None,
        reconnect: bool | None = None,
    ):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if reconnect is not None:
            self.reconnect = reconnect


class Unauthorized(ConnectionRejected):
    """Refuse a connection as ``unauthorized`` (the client won't reconnect)."""


class HandshakeRefused(CableError):
    """The server refused the WebSocket handshake with an HTTP status
    (403: origin not allowed, 503: too many connections)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
