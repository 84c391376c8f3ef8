"""The server side of one connection, sans-I/O: frames in, frames and work out.

:class:`ServerProtocol` owns every protocol rule of a connection: the
limits (frame size, subscriptions, pending commands), the command rate
bucket (driven by the ``now`` the caller passes in), the subscription
states and what may be sent in each, the refusal of actions a channel
does not offer, and the answers to calls (a ``message`` with a ``ref``:
its reply, or a tagged refusal, never silence). It emits server frames,
already encoded by its :class:`~trio_cable.protocol.dialects.Dialect`,
through the ``send`` callable it is given (which must not block), and
returns the work the channel layer must do as events. It imports no event
loop and no socket: the tests drive it with plain calls.

A :class:`ServerSubscription` is the protocol's record of one
subscription. It holds what ``subscribed()`` transmits until the
confirmation (the *held* buffer, discarded on rejection), broadcasts that
arrive between the first stream and the confirmation (the *early* buffer,
sent just after it), and the commands waiting for the channel layer.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._errors import ProtocolError
from .codec import (
    DEFAULT_LIMITS,
    Limits,
    Message,
    Ref,
    Subscribe,
    Unsubscribe,
    brief,
    utf8_size,
)
from .dialects import Dialect

__all__ = [
    "CONFIRMED",
    "LEAVING",
    "MAX_WARNED_MISTAKES",
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
    "did_you_mean",
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


#: Distinct mistakes (unknown channel or action names) logged at WARNING
#: per connection; past it they are logged at INFO, so a client sending
#: endless made-up names cannot flood the log.
MAX_WARNED_MISTAKES: Final = 16


def did_you_mean(name: str, names: Collection[str], kind: str) -> str:
    """``" (did you mean 'x'? <kind>: a, b)"``, for a name that does not exist."""
    ordered = sorted(names)
    close = difflib.get_close_matches(name, ordered, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(ordered[:20]) + (", ..." if len(ordered) > 20 else "")
    return f" ({hint}{kind}: {listed or 'none'})"


def refusal(rules: ChannelRules, action: str) -> tuple[str, str] | None:
    """Why ``action`` may not run on the channel (reason, message), or None."""
    if action.startswith("_"):
        return "invalid_action", f"{brief(action)} is private"
    if action in rules.reserved:
        return "invalid_action", f"{brief(action)} is not an action"
    if action not in rules.actions:
        hint = did_you_mean(action, rules.actions, "actions")
        return "unknown_action", f"{rules.name} has no action {brief(action)}{hint}"
    return None


class ProtocolHost(Protocol):
    """What a connection's protocol asks of the server it belongs to."""

    def channel_rules(self, name: str) -> ChannelRules | None:
        """The rules of the channel subscribed to as ``name`` (None: none)."""
        ...

    def channel_names(self) -> Collection[str]:
        """Every channel name clients may subscribe to (for hints)."""
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


Event = SubscriptionRequested | CommandQueued | UnsubscribeRequested


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
        self._early: list[str] | None = []
        # Made with the first queued command: most subscriptions never
        # have one waiting, and a list per subscription adds up.
        self._inbox: list[Message] | None = None

    def __repr__(self) -> str:
        return f"<ServerSubscription {self.identifier} {self.state}>"

    @property
    def closed(self) -> bool:
        """Rejected or leaving: no more streams nor frames."""
        return self.state is REJECTED or self.state is LEAVING

    @property
    def pending_commands(self) -> int:
        return len(self._inbox or ())

    def deliver(self, payload: str, frames: dict[str, str]) -> None:
        """A broadcast's encoded ``payload``; ``frames`` caches the frames
        built for this broadcast, by identifier."""
        if self.state is not CONFIRMED:
            if self.state is PENDING and self._early is not None:
                # A broadcast while subscribed() runs: after the confirmation.
                self._early.append(payload)
            return
        # Keyed by the frame's head, not the identifier: two dialects may
        # share an identifier but never a head.
        prefix = self.prefix
        frame = frames.get(prefix)
        if frame is None:
            frame = frames[prefix] = prefix + payload + "}"
        self._send(frame)

    def transmit(self, payload: str) -> None:
        """Data for this subscription only (held until it is confirmed)."""
        if self._held is not None:
            self._held.append(payload)
        elif self.state is CONFIRMED:
            self._send(self.prefix + payload + "}")

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

    def confirm(self) -> None:
        """``subscribed()`` accepted it and its streams are live: what it
        transmitted, the confirmation, then the broadcasts that came early
        (unless it was left meanwhile)."""
        held, self._held = self._held or [], None
        early, self._early = self._early or [], None
        if self.state is not PENDING:
            return
        self.state = CONFIRMED
        send, prefix = self._send, self.prefix
        for payload in held:
            send(prefix + payload + "}")
        send(self._protocol.dialect.confirm(self.identifier))
        for payload in early:
            send(prefix + payload + "}")

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
            protocol.refuse(command, "not_subscribed", "the subscription was rejected")

    def leave(self) -> None:
        """Stop sending for it (unsubscribed, or the connection ends)."""
        if self.state is not REJECTED:
            self.state = LEAVING

    def next_command(self) -> Message | None:
        """The next queued action to perform, or None."""
        inbox = self._inbox
        return inbox.pop(0) if inbox else None

    def _push(self, command: Message) -> bool:
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
        "_mistakes",
        "_rate_limited",
        "_refilled",
        "_tokens",
        "count",
        "dialect",
        "host",
        "id",
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
        # Made on the first mistake: an empty set is 216 bytes per connection.
        self._mistakes: set[tuple[str, str]] | None = None

    def welcome(self) -> None:
        frame = self.dialect.welcome()
        if frame is not None:
            self.send(frame)

    def error(self, reason: str, message: str, identifier: str | None = None) -> None:
        """Report a protocol error to the client and the log; carry on."""
        log.info("conn %s: %s: %s", self.id, reason, message)
        self.send(self.dialect.error(reason, message, identifier))

    def mistake(self, reason: str, message: str) -> None:
        """Log a misspelt name: at WARNING the first time this connection
        makes this mistake (a default logging setup shows it), at INFO
        when it repeats (the official client may retry for ever)."""
        key = (reason, message)
        if self._mistakes is None:
            self._mistakes = set()
        if key in self._mistakes or len(self._mistakes) >= MAX_WARNED_MISTAKES:
            log.info("conn %s: %s: %s", self.id, reason, message)
            return
        self._mistakes.add(key)
        log.warning("conn %s: %s: %s", self.id, reason, message)

    def refuse(
        self, command: Message, reason: str, message: str, *, logged: bool = False
    ) -> None:
        """``command`` cannot run: a tagged reply when it was a call (so the
        caller's wait ends), else an error frame. ``logged``: the caller
        has logged it already."""
        if not logged:
            log.info("conn %s: %s: %s", self.id, reason, message)
        if command.ref is None:
            self.send(self.dialect.error(reason, message, command.identifier))
        else:
            self.send(
                self.dialect.reply_error(
                    command.identifier, command.ref, reason, message
                )
            )

    def forget(self, sub: ServerSubscription) -> None:
        if self.subscriptions.get(sub.identifier) is sub:
            del self.subscriptions[sub.identifier]

    def receive(self, frame: str | bytes, now: float) -> Event | None:
        """Handle one client frame that arrived at time ``now`` (seconds,
        any monotonic clock); the work it makes for the channel layer, if
        any. Errors are answered through ``send`` and leave the connection
        usable."""
        settings = self.settings
        if not self._take_token(now):
            self._refuse_call(frame)
            return None
        limit = settings.max_frame_bytes
        if len(frame) > limit or (isinstance(frame, str) and utf8_size(frame) > limit):
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
        return self._unsubscribe(command)

    def _refuse_call(self, frame: str | bytes) -> None:
        """A call dropped by the rate limit still gets its tagged answer,
        or its caller would wait out its timeout. Only frames that may
        carry a ``ref`` are parsed: a flood of plain commands costs no
        more than before."""
        if not isinstance(frame, str) or '"ref"' not in frame:
            return
        if len(frame) > self.settings.max_frame_bytes:
            return
        try:
            command = self.dialect.parse(frame, self.settings.limits)
        except ProtocolError:
            return
        if isinstance(command, Message) and command.ref is not None:
            rate = self.settings.commands_per_second
            self.refuse(
                command, "rate_limited", f"more than {rate:g} commands per second"
            )

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
            # A duplicate of a pending or confirmed subscription gets no
            # frame, as in Rails and anycable-go: the official client
            # re-sends subscribe every 500 ms until answered and runs
            # connected() once per confirmation, and @anycable/web
            # unsubscribes on a second one. The subscription's one
            # confirmation (or rejection) answers every copy.
            log.debug("conn %s: duplicate subscribe to %s", self.id, identifier)
            return None
        rules = self.host.channel_rules(command.channel)
        if rules is None:
            self.host.count("unknown_channel")
            hint = did_you_mean(command.channel, self.host.channel_names(), "channels")
            explained = f"no channel {command.channel!r}{hint}"
            self.mistake("unknown_channel", explained)
            self.send(self.dialect.reject(identifier, "unknown_channel", explained))
            return None
        limit = self.settings.max_subscriptions
        if len(self.subscriptions) >= limit:
            log.info("conn %s: subscription limit (%d) reached", self.id, limit)
            self.send(self.dialect.reject(identifier, "too_many_subscriptions"))
            return None
        sub = ServerSubscription(self, identifier, rules)
        self.subscriptions[identifier] = sub
        return SubscriptionRequested(sub, command.params)

    def _message(self, command: Message) -> Event | None:
        sub = self.subscriptions.get(command.identifier)
        if sub is None:
            self.refuse(command, "not_subscribed", _NOT_SUBSCRIBED)
            return None
        refused = refusal(sub.rules, command.action)
        if refused is not None:
            if refused[0] == "unknown_action":
                self.host.count("unknown_action")
                self.mistake(*refused)
                self.refuse(command, *refused, logged=True)
            else:
                self.refuse(command, *refused)
            return None
        if sub.state is LEAVING:
            return None  # unsubscribed already: dropped, as Rails does
        if not sub._push(command):
            self.refuse(
                command,
                "too_many_commands",
                f"more than {self.settings.max_pending_commands} commands pending",
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
        self.error("not_subscribed", _NOT_SUBSCRIBED, identifier)


_NOT_SUBSCRIBED: Final = "no subscription with this identifier"
