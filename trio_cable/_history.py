"""Stream history in this process: a ring per stream, for recovery.

A broadcast to a stream that keeps history (opt-in, by name or pattern:
:class:`HistoryConfig`) gets the next offset in this store's epoch and is
kept while it is among the stream's last ``limit`` broadcasts and younger
than ``ttl`` seconds. A client that missed some asks for them by position
(epoch and offset) or by time; :meth:`HistoryStore.read` answers with
exactly those, or None when they are gone (evicted, expired, or from
another epoch) so that the client learns it must reload.

Streams without history cost one cached dict lookup per broadcast (and
nothing at all while no stream keeps history).
"""

from __future__ import annotations

import fnmatch
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .protocol.ext import HistoryRequest, Position, StreamPosition

__all__ = [
    "HistoryConfig",
    "HistoryPolicy",
    "HistoryStore",
    "Replay",
    "keep_stream_history",
]

#: What a replay hands the protocol: (payload, position) in order.
Replay = list[tuple[str, Position]]

#: How many stream names' policies are remembered (a name seen once
#: must not stay forever).
_POLICY_CACHE: Final = 10_000


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of one stream is kept: its last ``limit`` broadcasts, none
    older than ``ttl`` seconds."""

    limit: int = 100
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.ttl <= 0:
            raise ValueError("history needs a limit of at least 1 and a ttl > 0")


@dataclass(frozen=True)
class HistoryConfig:
    """Which streams keep history, and how much.

    ``streams`` maps stream names or ``fnmatch`` patterns (``"chat:*"``)
    to a :class:`HistoryPolicy`, or None for the default one; an exact
    name wins over patterns, and patterns are tried in order.
    """

    streams: Mapping[str, HistoryPolicy | None] = field(default_factory=dict)
    default: HistoryPolicy = HistoryPolicy()

    def policy_for(self, stream: str) -> HistoryPolicy | None:
        if stream in self.streams:
            return self.streams[stream] or self.default
        for pattern, policy in self.streams.items():
            if fnmatch.fnmatchcase(stream, pattern):
                return policy or self.default
        return None


class _Ring:
    __slots__ = ("entries", "latest", "policy")

    def __init__(self, policy: HistoryPolicy) -> None:
        self.policy = policy
        #: (position, payload, time) oldest first
        self.entries: deque[tuple[Position, str, float]] = deque(maxlen=policy.limit)
        self.latest = 0

    def expire(self, now: float) -> None:
        entries, oldest = self.entries, now - self.policy.ttl
        while entries and entries[0][2] < oldest:
            entries.popleft()


class HistoryStore:
    """The in-process history of every stream that keeps one.

    Arguments:
        config: which streams keep history.
        clock: the wall clock (UNIX seconds), for ``since`` and ``ttl``.
        epoch: this history's epoch; a fresh random one by default, so a
            client's position from before a restart is never mistaken
            for one of now.
    """

    def __init__(
        self,
        config: HistoryConfig,
        *,
        clock: Callable[[], float] = time.time,
        epoch: str | None = None,
    ) -> None:
        self.config = config
        self.epoch = epoch or secrets.token_hex(4)
        self._clock = clock
        self._rings: dict[str, _Ring] = {}
        self._policies: dict[str, HistoryPolicy | None] = {}

    def reconfigure(self, config: HistoryConfig) -> None:
        """Keep history by ``config`` from now on (kept history stays)."""
        self.config = config
        self._policies.clear()

    def policy_for(self, stream: str) -> HistoryPolicy | None:
        policies = self._policies
        try:
            return policies[stream]
        except KeyError:
            pass
        if len(policies) >= _POLICY_CACHE:
            policies.clear()
        policy = policies[stream] = self.config.policy_for(stream)
        return policy

    def append(self, stream: str, payload: str) -> Position | None:
        """Keep a broadcast if ``stream`` keeps history; its position."""
        ring = self._rings.get(stream)
        if ring is None:
            policy = self.policy_for(stream)
            if policy is None:
                return None
            ring = self._rings[stream] = _Ring(policy)
        now = self._clock()
        ring.latest += 1
        position = Position(stream, self.epoch, ring.latest)
        ring.entries.append((position, payload, now))
        ring.expire(now)
        return position

    def read(self, streams: Iterable[str], request: HistoryRequest) -> Replay | None:
        """What ``request`` asks for of ``streams``, oldest first per
        stream; None if any of it is gone (the client must reload).

        A position in ``request.streams`` wins over ``request.since``:
        everything after it, which must all be still here and of this
        epoch. Without one, what was kept since ``since`` (inclusive,
        in seconds; a best effort: nothing tells what time expired).
        """
        replay: Replay = []
        now = self._clock()
        for stream in streams:
            spot = request.streams.get(stream)
            ring = self._rings.get(stream)
            if ring is not None:
                ring.expire(now)
            if spot is not None:
                part = self._after(ring, spot)
                if part is None:
                    return None
                replay.extend(part)
            elif request.since is not None and ring is not None:
                since = request.since
                replay.extend((d, p) for p, d, t in ring.entries if int(t) >= since)
        return replay

    def _after(self, ring: _Ring | None, spot: StreamPosition) -> Replay | None:
        if spot.epoch != self.epoch:
            return None
        latest = 0 if ring is None else ring.latest
        if spot.offset > latest or spot.offset < 0:
            return None  # a position we never handed out
        if spot.offset == latest:
            return []
        assert ring is not None
        entries = ring.entries
        if not entries or entries[0][0].offset > spot.offset + 1:
            return None  # the first missed one is gone
        return [(d, p) for p, d, _ in entries if p.offset > spot.offset]

    def retained(self) -> int:
        """How many broadcasts are kept, over every stream."""
        return sum(len(ring.entries) for ring in self._rings.values())


def keep_stream_history(
    store: HistoryStore | None,
    stream: str,
    default: HistoryPolicy,
    *,
    limit: int | None = None,
    ttl: float | None = None,
) -> HistoryStore:
    """``store`` (made if None) keeping the history of ``stream`` (a name
    or pattern) from now on, by ``default``'s policy unless ``limit`` or
    ``ttl`` say otherwise."""
    policy = HistoryPolicy(
        default.limit if limit is None else limit,
        default.ttl if ttl is None else ttl,
    )
    streams = dict(store.config.streams) if store is not None else {}
    streams[stream] = policy
    config = HistoryConfig(streams, default)
    if store is None:
        return HistoryStore(config)
    store.reconfigure(config)
    return store
