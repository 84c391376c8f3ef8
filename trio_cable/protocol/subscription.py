"""The protocol's record of one subscription, sans-I/O.

A :class:`ServerSubscription` is what :class:`~.server.ServerProtocol`
keeps per subscription: its state (pending, confirmed, rejected,
leaving), the frames held while ``subscribed()`` runs or history is
read, the queued commands, and the broadcast hot path (:meth:`deliver`).
It is also the hub's subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .codec import DEFAULT_LIMITS, Limits, Message, Ref
from .dialects import Dialect
from .ext import History, Position, StreamPosition
from .presence import PresenceCommand, presence_frame

__all__ = [
    "CONFIRMED",
    "LEAVING",
    "PENDING",
    "REJECTED",
    "ChannelRules",
    "ProtocolSettings",
    "Queued",
    "ServerSubscription",
    "SubscriptionOwner",
]

log = logging.getLogger("trio_cable.connection")

#: Subscription states. Pending: ``subscribed()`` runs. Confirmed: frames
#: flow. Rejected, leaving: nothing more is sent for it.
PENDING: Final = "pending"
CONFIRMED: Final = "confirmed"
REJECTED: Final = "rejected"
LEAVING: Final = "leaving"

#: What waits in a subscription's queue: actions, history requests and
#: presence commands, in arrival order.
Queued = Message | History | PresenceCommand


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """The limits one connection's protocol enforces (see ``Cable``)."""

    max_frame_bytes: int = 64 * 1024
    limits: Limits = DEFAULT_LIMITS
    max_subscriptions: int = 256
    max_pending_commands: int = 64
    commands_per_second: float = 50.0
    command_burst: int = 100


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """What the protocol needs to know of a channel class: its name, its
    actions, and the public names that are never actions."""

    name: str
    actions: Collection[str]
    reserved: Collection[str]
    #: What the resolver wants back with the subscription (the channel
    #: class); the protocol never looks at it.
    source: object = None


class SubscriptionOwner(Protocol):
    """What a subscription needs of its connection's protocol."""

    @property
    def id(self) -> str: ...
    @property
    def dialect(self) -> Dialect: ...
    @property
    def settings(self) -> ProtocolSettings: ...
    def send(self, frame: str) -> None: ...
    def forget(self, sub: ServerSubscription) -> None: ...
    def refuse(
        self, command: Message, reason: str, message: str, *, logged: bool = False
    ) -> None: ...


class ServerSubscription:
    """The protocol's record of one subscription (and the hub's subscriber).

    :meth:`deliver` is the broadcast hot path: one dict lookup shares a
    frame between every subscriber of one identifier, and the frame goes
    straight to ``send``.
    """

    __slots__ = (
        "_early",
        "_held",
        "_inbox",
        "_marks",
        "_protocol",
        "_send",
        "channel",
        "identifier",
        "owner",
        "prefix",
        "rules",
        "state",
    )

    def __init__(
        self, protocol: SubscriptionOwner, identifier: str, rules: ChannelRules
    ) -> None:
        self._protocol = protocol
        self._send = protocol.send
        self.identifier = identifier
        self.channel = rules.name
        self.rules = rules
        self.prefix = protocol.dialect.message_prefix(identifier)
        self.state: str = PENDING
        #: The channel layer's object for this subscription (its runner).
        self.owner: Any = None
        self._held: list[str] | None = []
        self._early: list[tuple[str, Position | None]] | None = []
        # Made with the first queued command: most subscriptions never
        # have one waiting, and a list per subscription adds up.
        self._inbox: list[Queued] | None = None
        # After a replay: the last position the client has of each stream
        # (see history()); None until then, and for most subscriptions.
        self._marks: dict[str, Position | StreamPosition] | None = None

    def __repr__(self) -> str:
        return f"<ServerSubscription {self.identifier} {self.state}>"

    @property
    def closed(self) -> bool:
        """Rejected or leaving: no more streams nor frames."""
        return self.state is REJECTED or self.state is LEAVING

    @property
    def pending_commands(self) -> int:
        return len(self._inbox or ())

    def deliver(
        self, payload: str, frames: dict[str, str], position: Position | None = None
    ) -> None:
        """A broadcast's encoded ``payload`` (and its ``position`` in its
        stream's history, if it has one); ``frames`` caches the frames
        built for this broadcast, by identifier."""
        early = self._early
        if early is not None:
            # A broadcast while subscribed() runs, or while history is
            # read: after the confirmation, or after the history.
            if not self.closed:
                early.append((payload, position))
            return
        if self.state is not CONFIRMED:
            return
        if self._marks is not None and position is not None and self._had(position):
            return
        # Keyed by the frame's head, not the identifier: two dialects may
        # share an identifier but never a head.
        prefix = self.prefix
        frame = frames.get(prefix)
        if frame is None:
            tail = "}" if position is None else position.tail
            frame = frames[prefix] = prefix + payload + tail
        self._send(frame)

    def transmit(self, payload: str) -> None:
        """Data for this subscription only (held until it is confirmed)."""
        if self._held is not None:
            self._held.append(payload)
        elif self.state is CONFIRMED:
            self._send(self.prefix + payload + "}")

    def presence(self, event: str) -> None:
        """A presence event or member list (encoded) for this subscription,
        in its dialect's shape; nothing unless it is confirmed."""
        if self.state is CONFIRMED:
            dialect = self._protocol.dialect
            self._send(
                presence_frame(dialect.extended, self.prefix, self.identifier, event)
            )

    def reply(self, ref: Ref, result: str) -> None:
        """The answer to the call tagged ``ref`` (``result``: encoded JSON),
        after whatever the action transmitted; nothing once it is closed."""
        if self.state is CONFIRMED:
            self._send(self._protocol.dialect.reply(self.identifier, ref, result))

    def reply_error(self, ref: Ref, reason: str, message: str) -> None:
        """The call tagged ``ref`` failed (its action raised, or refused)."""
        if self.state is CONFIRMED:
            protocol = self._protocol
            log.info("conn %s: %s: %s", protocol.id, reason, message)
            frame = protocol.dialect.reply_error(self.identifier, ref, reason, message)
            self._send(frame)

    def confirm(self, *, hold: bool = False) -> None:
        """``subscribed()`` accepted it and its streams are live: what it
        transmitted, the confirmation, then the broadcasts that came early
        (unless it was left meanwhile). With ``hold``, broadcasts keep
        waiting until :meth:`history` has replayed what the client missed."""
        held, self._held = self._held or [], None
        early = self._early or []
        self._early = None
        if self.state is not PENDING:
            return
        self.state = CONFIRMED
        send, prefix = self._send, self.prefix
        for payload in held:
            send(prefix + payload + "}")
        send(self._protocol.dialect.confirm(self.identifier))
        if hold:
            self._early = early
            return
        for payload, position in early:
            send(prefix + payload + ("}" if position is None else position.tail))

    def resume(self) -> None:
        """A subscription of a restored session: confirmed already (the
        client is told in ``welcome``), broadcasts held back until the
        client's ``history`` request, or :meth:`release`."""
        self.state = CONFIRMED
        self._held = None
        self._early = []

    def release(self) -> None:
        """Send the broadcasts held back by :meth:`resume`, with no history."""
        held, self._early = self._early or [], None
        if self.state is CONFIRMED:
            send, prefix = self._send, self.prefix
            for payload, position in held:
                send(prefix + payload + ("}" if position is None else position.tail))

    def hold(self) -> None:
        """Keep broadcasts back while history is read (see :meth:`history`)."""
        if self.state is CONFIRMED and self._early is None:
            self._early = []

    def history(
        self,
        replay: list[tuple[str, Position]] | None,
        had: dict[str, StreamPosition] | None = None,
    ) -> None:
        """Answer a history request: the missed broadcasts ``replay`` (in
        order) and ``confirm_history``, or, for None (history gone),
        ``reject_history``; then the broadcasts held back meanwhile.

        No gap and no duplicate at the hand-off from history to live: a
        broadcast the client has already (one the replay carried, or one
        at or before the position ``had`` says the client has) is dropped,
        held back or still to come: with the history kept in Redis, this
        process may be handed one after the replay read it."""
        held = self._early or []
        self._early = None
        if self.state is not CONFIRMED:
            return
        send, prefix = self._send, self.prefix
        dialect = self._protocol.dialect
        marks: dict[str, Position | StreamPosition] = {}
        if replay is None:  # the client's positions are no good here
            send(dialect.history_result(self.identifier, ok=False))
        else:
            marks.update(had or {})
            for payload, spot in replay:
                send(prefix + payload + spot.tail)
                marks[spot.stream] = spot
            send(dialect.history_result(self.identifier, ok=True))
        self._marks = marks or None
        for payload, position in held:
            if position is None or not self._had(position):
                send(prefix + payload + ("}" if position is None else position.tail))

    def _had(self, position: Position) -> bool:
        """Whether the client has ``position`` already (see :meth:`history`)."""
        marks = self._marks
        mark = None if marks is None else marks.get(position.stream)
        return (
            mark is not None
            and mark.epoch == position.epoch
            and position.offset <= mark.offset
        )

    def reject(self, reason: str | None = None, message: str | None = None) -> None:
        """``subscribed()`` refused it (``reason``, ``message``: why, for the
        frame and the one log line): forget it, say so, and answer what
        queued up behind the subscribe."""
        self._held = self._early = None
        self.state = REJECTED
        protocol = self._protocol
        protocol.forget(self)
        self._send(protocol.dialect.reject(self.identifier, reason, message))
        why = "" if reason is None else f" ({reason}: {message or '-'})"
        log.info("conn %s: rejected %s%s", protocol.id, self.identifier, why)
        commands, self._inbox = self._inbox or [], None
        for command in commands:
            if isinstance(command, Message):
                protocol.refuse(
                    command, "not_subscribed", "the subscription was rejected"
                )

    def leave(self) -> None:
        """Stop sending for it (unsubscribed, or the connection ends)."""
        if self.state is not REJECTED:
            self.state = LEAVING

    def next_command(self) -> Queued | None:
        """The next queued action (or history request) to perform, or None."""
        inbox = self._inbox
        return inbox.pop(0) if inbox else None

    def push(self, command: Queued) -> bool:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = []
        elif len(inbox) >= self._protocol.settings.max_pending_commands:
            return False
        inbox.append(command)
        return True
