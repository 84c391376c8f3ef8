"""The exception family of trio_cable: one base, small families."""

from __future__ import annotations

__all__ = [
    "ActionError",
    "ActionFailed",
    "CableError",
    "CallTimeout",
    "ClientError",
    "ConnectionDenied",
    "ConnectionLost",
    "ConnectionRejected",
    "ConnectionUnauthorized",
    "HandshakeRefused",
    "InvalidSignature",
    "InvalidToken",
    "ProtocolError",
    "ServerUnreachable",
    "SessionNotPortable",
    "SubscriptionOverflow",
    "SubscriptionRejected",
    "SubscriptionTimeout",
    "TokenExpired",
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


class ActionError(CableError):
    """Raise it in an action to refuse the request with a reason of yours.

    A caller that asked for the action's reply (``subscription.call()``)
    gets ``reason`` and ``message`` back, tagged to its call; otherwise
    they go out as an error frame about the subscription. Either way it is
    logged as an answer, not as a crash. ``reason`` is a short code
    (``invalid``, ``not_found``...), ``message`` is for people.
    """

    def __init__(self, reason: str, message: str = ""):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


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


class SessionNotPortable(CableError):
    """A dropped connection's session cannot be written to Redis (an
    identity, ``session_state`` attribute or callback that cannot cross
    processes): it is kept in this process instead, and logged."""


class HandshakeRefused(CableError):
    """The server refused the WebSocket handshake with an HTTP status
    (403: origin not allowed, 503: too many connections)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


# -- the client's (re-exported by trio_cable.client) ----------------------------


class ClientError(CableError):
    """Base class of the errors the client raises."""


class ServerUnreachable(ClientError):
    """No connection could be made (refused, timed out, a 5xx answer), on
    the first attempt or, when reconnecting, for longer than
    ``give_up_after``."""


class ConnectionDenied(ClientError):
    """The server refused this client and asked it not to come back: a
    ``disconnect`` frame with ``reconnect: false``, an HTTP 4xx answer to
    the handshake, or no Action Cable subprotocol selected.

    ``reason`` is the frame's reason (or ``http_<status>``); ``status`` the
    HTTP status when the handshake was refused.
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class ConnectionUnauthorized(ConnectionDenied):
    """The server refused the connection as ``unauthorized`` (a connect hook
    raised :class:`trio_cable.Unauthorized`, Rails'
    ``reject_unauthorized_connection``) or answered HTTP 401/403."""


class ConnectionLost(ClientError):
    """The connection dropped and the client was told not to reconnect
    (``reconnect=False``), or it dropped while a call waited for its
    reply. ``reason`` says why (``server_restart``, ``stale``,
    ``closed``...)."""

    def __init__(self, reason: str):
        super().__init__(f"connection lost: {reason}")
        self.reason = reason


class SubscriptionRejected(ClientError):
    """The server answered ``reject_subscription``. ``reason`` is the frame's
    reason when the server gives one (trio_cable: ``unknown_channel``), and
    ``message`` its explanation (trio_cable: the channels that exist)."""

    def __init__(
        self, identifier: str, reason: str | None = None, message: str | None = None
    ):
        detail = f" ({reason})" if reason else ""
        explained = f": {message}" if message else ""
        super().__init__(f"subscription rejected{detail}: {identifier}{explained}")
        self.identifier = identifier
        self.reason = reason
        self.message = message


class ActionFailed(ClientError):
    """The server answered a call with an error: the action raised
    (``reason`` ``server_error``, or the ``reason`` of its
    :class:`ActionError`), or refused it (``unknown_action``,
    ``not_subscribed``...)."""

    def __init__(self, action: str, reason: str, message: str):
        super().__init__(f"{action!r} failed: {reason}: {message}")
        self.action = action
        self.reason = reason
        self.message = message


class CallTimeout(ClientError):
    """No reply to a call within its timeout (the action may still run)."""

    def __init__(self, identifier: str, action: str, timeout: float):
        super().__init__(f"no reply to {action!r} within {timeout:g}s: {identifier}")
        self.identifier = identifier
        self.action = action
        self.timeout = timeout


class SubscriptionTimeout(ClientError):
    """No confirmation or rejection within ``subscribe_timeout``. Rails
    stays silent on unknown channels, so this is how those end."""

    def __init__(self, identifier: str, timeout: float):
        super().__init__(f"no answer to subscribe within {timeout:g}s: {identifier}")
        self.identifier = identifier


class SubscriptionOverflow(ClientError):
    """With ``overflow="error"``: the consumer fell behind and ``dropped``
    messages were discarded. Raised once; the subscription goes on."""

    def __init__(self, identifier: str, dropped: int):
        super().__init__(f"{dropped} message(s) dropped: {identifier}")
        self.identifier = identifier
        self.dropped = dropped


class InvalidToken(CableError):
    """A signed token or cookie was refused. ``reason`` is the disconnect
    reason a connect hook refuses the connection with.

    Messages never quote the token: tokens are secrets.
    """

    reason: str = "unauthorized"


class InvalidSignature(InvalidToken):
    """Not a message these keys signed for this purpose: forged, tampered,
    truncated, garbage, or signed for another purpose."""


class TokenExpired(InvalidToken):
    """A genuine message whose expiry has passed."""

    reason = "token_expired"
