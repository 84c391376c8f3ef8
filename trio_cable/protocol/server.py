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
    Message,
    Subscribe,
    Unsubscribe,
    brief,
    utf8_size,
)
from .dialects import Dialect
from .ext import PONG, History, HistoryRequest, Ping, Whisper
from .presence import PresenceInfo, PresenceJoin, PresenceLeave
from .subscription import (
    CONFIRMED,
    LEAVING,
    PENDING,
    REJECTED,
    ChannelRules,
    ProtocolSettings,
    ServerSubscription,
)

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
    "WhisperRequested",
    "did_you_mean",
    "refusal",
]

log = logging.getLogger("trio_cable.connection")

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
        "_restoring",
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
        # Made on the first mistake: an empty set is 216 bytes per connection.
        self._mistakes: set[tuple[str, str]] | None = None
        # Restored subscriptions whose client has not asked for history.
        self._restoring: set[str] | None = None
        #: When the client last sent a frame (for ``no_pong``).
        self.last_seen = now

    def welcome(self, sid: str = "", restored_ids: list[str] | None = None) -> None:
        """Send ``welcome`` (with the session id, in the extended dialect),
        if the dialect has one."""
        frame = self.dialect.welcome(sid, restored_ids)
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
        self.last_seen = now
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
        if isinstance(command, Unsubscribe):
            return self._unsubscribe(command)
        if isinstance(command, History | PresenceJoin | PresenceLeave | PresenceInfo):
            return self._queue(command)
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

    def restore(self, identifier: str, rules: ChannelRules) -> ServerSubscription:
        """The record of a subscription of a restored session, confirmed
        with no frame; live broadcasts wait for the client's ``history``
        command (so none arrives twice), or :meth:`release_restored`."""
        sub = self.subscriptions[identifier] = ServerSubscription(
            self, identifier, rules
        )
        sub.resume()
        if self._restoring is None:
            self._restoring = set()
        self._restoring.add(identifier)
        return sub

    def release_restored(self) -> None:
        """Let live broadcasts through to restored subscriptions that got
        no ``history`` command (a client that will not ask)."""
        waiting, self._restoring = self._restoring or (), None
        for identifier in waiting:
            sub = self.subscriptions.get(identifier)
            if sub is not None:
                sub.release()

    def _queue(
        self, command: History | PresenceJoin | PresenceLeave | PresenceInfo
    ) -> Event | None:
        """A history request or a presence command: in order with the
        subscription's actions."""
        if self._restoring is not None and isinstance(command, History):
            self._restoring.discard(command.identifier)
        sub = self.subscriptions.get(command.identifier)
        if sub is None:
            self._not_subscribed(command.identifier)
            return None
        if sub.state is LEAVING:
            return None
        if not sub.push(command):
            self.error(
                "too_many_commands",
                f"more than {self.settings.max_pending_commands} commands pending",
                command.identifier,
            )
            return None
        return CommandQueued(sub)

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
        return SubscriptionRequested(sub, command.params, command.history)

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
        if not sub.push(command):
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
