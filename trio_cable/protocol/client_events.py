"""The events :class:`~trio_cable.protocol.client.ClientProtocol` turns
the server's frames into (sans I/O): one frozen record per kind of frame,
and :data:`ServerEvent`, their union."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import Ref

__all__ = [
    "Confirmed",
    "DisconnectRequested",
    "ErrorReported",
    "HistoryConfirmed",
    "HistoryRejected",
    "InvalidFrame",
    "Ping",
    "Received",
    "Rejected",
    "Replied",
    "ServerEvent",
    "Welcome",
]


@dataclass(frozen=True, slots=True)
class Welcome:
    """``{"type":"welcome"}``: the connection is open; every subscription
    is pending again and due to be sent, except those of a restored
    session (extended protocol): ``restored`` names them, confirmed again
    with no frame, their ``history`` commands queued."""

    sid: str | None = None
    restored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type":"ping"}``: the server is alive (any frame says so)."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The server confirmed ``identifier``; ``reconnected`` when it had
    confirmed it before, on an earlier connection. A second confirmation on
    the same connection produces no event."""

    identifier: str
    reconnected: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server rejected ``identifier`` (``reason``: trio_cable says
    why). The subscription is forgotten."""

    identifier: str
    reason: str | None
    #: What went wrong, for people (trio_cable: "no channel ... (did you
    #: mean ...?)").
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """Data for ``identifier``: a transmit, a broadcast, or a frame of a
    protocol extension (anything with a ``message`` and no known type)."""

    identifier: str
    message: Any


@dataclass(frozen=True, slots=True)
class Replied:
    """The answer to the call tagged ``ref`` on ``identifier``: its
    ``result``, or, when ``error`` is set, why it failed (``reason``,
    ``message``)."""

    identifier: str
    ref: Ref
    result: Any = None
    error: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HistoryConfirmed:
    """``confirm_history``: everything ``identifier`` missed (of its
    streams with history) has been received."""

    identifier: str


@dataclass(frozen=True, slots=True)
class HistoryRejected:
    """``reject_history``: what ``identifier`` missed cannot be replayed
    (history expired, or another epoch); live messages go on."""

    identifier: str


@dataclass(frozen=True, slots=True)
class DisconnectRequested:
    """``{"type":"disconnect"}``. A missing ``reconnect`` means false, as
    in the official client."""

    reason: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class ErrorReported:
    """trio_cable's error frame; ``identifier`` is the subscription it is
    about when that is one of ours, else ``None``."""

    reason: str
    message: str
    identifier: str | None


@dataclass(frozen=True, slots=True)
class InvalidFrame:
    """A frame that is not JSON (ignored, worth a log line)."""

    text: str | bytes


ServerEvent = (
    Welcome
    | Ping
    | Confirmed
    | Rejected
    | Received
    | Replied
    | HistoryConfirmed
    | HistoryRejected
    | DisconnectRequested
    | ErrorReported
    | InvalidFrame
)
