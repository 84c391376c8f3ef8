"""The server side of one connection, sans-I/O: frames in, frames and work out.

:class:`ServerProtocol` owns every protocol rule of a connection: the
limits (frame size, subscriptions, pending commands), the command rate
bucket (driven by the ``now`` the caller passes in), the subscription
states and what may be sent in each, and the refusal of actions a channel
does not offer. It emits server frames, already encoded by its
:class:`~trio_cable.protocol.dialects.Dialect`, through the ``send``
callable it is given (which must not block), and returns the work the
channel layer must do as events. It imports no event loop and no socket:
the tests drive it with plain calls.

A :class:`ServerSubscription` is the protocol's record of one
subscription. It holds what ``subscribed()`` transmits until the
confirmation (the *held* buffer, discarded on rejection), broadcasts that
arrive between the first stream and the confirmation (the *early* buffer,
sent just after it), and the commands waiting for the channel layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._errors import ProtocolError
from .codec import DEFAULT_LIMITS, Limits, Message, Subscribe, Unsubscribe
from .dialects import Dialect
from .ext import PONG, History, HistoryRequest, Ping, Position, Whisper

__all__ = [
    "CONFIRMED",
    "LEAVING",
    "PENDING",
    "REJECTED",
    "ChannelRules",
    "CommandQueued",
    "Event",
    "ProtocolHost",
    "ProtocolSettings",
    "ServerProtocol",
    "ServerSubscription",
    "SubscriptionRequested",
    "UnsubscribeRequested",
    "WhisperRequested",
    "refusal",
]

log = logging.getLogger("trio_cable.connection")

#: Subscription states. Pending: ``subscribed()`` runs. Confirmed: frames
#: flow. Rejected, leaving: nothing more is sent for it.
PENDING: Final = "pending"
CONFIRMED: Final = "confirmed"
REJECTED: Final = "rejected"
LEAVING: Final = "leaving"


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


def refusal(rules: ChannelRules, action: str) -> tuple[str, str] | None:
    """Why ``action`` may not run on the channel (reason, message), or None."""
    if action.startswith("_"):
        return "invalid_action", f"{action!r} is private"
    if action in rules.reserved:
        return "invalid_action", f"{action!r} is not an action"
    if action not in rules.actions:
        return "unknown_action", f"{rules.name} has no action {action!r}"
    return None


class ProtocolHost(Protocol):
    """What a connection's protocol asks of the server it belongs to."""

    def channel_rules(self, name: str) -> ChannelRules | None:
        """The rules of the channel subscribed to as ``name`` (None: none)."""
        ...

    def count(self, name: str) -> None:
        """Count a refusal worth counting (``rate_limited``,
        ``frame_too_large``)."""


# -- events for the channel layer ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionRequested:
    """A new subscription: run the channel's ``subscribed()``, then call
    :meth:`ServerSubscription.confirm` or :meth:`ServerSubscription.reject`."""

    subscription: ServerSubscription
    params: dict[str, Any]
    #: What the client missed, to replay after the confirmation (extended).
    history: HistoryRequest | None = None


@dataclass(frozen=True, slots=True)
class CommandQueued:
    """The subscription has commands: take them with
    :meth:`ServerSubscription.next_command` (in order, one at a time)."""

    subscription: ServerSubscription


@dataclass(frozen=True, slots=True)
class UnsubscribeRequested:
    """The client left the subscription: stop its streams; run
    ``unsubscribed()`` after its queued commands."""

    subscription: ServerSubscription


@dataclass(frozen=True, slots=True)
class WhisperRequested:
    """The client whispers ``payload`` on the subscription: hand it to the
    other subscribers of its whisper stream (if the channel opened one)."""

    subscription: ServerSubscription
    payload: str


Event = SubscriptionRequested | CommandQueued | UnsubscribeRequested | WhisperRequested


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
        self, protocol: ServerProtocol, identifier: str, rules: ChannelRules
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
        self._inbox: list[Subscribe | Message | History] | None = None

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
        frame = frames.get(self.identifier)
        if frame is None:
            tail = "}" if position is None else position.tail
            frame = frames[self.identifier] = self.prefix + payload + tail
        self._send(frame)

    def transmit(self, payload: str) -> None:
        """Data for this subscription only (held until it is confirmed)."""
        if self._held is not None:
            self._held.append(payload)
        elif self.state is CONFIRMED:
            self._send(self.prefix + payload + "}")

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

    def hold(self) -> None:
        """Keep broadcasts back while history is read (see :meth:`history`)."""
        if self.state is CONFIRMED and self._early is None:
            self._early = []

    def history(self, replay: list[tuple[str, Position]] | None) -> None:
        """Answer a history request: the missed broadcasts ``replay`` (in
        order) and ``confirm_history``, or, for None (history gone),
        ``reject_history``; then the broadcasts held back meanwhile, less
        those the replay already carried (same stream, epoch, and an
        offset not past the replay's last): no gap and no duplicate at
        the hand-off from history to live."""
        held = self._early or []
        self._early = None
        if self.state is not CONFIRMED:
            return
        send, prefix = self._send, self.prefix
        dialect = self._protocol.dialect
        seen: dict[str, Position] = {}
        if replay is None:
            send(dialect.history_result(self.identifier, ok=False))
        else:
            for payload, spot in replay:
                send(prefix + payload + spot.tail)
                seen[spot.stream] = spot
            send(dialect.history_result(self.identifier, ok=True))
        for payload, position in held:
            if position is not None:
                last = seen.get(position.stream)
                if (
                    last is not None
                    and last.epoch == position.epoch
                    and position.offset <= last.offset
                ):
                    continue
            send(prefix + payload + ("}" if position is None else position.tail))

    def reject(self) -> None:
        """``subscribed()`` refused it: forget it, say so, and answer what
        queued up behind the subscribe."""
        self._held = self._early = None
        self.state = REJECTED
        protocol = self._protocol
        protocol.forget(self)
        self._send(protocol.dialect.reject(self.identifier))
        log.info("conn %s: rejected %s", protocol.id, self.identifier)
        commands, self._inbox = self._inbox or [], None
        for command in commands:
            if isinstance(command, Subscribe):
                self._send(protocol.dialect.reject(self.identifier))
            else:
                protocol.error(
                    "not_subscribed", "the subscription was rejected", self.identifier
                )

    def leave(self) -> None:
        """Stop sending for it (unsubscribed, or the connection ends)."""
        if self.state is not REJECTED:
            self.state = LEAVING

    def next_command(self) -> Message | History | None:
        """The next queued action (or history request) to perform, or None.
        A repeated subscribe is answered here, in order with the actions
        around it."""
        inbox = self._inbox
        while inbox:
            command = inbox.pop(0)
            if not isinstance(command, Subscribe):
                return command
            if self.state is CONFIRMED:
                self._send(self._protocol.dialect.confirm(self.identifier))
        return None

    def _push(self, command: Subscribe | Message | History) -> bool:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = []
        elif len(inbox) >= self._protocol.settings.max_pending_commands:
            return False
        inbox.append(command)
        return True


class ServerProtocol:
    """The protocol state of one connection.

    Arguments:
        dialect: the wire dialect chosen for this connection.
        settings: its limits.
        send: takes each encoded server frame; must not block.
        host: the channels' rules and the counters (see
            :class:`ProtocolHost`).
        id: the connection id, for log lines.
    """

    __slots__ = (
        "_rate_limited",
        "_refilled",
        "_tokens",
        "count",
        "dialect",
        "host",
        "id",
        "last_seen",
        "send",
        "settings",
        "subscriptions",
    )

    def __init__(
        self,
        dialect: Dialect,
        settings: ProtocolSettings,
        *,
        send: Callable[[str], None],
        host: ProtocolHost,
        id: str = "-",
        now: float = 0.0,
    ) -> None:
        self.dialect = dialect
        self.settings = settings
        self.send = send
        self.host = host
        self.id = id
        self.subscriptions: dict[str, ServerSubscription] = {}
        self._tokens = float(settings.command_burst)
        self._refilled = now
        self._rate_limited = False
        #: When the client last sent a frame (for ``no_pong``).
        self.last_seen = now

    def welcome(self, sid: str = "", restored_ids: list[str] | None = None) -> None:
        """Send ``welcome`` (with the session id, in the extended dialect)."""
        self.send(self.dialect.welcome(sid, restored_ids))

    def error(self, reason: str, message: str, identifier: str | None = None) -> None:
        """Report a protocol error to the client and the log; carry on."""
        log.info("conn %s: %s: %s", self.id, reason, message)
        self.send(self.dialect.error(reason, message, identifier))

    def forget(self, sub: ServerSubscription) -> None:
        if self.subscriptions.get(sub.identifier) is sub:
            del self.subscriptions[sub.identifier]

    def receive(self, frame: str | bytes, now: float) -> Event | None:
        """Handle one client frame that arrived at time ``now`` (seconds,
        any monotonic clock); the work it makes for the channel layer, if
        any. Errors are answered through ``send`` and leave the connection
        usable."""
        settings = self.settings
        self.last_seen = now
        if not self._take_token(now):
            return None
        if len(frame) > settings.max_frame_bytes:
            self.host.count("frame_too_large")
            self.error(
                "frame_too_large",
                f"frames are limited to {settings.max_frame_bytes} bytes",
            )
            return None
        if not isinstance(frame, str):
            self.error("invalid_request", "binary frames are not supported")
            return None
        try:
            command = self.dialect.parse(frame, settings.limits)
        except ProtocolError as exc:
            self.error(exc.reason, exc.message, exc.identifier)
            return None
        if isinstance(command, Message):
            return self._message(command)
        if isinstance(command, Subscribe):
            return self._subscribe(command)
        if isinstance(command, Unsubscribe):
            return self._unsubscribe(command)
        if isinstance(command, History):
            return self._history(command)
        if isinstance(command, Whisper):
            return self._whisper(command)
        if isinstance(command, Ping):
            self.send(PONG)
        # A Pong needs no answer: any frame shows the client is alive.
        return None

    def _whisper(self, command: Whisper) -> Event | None:
        sub = self.subscriptions.get(command.identifier)
        if sub is None or sub.state is not CONFIRMED:
            self._not_subscribed(command.identifier)
            return None
        return WhisperRequested(sub, command.payload)

    def _history(self, command: History) -> Event | None:
        sub = self.subscriptions.get(command.identifier)
        if sub is None:
            self._not_subscribed(command.identifier)
            return None
        if sub.state is LEAVING:
            return None
        if not sub._push(command):
            self.error(
                "too_many_commands",
                f"more than {self.settings.max_pending_commands} commands pending",
                command.identifier,
            )
            return None
        return CommandQueued(sub)

    def _take_token(self, now: float) -> bool:
        """The token bucket for commands."""
        settings = self.settings
        self._tokens = min(
            float(settings.command_burst),
            self._tokens + (now - self._refilled) * settings.commands_per_second,
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._rate_limited = False
            return True
        self.host.count("rate_limited")
        if not self._rate_limited:  # one error frame and log line per burst
            self._rate_limited = True
            self.error(
                "rate_limited",
                f"more than {settings.commands_per_second:g} commands per second",
            )
        return False

    def _subscribe(self, command: Subscribe) -> Event | None:
        identifier = command.identifier
        existing = self.subscriptions.get(identifier)
        if existing is not None:
            # The official client re-sends subscribe until it is answered:
            # answer again, in order, without a second subscription.
            return CommandQueued(existing) if existing._push(command) else None
        rules = self.host.channel_rules(command.channel)
        if rules is None:
            log.info("conn %s: unknown channel %r", self.id, command.channel)
            self.send(self.dialect.reject(identifier, "unknown_channel"))
            return None
        limit = self.settings.max_subscriptions
        if len(self.subscriptions) >= limit:
            log.info("conn %s: subscription limit (%d) reached", self.id, limit)
            self.send(self.dialect.reject(identifier, "too_many_subscriptions"))
            return None
        sub = ServerSubscription(self, identifier, rules)
        self.subscriptions[identifier] = sub
        return SubscriptionRequested(sub, command.params, command.history)

    def _message(self, command: Message) -> Event | None:
        sub = self.subscriptions.get(command.identifier)
        if sub is None:
            self._not_subscribed(command.identifier)
            return None
        refused = refusal(sub.rules, command.action)
        if refused is not None:
            self.error(refused[0], refused[1], command.identifier)
            return None
        if sub.state is LEAVING:
            return None  # unsubscribed already: dropped, as Rails does
        if not sub._push(command):
            self.error(
                "too_many_commands",
                f"more than {self.settings.max_pending_commands} commands pending",
                command.identifier,
            )
            return None
        return CommandQueued(sub)

    def _unsubscribe(self, command: Unsubscribe) -> Event | None:
        sub = self.subscriptions.pop(command.identifier, None)
        if sub is None:
            self._not_subscribed(command.identifier)
            return None
        sub.leave()
        return UnsubscribeRequested(sub)

    def _not_subscribed(self, identifier: str) -> None:
        self.error("not_subscribed", "no subscription with this identifier", identifier)
