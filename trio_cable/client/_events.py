"""What a subscription's consumer sees besides its data: the events of
:meth:`~trio_cable.client.Subscription.events`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ClientEvent",
    "Connected",
    "Disconnected",
    "HistoryLost",
    "Message",
    "PresenceChanged",
    "Recovered",
    "ServerError",
]


@dataclass(frozen=True, slots=True)
class Message:
    """Data the server sent to the subscription (transmit or broadcast)."""

    data: Any


@dataclass(frozen=True, slots=True)
class Connected:
    """The subscription is confirmed; ``reconnected`` after a reconnect.
    ``restored``: the server resumed the client's session (extended
    protocol), so the subscription was never subscribed again (the
    channel's ``subscribed()`` did not run again)."""

    reconnected: bool
    restored: bool = False


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; ``reconnecting`` says whether the client
    will reconnect and subscribe again."""

    reason: str
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error frame about this subscription (trio_cable's extension: e.g.
    ``unknown_action`` after a bad :meth:`Subscription.perform`)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """After a reconnect (extended protocol), every message the
    subscription missed on its streams with history has been received
    (before this event), in order and once; live messages follow."""


@dataclass(frozen=True, slots=True)
class HistoryLost:
    """After a reconnect (extended protocol), the server could not replay
    what the subscription missed (its history expired, or the server
    restarted without keeping it): messages were lost, so load the current
    state another way. Live messages go on."""


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A member joined (``type`` ``"join"``, with its ``info``) or left
    (``"leave"``) the subscription's presence stream (see docs/presence.md)."""

    type: str
    id: str
    info: Any = None


ClientEvent = (
    Message
    | Connected
    | Disconnected
    | ServerError
    | Recovered
    | HistoryLost
    | PresenceChanged
)
