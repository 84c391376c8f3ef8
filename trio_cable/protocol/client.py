"""The client side of ``actioncable-v1-json`` (and of AnyCable's
``actioncable-v1-ext-json``, through :mod:`.client_ext`), sans I/O.

:class:`ClientProtocol` encodes the client's commands and turns the
server's frames into typed events, and keeps the state of every
subscription (pending, confirmed, rejected) across connections. It never
touches a socket or a clock: the driver (:mod:`trio_cable.client`) feeds
it frames and the current time, and sends the frames it hands back.

With the extended protocol it also keeps the session id, the position of
every broadcast received (dropping one received before) and asks for
what was missed after a reconnect: in ``subscribe``, or, for a restored
session, with ``history`` commands.

The identifier is an opaque string: it is sent as built once by
:func:`make_identifier` and frames are matched to subscriptions by
comparing that string, never by re-serialising it.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .client_events import (
    Confirmed,
    DisconnectRequested,
    ErrorReported,
    HistoryConfirmed,
    HistoryRejected,
    InvalidFrame,
    Ping,
    Received,
    Rejected,
    Replied,
    ServerEvent,
    Welcome,
)
from .client_ext import (
    EXT_OFFER,
    PLAIN_OFFER,
    PONG_COMMAND,
    Positions,
    encode_history_command,
    encode_subscribe_with_history,
    encode_whisper,
    history_request,
)
from .codec import PROTOCOL, Ref, encode_payload
from .ext import EXT_PROTOCOL

__all__ = [
    "OFFERED_SUBPROTOCOLS",
    "ClientProtocol",
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
    "Status",
    "SubscriptionState",
    "Welcome",
    "encode_message_command",
    "encode_subscribe",
    "encode_unsubscribe",
    "make_identifier",
]

#: What a plain client offers, as the official client does; anything but
#: :data:`~trio_cable.protocol.codec.PROTOCOL` (or, offered by an extended
#: client, ``actioncable-v1-ext-json``) selected means "not Action Cable".
OFFERED_SUBPROTOCOLS: Final = PLAIN_OFFER


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
    #: The last broadcast received of each stream (extended protocol).
    positions: Positions = field(default_factory=Positions)

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
    (:meth:`subscribes_due`, :meth:`remove`, :meth:`encode_message`, and
    :meth:`take_outgoing` for the answers a frame calls for: ``pong``,
    ``history``). ``subscribe_retry`` is how often an unanswered
    ``subscribe`` is sent again, like the official client's
    SubscriptionGuarantor (a Rails server may miss one). ``extended``
    offers ``actioncable-v1-ext-json`` first (:attr:`offered`).
    """

    def __init__(self, *, subscribe_retry: float = 0.5, extended: bool = True) -> None:
        self.subscribe_retry = subscribe_retry
        self.extended = extended
        #: Whether the current (or last) connection speaks the extended protocol.
        self.ext = False
        #: The session id of the last welcome (extended protocol), to resume.
        self.sid: str | None = None
        #: Since when (UNIX seconds, the server's clock: its last ping)
        #: streams without a known position are asked for after a reconnect.
        self.since: int | None = None
        self._states: dict[str, SubscriptionState] = {}
        self._outgoing: list[str] = []

    @property
    def offered(self) -> tuple[str, ...]:
        """The subprotocols to offer, best first."""
        return EXT_OFFER if self.extended else PLAIN_OFFER

    @staticmethod
    def accepts(subprotocol: str | None) -> bool:
        """Whether the server's selected subprotocol is Action Cable's."""
        return subprotocol in (PROTOCOL, EXT_PROTOCOL)

    def opened(self, subprotocol: str | None) -> bool:
        """A connection opened with ``subprotocol`` selected; False if it is
        not one this client offered."""
        if subprotocol not in self.offered or not self.accepts(subprotocol):
            return False
        self.ext = subprotocol == EXT_PROTOCOL
        self._outgoing.clear()
        return True

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
        subscription not sent within ``subscribe_retry``. One confirmed
        before, on an extended connection, asks for what it missed."""
        frames = []
        for state in self._states.values():
            if state.waiting and now - state.last_sent >= self.subscribe_retry:
                state.last_sent = now
                frames.append(self._subscribe_frame(state))
        return frames

    def _subscribe_frame(self, state: SubscriptionState) -> str:
        if not (self.ext and state.ever_confirmed):
            return encode_subscribe(state.identifier)
        history = history_request(state.positions, self.since)
        return encode_subscribe_with_history(state.identifier, history)

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

    def encode_whisper(self, state: SubscriptionState, data: Any) -> str | None:
        """The ``whisper`` frame; None when the connection is not extended."""
        return encode_whisper(state.identifier, data) if self.ext else None

    def take_outgoing(self) -> list[str]:
        """Frames the last server frames call for, to send now, in order."""
        frames, self._outgoing = self._outgoing, []
        return frames

    # -- connections -------------------------------------------------------------

    def connection_lost(self) -> list[SubscriptionState]:
        """Every subscription is pending again; returns those that were
        confirmed (their consumers should hear of the loss)."""
        self._outgoing.clear()
        lost = [s for s in self._states.values() if s.confirmed]
        for state in lost:
            state.status = Status.PENDING
        return lost

    # -- server frames -------------------------------------------------------------

    def receive_frame(
        self, text: str | bytes, wall: float | None = None
    ) -> ServerEvent | None:
        """The event one server frame means, or ``None`` when it means
        nothing to this client (a duplicate confirm or broadcast, another
        client's identifier, an unknown frame). ``wall`` is the client's
        clock (UNIX seconds): until the server's first ping, ``history``
        is asked for since the welcome by it."""
        try:
            frame = json.loads(text)
        except ValueError:
            return InvalidFrame(text)
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if kind == "welcome":
            return self._welcome(frame, wall)
        if kind == "ping":
            return self._ping(frame.get("message"))
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
        if kind == "confirm_history":
            return HistoryConfirmed(state.identifier)
        if kind == "reject_history":
            return HistoryRejected(state.identifier)
        if kind == "presence":
            # AnyCable's presence frame (extended protocol) in the shape
            # plain Action Cable carries it, so there is one to handle.
            return Received(state.identifier, {"presence": frame.get("message")})
        if "message" in frame:  # data frames, and extensions' frames
            if not state.positions.accept(frame):
                return None  # received before: a replay's overlap
            return Received(state.identifier, frame["message"])
        return None

    def _ping(self, stamp: Any) -> Ping:
        if self.ext:
            self._outgoing.append(PONG_COMMAND)
            if isinstance(stamp, int | float) and not isinstance(stamp, bool):
                self.since = int(stamp)
        return Ping()

    def _welcome(self, frame: dict[str, Any], wall: float | None) -> Welcome:
        sid = frame.get("sid") if self.ext else None
        self.sid = sid if isinstance(sid, str) and sid else None
        if self.since is None and wall is not None:
            self.since = int(wall)
        restored: list[str] = []
        if self.ext and frame.get("restored") is True:
            ids = frame.get("restored_ids")
            named = set(ids) if isinstance(ids, list) else set(self._states)
            restored = [i for i in self._states if i in named]
            for identifier in named - set(restored):  # left while away
                if isinstance(identifier, str):
                    self._outgoing.append(encode_unsubscribe(identifier))
        for state in self._states.values():
            state.last_sent = -math.inf  # a new connection: send them all now
        for identifier in restored:
            state = self._states[identifier]
            # The server holds it again: no subscribe; unsubscribe when left.
            state.status, state.last_sent = Status.CONFIRMED, 0.0
            state.ever_confirmed = True  # (its confirm may have been lost)
            history = history_request(state.positions, self.since)
            self._outgoing.append(encode_history_command(identifier, history))
        return Welcome(self.sid, tuple(restored))

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
