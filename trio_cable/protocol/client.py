"""The client side of ``actioncable-v1-json``, sans I/O.

:class:`ClientProtocol` encodes the client's commands and turns the
server's frames into typed events, and keeps the state of every
subscription (pending, confirmed, rejected) across connections. It never
touches a socket or a clock: the driver (:mod:`trio_cable.client`) feeds
it frames and the current time, and sends the frames it hands back.

The identifier is an opaque string: it is sent as built once by
:func:`make_identifier` and frames are matched to subscriptions by
comparing that string, never by re-serialising it.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .codec import PROTOCOL, Ref, encode_payload

__all__ = [
    "OFFERED_SUBPROTOCOLS",
    "ClientProtocol",
    "Confirmed",
    "DisconnectRequested",
    "ErrorReported",
    "InvalidFrame",
    "Ping",
    "Received",
    "Rejected",
    "Replied",
    "ServerEvent",
    "Status",
    "SubscriptionState",
    "Welcome",
    "encode_message_command",
    "encode_subscribe",
    "encode_unsubscribe",
    "make_identifier",
]

#: What the client offers, as the official client does; anything but
#: :data:`~trio_cable.protocol.codec.PROTOCOL` selected means "not Action Cable".
OFFERED_SUBPROTOCOLS: Final = (PROTOCOL, "actioncable-unsupported")


def make_identifier(channel: str, params: Mapping[str, Any]) -> str:
    """The identifier string the official client sends: ``channel`` first,
    then the params in order, compact JSON."""
    return encode_payload({"channel": channel, **params})


# -- client frames ------------------------------------------------------------


def encode_subscribe(identifier: str) -> str:
    return f'{{"command":"subscribe","identifier":{encode_payload(identifier)}}}'


def encode_unsubscribe(identifier: str) -> str:
    return f'{{"command":"unsubscribe","identifier":{encode_payload(identifier)}}}'


def encode_message_command(
    identifier: str, data: Mapping[str, Any], ref: Ref | None = None
) -> str:
    """``data`` travels as a JSON *string* inside the frame, as Rails
    expects; ``ref`` asks trio_cable for the action's reply, tagged with
    it (a server that does not know ``ref`` ignores it)."""
    tag = "" if ref is None else f',"ref":{encode_payload(ref)}'
    return (
        f'{{"command":"message","identifier":{encode_payload(identifier)},'
        f'"data":{encode_payload(encode_payload(data))}{tag}}}'
    )


def encode_presence_command(
    identifier: str, command: str, presence: Mapping[str, Any] | None = None
) -> str:
    """AnyCable's ``join`` (with ``presence``: id and info), ``leave`` or
    ``presence`` (the member list) command (see :mod:`.presence`)."""
    body = "" if presence is None else f',"presence":{encode_payload(presence)}'
    return (
        f'{{"command":{encode_payload(command)},'
        f'"identifier":{encode_payload(identifier)}{body}}}'
    )


# -- server events -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """``{"type":"welcome"}``: the connection is open; every subscription
    is pending again and due to be sent."""


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
    | DisconnectRequested
    | ErrorReported
    | InvalidFrame
)


# -- subscription states -----------------------------------------------------


class Status(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


@dataclass(eq=False, slots=True)
class SubscriptionState:
    """The protocol state of one identifier. The same object stays valid
    for the driver after the subscription is rejected or removed, so a new
    subscription with that identifier never mixes with an old one."""

    identifier: str
    status: Status = Status.PENDING
    #: Confirmed on some connection before (the next confirm is a resubscribe).
    ever_confirmed: bool = False
    #: When ``subscribe`` was last sent on this connection (-inf: not yet).
    last_sent: float = -math.inf

    @property
    def confirmed(self) -> bool:
        return self.status is Status.CONFIRMED

    @property
    def waiting(self) -> bool:
        """Still to be answered: ``subscribe`` is (re)sent while it is."""
        return self.status is Status.PENDING


class ClientProtocol:
    """Subscriptions of one client, over any number of connections.

    Frames in (:meth:`receive_frame`), events out; commands out as frames
    (:meth:`subscribes_due`, :meth:`remove`, :meth:`encode_message`).
    ``subscribe_retry`` is how often an unanswered ``subscribe`` is sent
    again, like the official client's SubscriptionGuarantor (a Rails
    server may miss one).
    """

    def __init__(self, *, subscribe_retry: float = 0.5) -> None:
        self.subscribe_retry = subscribe_retry
        self._states: dict[str, SubscriptionState] = {}

    @staticmethod
    def accepts(subprotocol: str | None) -> bool:
        """Whether the server's selected subprotocol is Action Cable's."""
        return subprotocol == PROTOCOL

    # -- subscriptions ---------------------------------------------------------

    def get(self, identifier: str) -> SubscriptionState | None:
        """The live state of ``identifier``, if it is subscribed."""
        return self._states.get(identifier)

    def add(self, identifier: str) -> SubscriptionState:
        """Start tracking ``identifier`` (pending; sent by
        :meth:`subscribes_due`). Adding one already tracked returns it."""
        state = self._states.get(identifier)
        if state is None:
            state = self._states[identifier] = SubscriptionState(identifier)
        return state

    def remove(self, state: SubscriptionState) -> str | None:
        """Stop tracking ``state``; the ``unsubscribe`` frame to send, when
        the server may hold the subscription (sent on this connection and
        not rejected)."""
        if self._states.get(state.identifier) is not state:
            return None
        del self._states[state.identifier]
        if state.status is Status.REJECTED or state.last_sent == -math.inf:
            return None
        return encode_unsubscribe(state.identifier)

    def subscribes_due(self, now: float) -> list[str]:
        """The ``subscribe`` frames to send at ``now``: every unanswered
        subscription not sent within ``subscribe_retry``."""
        frames = []
        for state in self._states.values():
            if state.waiting and now - state.last_sent >= self.subscribe_retry:
                state.last_sent = now
                frames.append(encode_subscribe(state.identifier))
        return frames

    def next_due(self) -> float | None:
        """When :meth:`subscribes_due` will next have a frame (``None``:
        not before a subscription is added or a connection opens)."""
        waiting = [s.last_sent for s in self._states.values() if s.waiting]
        return min(waiting) + self.subscribe_retry if waiting else None

    def encode_message(
        self,
        state: SubscriptionState,
        data: Mapping[str, Any],
        ref: Ref | None = None,
    ) -> str:
        return encode_message_command(state.identifier, data, ref)

    # -- connections -------------------------------------------------------------

    def connection_lost(self) -> list[SubscriptionState]:
        """Every subscription is pending again; returns those that were
        confirmed (their consumers should hear of the loss)."""
        lost = [s for s in self._states.values() if s.confirmed]
        for state in lost:
            state.status = Status.PENDING
        return lost

    # -- server frames -------------------------------------------------------------

    def receive_frame(self, text: str | bytes) -> ServerEvent | None:
        """The event one server frame means, or ``None`` when it means
        nothing to this client (a duplicate confirm, another client's
        identifier, an unknown frame)."""
        try:
            frame = json.loads(text)
        except ValueError:
            return InvalidFrame(text)
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if kind == "welcome":
            return self._welcome()
        if kind == "ping":
            return Ping()
        if kind == "disconnect":
            return DisconnectRequested(
                str(frame.get("reason") or "unknown"), frame.get("reconnect") is True
            )
        if kind == "error":
            about = self._states.get(str(frame.get("about", "")))
            return ErrorReported(
                str(frame.get("reason")),
                str(frame.get("message", "")),
                None if about is None else about.identifier,
            )
        identifier = frame.get("identifier")
        state = self._states.get(identifier) if isinstance(identifier, str) else None
        if state is None:
            return None
        if kind == "confirm_subscription":
            return self._confirm(state)
        if kind == "reject_subscription":
            return self._reject(state, frame.get("reason"), frame.get("message"))
        if kind == "reply":
            return _reply(state, frame)
        if kind == "presence":
            # AnyCable's presence frame (extended protocol) in the shape
            # plain Action Cable carries it, so there is one to handle.
            return Received(state.identifier, {"presence": frame.get("message")})
        if "message" in frame:  # data frames, and extensions' frames
            return Received(state.identifier, frame["message"])
        return None

    def _welcome(self) -> Welcome:
        for state in self._states.values():
            state.last_sent = -math.inf  # a new connection: send them all now
        return Welcome()

    def _reject(
        self, state: SubscriptionState, reason: Any, message: Any = None
    ) -> Rejected:
        state.status = Status.REJECTED
        del self._states[state.identifier]
        return Rejected(
            state.identifier,
            reason if isinstance(reason, str) else None,
            message if isinstance(message, str) else None,
        )

    def _confirm(self, state: SubscriptionState) -> Confirmed | None:
        if state.confirmed:
            return None
        state.status = Status.CONFIRMED
        event = Confirmed(state.identifier, reconnected=state.ever_confirmed)
        state.ever_confirmed = True
        return event


def _reply(state: SubscriptionState, frame: dict[str, Any]) -> Replied | None:
    ref = frame.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        return None  # not a reply to any call of ours
    error = frame.get("error")
    if error is None:
        return Replied(state.identifier, ref, frame.get("result"))
    if not isinstance(error, dict):
        error = {}
    return Replied(
        state.identifier,
        ref,
        error=(str(error.get("reason", "error")), str(error.get("message", ""))),
    )
