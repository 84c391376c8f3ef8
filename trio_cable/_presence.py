"""Presence: who is here on a stream, in this process and across processes.

A member is a presence **id** on a stream, with its **info** (any JSON).
One id may be held by many subscriptions (tabs, devices, workers): it
joins when the first one joins and leaves after the last one left; its
info is the latest one given.

:class:`PresenceTracker` (one per cable) keeps this process's members.
Each change of a (stream, id) is handed to its backend, which decides
what the whole cable sees and announces joins and leaves exactly once:
:class:`LocalPresence` when the cable is alone, or the Redis backend
(:mod:`._redis_presence`) across processes. An announcement is a
broadcast on the stream's presence channel (``_trio_cable:presence:<stream>``,
carried by the broker like any broadcast), which each subscription that
opened the stream for presence turns into a frame of its dialect
(:meth:`ServerSubscription.presence`), plus a call of each
:meth:`~trio_cable.Cable.on_presence` hook in the announcing process.

A subscription dropped with its connection keeps its member for
``presence_grace`` seconds (a reload comes back before that); an explicit
leave or unsubscribe leaves at once.
"""

from __future__ import annotations

import heapq
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import trio

from .protocol.codec import utf8_size
from .protocol.presence import (
    PresenceCommand,
    PresenceInfo,
    PresenceLeave,
    encode_info,
    encode_join,
    encode_leave,
)

if TYPE_CHECKING:
    from ._hub import Subscriber
    from ._options import CableOptions
    from .protocol.ext import Position
    from .protocol.server import ServerSubscription

__all__ = [
    "PRESENCE_PREFIX",
    "Change",
    "LocalPresence",
    "PresenceBackend",
    "PresenceEvent",
    "PresenceHook",
    "PresenceTracker",
    "SubscriptionPresence",
    "perform",
]

log = logging.getLogger("trio_cable.presence")

#: The hub stream that carries a stream's presence events.
PRESENCE_PREFIX: Final = "_trio_cable:presence:"


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A member joined or left ``stream`` (what :meth:`Cable.on_presence`
    hooks get). ``info`` is the member's info (None for a leave)."""

    type: Literal["join", "leave"]
    stream: str
    id: str
    info: Any = None


#: What happened to a member of this process: it ``join``-ed (the first
#: of its holders here), got new info or a holder more (``update``), or
#: ``leave``-s (its last holder left, its grace ended).
Change = Literal["join", "update", "leave"]

#: ``def hook(event)`` or ``async def hook(event)`` (run in the cable's nursery).
PresenceHook = Callable[[PresenceEvent], Awaitable[object] | object]


class StartSoon(Protocol):
    def __call__(
        self, fn: Callable[..., Awaitable[object]], *args: Any, name: str | None = None
    ) -> None: ...


class PresenceHost(Protocol):
    """What a subscription's presence side needs of its cable."""

    @property
    def presence_tracker(self) -> PresenceTracker: ...
    def stream_added(self, stream: str, subscriber: Subscriber) -> None: ...
    def stream_removed(self, stream: str, subscriber: Subscriber) -> None: ...


class PresenceBackend(Protocol):
    """Who decides what the whole cable sees of a stream's members."""

    def changed(self, stream: str, id: str, change: Change) -> None:
        """This process's member ``id`` of ``stream`` joined, left or
        changed its info (``change``): bring the shared view up to date
        (never blocks)."""

    async def members(self, stream: str) -> dict[str, str]:
        """Every member of ``stream``, id -> encoded info."""
        ...


class _Many(dict[object, None]):
    """The holders of a member held by more than one (an ordered set)."""

    __slots__ = ()


class _Member:
    __slots__ = ("holders", "info", "until")

    def __init__(self, info: str, holder: object) -> None:
        self.info = info
        #: The subscription holding it; :class:`_Many` when several do (a
        #: member is mostly held by one: no set for it); None in its grace.
        self.holders: object = holder
        #: When a dropped holder's grace ends (None: no grace running).
        self.until: float | None = None


class LocalPresence:
    """The backend of a cable alone: this process's view is the whole one,
    so each member's first join and last leave here is announced."""

    __slots__ = ("_others", "_tracker")

    def __init__(self, tracker: PresenceTracker) -> None:
        self._tracker = tracker
        # Members another backend announced (the cable's Redis side, which
        # has stopped): their leave is not ours to announce.
        self._others: set[tuple[str, str]] = set()

    def take_over(self, keys: list[tuple[str, str]]) -> None:
        """Be the backend again after another one, which announced ``keys``."""
        self._others.update(keys)

    def changed(self, stream: str, id: str, change: Change) -> None:
        tracker = self._tracker
        if change == "join":
            info = tracker.local_info(stream, id)
            info = "null" if info is None else info
            tracker.announce("join", stream, id, info, local=True)
        elif change == "leave":
            others = self._others
            if others and (stream, id) in others:
                others.discard((stream, id))
                return
            tracker.announce("leave", stream, id, local=True)

    async def members(self, stream: str) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return self._tracker.local_members(stream)


class PresenceTracker:
    """This process's members of every stream, and their announcements.

    Cancellation: :meth:`run` (a background task of the cable) ends the
    grace timer and the backend's work; members stay in memory.
    """

    def __init__(
        self,
        options: CableOptions,
        publish: Callable[[str, str], object],
        start_soon: StartSoon,
        subscribers: Callable[[str], int] = lambda stream: 1,
    ) -> None:
        self.options = options
        #: Broadcast (stream, encoded payload) here and to every process.
        self.publish = publish
        #: How many subscribers a hub stream has here.
        self.subscribers = subscribers
        self._start_soon = start_soon
        self._streams: dict[str, dict[str, _Member]] = {}
        self.hooks: list[PresenceHook] = []
        self.local = LocalPresence(self)
        self.backend: PresenceBackend = self.local
        self._graces: list[tuple[float, str, str]] = []
        # The grace timer's sleep (while it runs): its deadline is the
        # first grace to end.
        self._sleep: trio.CancelScope | None = None
        #: Set once presence is used (a stream opened for it, or a list
        #: asked for): a Redis cable connects for presence only then.
        self.wanted = trio.Event()

    # -- this process's members ---------------------------------------------

    def join(self, stream: str, id: str, info: str, holder: object) -> None:
        """``holder`` (a subscription) is ``id`` on ``stream``, described by
        ``info`` (encoded JSON; the latest wins)."""
        members = self._streams.get(stream)
        if members is None:
            members = self._streams[stream] = {}
        member = members.get(id)
        if member is None:
            members[id] = _Member(info, holder)
            self.backend.changed(stream, id, "join")
            return
        held = member.holders
        if held is holder or (type(held) is _Many and holder in held):
            if member.info == info:
                return
        elif held is None:
            member.holders = holder
        elif type(held) is _Many:
            held[holder] = None
        else:
            member.holders = _Many({held: None, holder: None})
        member.info = info
        member.until = None
        self.backend.changed(stream, id, "update")

    def leave(self, stream: str, id: str, holder: object, *, grace: bool) -> None:
        """``holder`` is no longer ``id`` on ``stream``; with ``grace`` (its
        connection dropped) the member stays ``presence_grace`` seconds if
        this was its last holder."""
        members = self._streams.get(stream)
        member = None if members is None else members.get(id)
        if member is None:
            return
        held = member.holders
        if type(held) is _Many:
            if holder in held:
                del held[holder]
                if len(held) == 1:
                    member.holders = next(iter(held))
            return
        if held is not holder:
            return
        member.holders = None
        seconds = self.options.presence_grace
        if grace and seconds > 0:
            member.until = until = trio.current_time() + seconds
            heapq.heappush(self._graces, (until, stream, id))
            # Graces are as long as each other: a later one mostly, which
            # does not wake the timer (a wake per drop cost more than
            # the drop itself when thousands leave at once).
            sleep = self._sleep
            if sleep is not None and until < sleep.deadline:
                sleep.deadline = until
            return
        self._drop(stream, id)

    def _drop(self, stream: str, id: str) -> None:
        members = self._streams[stream]
        del members[id]
        if not members:
            del self._streams[stream]
        self.backend.changed(stream, id, "leave")

    def local_info(self, stream: str, id: str) -> str | None:
        """The encoded info of this process's member ``id``, or None."""
        member = self._streams.get(stream, {}).get(id)
        return None if member is None else member.info

    def local_members(self, stream: str) -> dict[str, str]:
        """This process's members of ``stream``: id -> encoded info."""
        return {id: m.info for id, m in self._streams.get(stream, {}).items()}

    def local_keys(self) -> list[tuple[str, str]]:
        """Every (stream, id) this process holds."""
        return [(s, id) for s, members in self._streams.items() for id in members]

    async def members(self, stream: str) -> dict[str, str]:
        """Every member of ``stream`` the cable knows: id -> encoded info."""
        self.wanted.set()
        return await self.backend.members(stream)

    # -- announcements ---------------------------------------------------------

    def announce(
        self,
        kind: Literal["join", "leave"],
        stream: str,
        id: str,
        info: str = "null",
        *,
        local: bool = False,
    ) -> None:
        """Tell every subscriber of ``stream``'s presence, in every process
        (``local``: in this one, the only one that takes part), and run the
        hooks here (the backend calls this once per change)."""
        events = PRESENCE_PREFIX + stream
        # Most channels take no events: then a local one is not even encoded.
        if not local or self.subscribers(events):
            payload = encode_join(id, info) if kind == "join" else encode_leave(id)
            self.publish(events, payload)
        if not self.hooks:
            return
        event = PresenceEvent(kind, stream, id, json.loads(info))
        for hook in self.hooks:
            try:
                if inspect.iscoroutinefunction(hook):
                    self._start_soon(hook, event, name=repr(hook))
                else:
                    hook(event)
            except Exception:
                log.exception("presence hook %r failed", hook)

    # -- the grace timer -----------------------------------------------------

    async def run_graces(self) -> None:
        """End the grace of dropped members as it runs out; forever."""
        graces = self._graces
        while True:
            now = trio.current_time()
            while graces and graces[0][0] <= now:
                until, stream, id = heapq.heappop(graces)
                member = self._streams.get(stream, {}).get(id)
                if member is not None and member.until == until:
                    self._drop(stream, id)
            with trio.CancelScope(
                deadline=graces[0][0] if graces else math.inf
            ) as self._sleep:
                await trio.sleep_forever()


class SubscriptionPresence:
    """One subscription's side of presence on the stream it opened for it:
    its member id (if it joined), and the hub subscriber that turns the
    stream's presence events into frames for it."""

    # One per member of each connection: a few slots, no bound methods.
    __slots__ = ("_host", "_record", "events", "id", "identifier", "stream")

    def __init__(
        self,
        host: PresenceHost,
        record: ServerSubscription,
        stream: str,
        events: bool = True,
    ) -> None:
        self._host = host
        self._record = record
        self.identifier = record.identifier
        self.stream = stream
        self.id: str | None = None
        #: Whether it gets the stream's join and leave events.
        self.events = events
        host.presence_tracker.wanted.set()
        if events:
            host.stream_added(self.events_stream, self)

    @property
    def tracker(self) -> PresenceTracker:
        return self._host.presence_tracker

    @property
    def events_stream(self) -> str:
        """The hub stream its events come on."""
        return PRESENCE_PREFIX + self.stream

    @property
    def live_streams(self) -> list[str]:
        """What must be live before its confirmation."""
        return [self.events_stream] if self.events else []

    def deliver(
        self, payload: str, frames: dict[str, str], position: Position | None = None
    ) -> None:
        self._record.presence(payload)

    def join(self, id: str, info: str) -> None:
        """Be ``id`` (leaving the id it was, if another)."""
        if self.id is not None and self.id != id:
            self.tracker.leave(self.stream, self.id, self, grace=False)
        self.id = id
        self.tracker.join(self.stream, id, info, self)

    def leave(self, *, grace: bool = False) -> None:
        if self.id is not None:
            id, self.id = self.id, None
            self.tracker.leave(self.stream, id, self, grace=grace)

    async def info(self) -> None:
        """Answer a client's ``presence`` command: the member list."""
        records = await self.tracker.members(self.stream)
        self._record.presence(encode_info(records))

    def close(self, *, grace: bool) -> None:
        """The subscription ended: no more events; leave (after the grace
        when its connection dropped)."""
        if self.events:
            self._host.stream_removed(self.events_stream, self)
        self.leave(grace=grace)


async def perform(
    presence: SubscriptionPresence | None,
    record: ServerSubscription,
    command: PresenceCommand,
    clients: bool,
    limit: int,
    error: Callable[[str, str], object],
) -> None:
    """A client's ``join``, ``leave`` or ``presence`` command on a
    subscription (``presence``: its side, None if the channel opened no
    stream for presence). Refused with an error frame (``error(reason,
    message)``) when there is no presence stream, when the channel does
    not let clients join (``clients`` false; info may still be asked),
    or when the info is over ``limit`` bytes. A refused info request is
    also answered ``{"type":"error"}`` (as AnyCable does), so a client
    waiting for the list is not left waiting."""
    if presence is None:
        error("presence_not_allowed", "the channel opened no stream for presence")
        if isinstance(command, PresenceInfo):
            record.presence('{"type":"error"}')
        return
    if isinstance(command, PresenceInfo):
        await presence.info()
        return
    if not clients:
        error("presence_not_allowed", "the channel does not let clients join")
        return
    if isinstance(command, PresenceLeave):
        presence.leave()
        return
    size = utf8_size(command.info)
    if size > limit:
        error(
            "presence_info_too_large",
            f"presence info is limited to {limit} bytes (got {size})",
        )
        return
    presence.join(command.id, command.info)
