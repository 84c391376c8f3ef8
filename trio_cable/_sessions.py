"""Session resumption (the extended protocol), in one process.

When an ``actioncable-v1-ext-json`` client drops, its connection leaves
a :class:`Session` behind under its session id: the identity the connect
hook gave it and its confirmed subscriptions, each with its channel
instance (the channel's state), its streams and its timers. A client
that reconnects with that id (``?sid=`` or the ``X-AnyCable-Restore-Sid``
header, as AnyCable reads them) within ``session_ttl`` gets them back:
no connect hook, no ``subscribed()``. A session is taken at most once.

The store is a seam (:class:`SessionStore`): :class:`MemorySessionStore`
keeps sessions in this process; ``_redis_sessions`` keeps them in Redis
(they outlive the process: any worker restores them, or ends them).
:class:`SessionKeeper`, run in the cable's background nursery, ends the
subscriptions of sessions that expire (their ``unsubscribed()``
runs then, not at the drop) and, when the cable stops, of every session
still kept in this process.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._remote import identity_matches

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._channel import Channel, StreamCallback
    from ._request import Request

__all__ = [
    "KeptSubscription",
    "MemorySessionStore",
    "Session",
    "SessionKeeper",
    "SessionStore",
    "restore_sid",
]

#: Server-side closes after which a session is kept: the network's fault,
#: not a decision against the client (remote, unauthorized, shutdown: the
#: disconnect frame makes @anycable/core forget its sid, as at AnyCable's
#: own restarts).
KEEPS_SESSION: Final = ("too_slow", "no_pong")

log = logging.getLogger("trio_cable.sessions")

#: The header AnyCable reads a session id from (it wins over ``?sid=``).
RESTORE_HEADER: Final = "x-anycable-restore-sid"


def restore_sid(request: Request) -> str | None:
    """The session id a reconnecting client presents, if any."""
    return request.headers.get(RESTORE_HEADER) or request.query.get("sid") or None


class Former(Protocol):
    async def run_unsubscribed(self) -> None: ...


@dataclass(slots=True)
class KeptSubscription:
    """One confirmed subscription of a dropped connection."""

    identifier: str
    params: dict[str, Any]
    channel: Channel
    #: Its streams, each with its ``stream_from`` callback (or None).
    streams: list[tuple[str, StreamCallback | None]]
    whisper_stream: str | None
    timers: list[tuple[Callable[[], Any], float]] | None
    #: The subscription that ran it: it runs ``unsubscribed()`` at expiry.
    former: Former
    #: The stream it tracked presence on (its member left with the grace).
    presence_stream: str | None = None


@dataclass(slots=True)
class Session:
    """What a reconnecting client gets back."""

    identity: Any
    subscriptions: list[KeptSubscription] = field(default_factory=list)
    #: When its client dropped (:func:`trio.current_time`).
    dropped_at: float = field(default_factory=trio.current_time)


class SessionStore(Protocol):
    """Where sessions wait for their client.

    ``put`` keeps ``session`` under ``sid`` until ``expires`` (on
    :func:`trio.current_time`'s clock) and returns the sessions it gave
    up to make room; ``take`` removes and returns it (once) unless it
    expired by ``now``; ``due`` removes and returns those expired by
    ``now``, and ``next_expiry`` says when the next one does (as far as
    this process knows). Async, so that a store across processes fits:
    the Redis store keeps the identity and each subscription's
    identifier, params, streams, timers and declared state, and rebuilds
    channel instances from them.
    """

    async def put(self, sid: str, session: Session, expires: float) -> list[Session]:
        """Keep ``session``; the sessions given up to make room."""

    async def take(self, sid: str, now: float) -> Session | None:
        """The session under ``sid``, removed; None if none or expired."""

    async def due(self, now: float) -> list[Session]:
        """The sessions expired by ``now``, removed."""

    def next_expiry(self) -> float: ...
    def close(self) -> None:
        """Let go of what it holds open (the cable stops)."""

    def __len__(self) -> int: ...


class MemorySessionStore:
    """Sessions in this process, at most ``max_sessions`` (the oldest
    gives way). One TTL for all: insertion order is expiry order."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._kept: OrderedDict[str, tuple[float, Session]] = OrderedDict()

    async def put(self, sid: str, session: Session, expires: float) -> list[Session]:
        evicted = []
        while self._kept and len(self._kept) >= self.max_sessions:
            evicted.append(self._kept.popitem(last=False)[1][1])
        if self.max_sessions > 0:
            self._kept[sid] = (expires, session)
        else:
            evicted.append(session)
        return evicted

    async def take(self, sid: str, now: float) -> Session | None:
        kept = self._kept.get(sid)
        if kept is None or kept[0] <= now:
            return None  # an expired one is left for due()
        del self._kept[sid]
        return kept[1]

    async def due(self, now: float) -> list[Session]:
        out = []
        while self._kept:
            sid, (expires, session) = next(iter(self._kept.items()))
            if expires > now:
                break
            del self._kept[sid]
            out.append(session)
        return out

    def next_expiry(self) -> float:
        for expires, _ in self._kept.values():
            return expires
        return math.inf

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._kept)


class SessionKeeper:
    """The cable's sessions: kept while :meth:`run` runs, each for
    ``ttl`` seconds after its client dropped."""

    def __init__(
        self,
        ttl: float,
        store: SessionStore,
        open_store: Callable[[], SessionStore] | None = None,
    ) -> None:
        self.ttl = ttl
        self.store = store
        # The store a run uses, chosen as it starts (Redis or not).
        self._open_store = open_store or (lambda: store)
        self._running = False
        self._changed = trio.Event()
        self._ending: list[Session] = []  # evicted: end them in run()
        # Sessions on their way here: their connection's tasks are ending.
        self._coming: dict[str, trio.Event] = {}
        # Remote disconnects (identity, when) of the last ttl seconds.
        self._revoked: list[tuple[Any, float]] = []

    @property
    def accepting(self) -> bool:
        """Whether a dropped connection may leave its session here."""
        return self._running and self.ttl > 0

    def keeps(self, close: tuple[str, bool] | None) -> bool:
        """Whether a connection the server closed so (None: the client
        left or the network broke) leaves a session behind."""
        return self.accepting and (close is None or close[0] in KEEPS_SESSION)

    def expect(self, sid: str) -> None:
        """A session will be kept under ``sid`` (or :meth:`given_up`) once
        its connection's tasks end: :meth:`take` waits for it."""
        self._coming[sid] = trio.Event()

    def given_up(self, sid: str) -> None:
        coming = self._coming.pop(sid, None)
        if coming is not None:
            coming.set()

    async def keep(self, sid: str, session: Session) -> bool:
        """Keep ``session`` for ``ttl`` seconds; False if not
        :attr:`accepting` (then the caller ends it)."""
        self.given_up(sid)
        if not self.accepting:
            return False
        expires = trio.current_time() + self.ttl
        self._ending += await self.store.put(sid, session, expires)
        self._changed.set()
        if not self._running:
            # The cable stopped during a put to Redis: what went to this
            # process's memory instead ends now, as at the stop.
            left, self._ending = self._ending + await self.store.due(math.inf), []
            if left:
                await _end(left)
        return True

    def revoke(self, payload: str) -> None:
        """A remote disconnect (``cable.disconnect(identity)``'s payload):
        sessions of that identity dropped before now are not restored
        (a logged-out user's session must not come back); they end at
        their expiry."""
        now = trio.current_time()
        try:
            match = json.loads(payload)["identity"]
        except (ValueError, KeyError, TypeError):
            return  # logged where the connections are matched
        self._revoked = [r for r in self._revoked if r[1] > now - self.ttl]
        self._revoked.append((match, now))

    def _is_revoked(self, session: Session) -> bool:
        return session.identity is not None and any(
            when >= session.dropped_at and identity_matches(session.identity, match)
            for match, when in self._revoked
        )

    async def take(self, sid: str) -> Session | None:
        """The session kept under ``sid``, once; None if unknown or expired.
        A client back before its old connection has ended waits for it
        (bounded by that connection's close)."""
        coming = self._coming.get(sid)
        if coming is not None:
            await coming.wait()
        if not self._running:
            return None
        session = await self.store.take(sid, trio.current_time())
        if session is not None and self._is_revoked(session):
            self._ending.append(session)  # run() ends it
            self._changed.set()
            return None
        return session

    async def run(self) -> None:
        """End sessions as they expire, until cancelled; then end them all.

        Cancellation: every session kept in this process has its
        subscriptions run ``unsubscribed()`` (shielded, each bounded by
        ``hook_timeout``) before this returns; those in Redis stay there,
        for another worker or this one restarted.
        """
        self.store = self._open_store()
        self._running = True
        try:
            while True:
                self._changed = trio.Event()
                ending, self._ending = self._ending, []
                ending += await self.store.due(trio.current_time())
                if ending:
                    await _end(ending)
                    continue
                with trio.move_on_at(self.store.next_expiry()):
                    await self._changed.wait()
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                left = self._ending + await self.store.due(math.inf)
                self._ending = []
                self.store.close()
                if left:
                    await _end(left)


async def _end(sessions: list[Session]) -> None:
    """Run the ``unsubscribed()`` of every subscription of ``sessions``,
    concurrently (each bounds itself)."""
    log.info("%d sessions ended unrestored", len(sessions))
    async with trio.open_nursery() as nursery:
        for session in sessions:
            for kept in session.subscriptions:
                nursery.start_soon(kept.former.run_unsubscribed)
